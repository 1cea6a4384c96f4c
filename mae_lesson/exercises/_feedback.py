"""Shared feedback helpers: say what was expected, what came back, and a hint.

Every ``check_*`` function is wrapped in :func:`checker`, which never lets a learner's answer stop
the notebook. It prints exactly one verdict line that starts with one of three prefixes (the
instructor's progress view parses them) and returns a bool for ``ok_<name>``:

- ``Correct: ...``: the answer passed (True);
- ``Not attempted yet: ...``: the function is still the untouched stub, recognised by its source
  (a body of only a docstring, ``...``, ``pass`` or ``raise NotImplementedError``), not by what
  it returns (False);
- ``Not correct: ...``: the named mistake, or where the answer differs from the reference; for an
  exception raised inside the learner's code, a traceback trimmed to the learner's own frames
  (False). The notebook then goes on with the reference and says how to come back.

Every call starts from "not passed", so re-checking a function that was edited into a wrong one
resets ``ok_<name>``. :data:`RESULTS` records the last verdict of each exercise.
"""

from __future__ import annotations

import ast
import contextvars
import functools
import inspect
import os
import sys
import sysconfig
import textwrap
import traceback
from collections.abc import Sequence
from typing import Any, Callable, TypeVar

import torch

from ._i18n import say
from ._kept import save

F = TypeVar("F", bound=Callable[..., Any])


class ExerciseError(AssertionError):
    """An exercise answer is wrong; the message says how."""


class NotAttempted(ExerciseError):
    """The learner's function is still the stub (returns None/... or raises NotImplementedError).

    A subclass of :class:`ExerciseError` so that a checker not (yet) wrapped in :func:`checker`
    still stops with a message naming the inputs, rather than with a stray exception.
    """


# The last verdict of each exercise: "passed", "not correct" or "not attempted".
RESULTS: dict[str, str] = {}
# True while a checker runs on the notebook's hidden reference solution (``reference=True``).
_CHECKING_REFERENCE = contextvars.ContextVar("checking_reference", default=False)
# The notes of the running check (an answer converted safely), printed once each after its verdict.
_NOTES: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("notes", default=None)


def note(text: str) -> None:
    """Record a note for the learner (printed once, after the verdict): something converted safely."""
    notes = _NOTES.get()
    if notes is not None and text not in notes:
        notes.append(text)


def as_int(value: Any, where: str, hint: str = "") -> int:
    """A whole-number answer: a Python ``int`` as it is; an int-like numpy or torch scalar converted, with a
    note; anything else (a float, a bool, a tensor of several values) raises naming what came back."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    dtype = getattr(value, "dtype", None)
    integer = (isinstance(value, torch.Tensor) and value.numel() == 1 and not value.dtype.is_floating_point
               and value.dtype not in (torch.bool, torch.complex64, torch.complex128)) or \
              (type(value).__module__ == "numpy" and getattr(dtype, "kind", "") in "iu" and getattr(value, "ndim", 1) == 0)
    if integer:
        converted = int(value.item())
        note(f"Note: {where} returned a {type(value).__module__}.{type(value).__name__}; it is used as the int "
             f"{converted} (int(...) or .item() makes it a plain Python int).")
        return converted
    raise ExerciseError(f"{where}: expected a whole number (int), got {type(value).__name__} {value!r}"
                        + (f": {hint}" if hint else ""))


def as_float(value: Any, where: str, hint: str = "") -> float:
    """A number answer: a Python ``float`` or ``int`` as it is; a one-value torch tensor converted (``.item()``),
    with a note; anything else (a bool, a tensor of several values, a list) raises naming what came back."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dtype != torch.bool:
        converted = float(value.item())
        note(f"Note: {where} returned a torch.Tensor; it is used as the float {converted:.6g} "
             f"(.item() makes it a plain Python float, and frees the tensor's autograd graph).")
        return converted
    shape = f" of shape {list(value.shape)}" if isinstance(value, torch.Tensor) else ""
    raise ExerciseError(f"{where}: expected a number (a Python float), got {type(value).__name__}{shape}"
                        + (f": {hint}" if hint else ""))


def passed(name: str, detail: str = "") -> bool:
    """Print the success line every checker ends with and return True.

    On the reference solution (``check_x(reference_x, reference=True)``) the line says so, so that
    it cannot be read as the learner's result.
    """
    if _CHECKING_REFERENCE.get():
        say(f"(The reference solution passes the {name} checker; this is not your answer.)")
    else:
        say(f"Correct: {name}" + (f" ({detail})" if detail else ""))
    return True


def _describe(arg: Any) -> str:
    if isinstance(arg, torch.Tensor):
        return str(list(arg.shape))
    if isinstance(arg, torch.nn.Module):
        return type(arg).__name__
    text = repr(arg)
    return text if len(text) <= 40 else type(arg).__name__


def call_learner(fn: Any, name: str, *args: Any, no_grad: bool = False) -> Any:
    """Run the learner's function and return what it returns.

    Raises:
        NotAttempted: ``fn`` is the untouched stub (its body only ``...``/``pass``/``raise NotImplementedError``).
        ExerciseError: ``fn`` is not callable, raised (the learner's exception is the ``__cause__``),
            or returned ``None`` though its body is not the stub (a forgotten ``return``).
    """
    call = f"{name}({', '.join(_describe(a) for a in args)})"
    if not callable(fn):
        raise ExerciseError(f"{name}: expected a function, got {type(fn).__name__}")
    if is_stub(fn):
        raise NotAttempted(f"{call}: the function is still the stub (not attempted yet)")
    try:
        if no_grad:
            with torch.no_grad():
                out = fn(*args)
        else:
            out = fn(*args)
    except Exception as exc:  # noqa: BLE001 - any failure is feedback for the learner
        raise ExerciseError(f"{call} raised {type(exc).__name__}: {exc}") from exc
    if out is None:
        raise ExerciseError(f"{call} returned None: did you forget `return`?")
    return out


def _is_placeholder(node: ast.stmt) -> bool:
    """``...``, ``pass``, a string, or ``raise NotImplementedError[(...)]``: what a stub's body holds."""
    if isinstance(node, ast.Pass):
        return True
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
        return node.value.value is Ellipsis or isinstance(node.value.value, str)
    if isinstance(node, ast.Raise) and node.exc is not None:
        exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"
    return False


def _empty() -> None:
    """A body that does nothing: the bytecode of a stub whose source cannot be read."""


def is_stub(fn: Any) -> bool:
    """True when ``fn`` is an untouched stub: its body is only a docstring, ``...``, ``pass`` or
    ``raise NotImplementedError``. Judged from the source (the bytecode where the source is lost),
    never from the return value, so a body that forgets ``return`` is not a stub."""
    code = getattr(fn, "__code__", None)
    if code is None or getattr(fn, "__name__", "") == "<lambda>":
        return False
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return code.co_code == _empty.__code__.co_code
    node = tree.body[0] if tree.body else None
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return False
    return all(_is_placeholder(statement) for statement in node.body)


def not_attempted_message(name: str) -> str:
    """The line a checker prints for an untouched stub ``my_<name>``."""
    return f"Not attempted yet: write my_{name} above, or open the reference solution below."


def continue_message(name: str) -> str:
    """What a failed check says about the rest of the notebook, and how to come back."""
    return (f"The notebook goes on with the reference solution. Fix my_{name} and re-run this cell: "
            f"the notebook picks your version up from the next cell on.")


_LIBRARY_DIRS = tuple(os.path.realpath(p) for p in {os.path.dirname(os.path.dirname(__file__)),
                                                      *(sysconfig.get_paths()[k] for k in ("stdlib", "purelib", "platlib"))})


def _is_learners(filename: str) -> bool:
    """A frame of the learner's own code: neither this package, nor the standard library, nor an installed one."""
    path = os.path.realpath(filename) if not filename.startswith("<") else filename
    return not path.startswith(_LIBRARY_DIRS) and "site-packages" not in path


def learner_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` trimmed to the learner's frames ("" when none is the learner's)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if _is_learners(f.filename)]
    if not frames:
        return ""
    lines = ["Traceback of your code (most recent call last):"]
    for frame in frames:
        where = "a notebook cell" if (frame.filename.startswith("<") or "ipykernel" in frame.filename) \
            else os.path.basename(frame.filename)
        lines.append(f"  {where}, line {frame.lineno}, in {frame.name}")
        if frame.line:
            lines.append(f"    {frame.line.strip()}")
    lines.append(f"{type(exc).__name__}: {exc}")
    return "\n".join(lines)


def _report_failure(name: str, error: BaseException) -> None:
    """Print the short verdict for a wrong answer: the mistake, the learner's frames if it raised, how to go on."""
    if isinstance(error, ExerciseError):
        message, cause = str(error), error.__cause__
    else:  # raised outside call_learner, e.g. by the learner's module passed to a loop
        cause = error
        who = f"my_{name}" if learner_traceback(error) else "the checker, on your answer,"
        message = f"{who} raised {type(error).__name__}: {error}"
    say(f"Not correct: {message}")
    if cause is not None and not isinstance(cause, ExerciseError):
        trimmed = learner_traceback(cause)
        if trimmed:
            say(trimmed)
    say(continue_message(name))


def checker(name: str) -> Callable[[F], F]:
    """Decorate ``check_<name>(fn)``: it prints one verdict and returns a bool, and never raises for a learner.

    ``check(fn, reference=True)`` checks the hidden reference solution: its success line says it is the
    reference, it returns None (a notebook shows no ``True`` under the learner's stub), and a failure
    raises (the package is wrong, not the learner).
    """
    def wrap(check: F) -> F:
        @functools.wraps(check)
        def run(fn: Any, *args: Any, reference: bool = False, **kwargs: Any) -> bool | None:
            if not reference:
                RESULTS[name] = "not correct"  # every check starts from "not passed"
            if not reference and is_stub(fn):
                RESULTS[name] = "not attempted"
                say(not_attempted_message(name))
                return False
            token, notes = _CHECKING_REFERENCE.set(reference), _NOTES.set([])
            try:
                ok = check(fn, *args, **kwargs) is True
            except NotAttempted:
                if reference:
                    raise
                RESULTS[name] = "not attempted"
                say(not_attempted_message(name))
                return False
            except Exception as error:  # noqa: BLE001 - a learner's answer never stops the notebook
                if reference:
                    raise
                _report_failure(name, error)
                return False
            finally:
                for text in _NOTES.get() or []:
                    say(text)
                _CHECKING_REFERENCE.reset(token)
                _NOTES.reset(notes)
            if reference:
                return None
            RESULTS[name] = "passed" if ok else "not correct"
            return ok
        return run  # type: ignore[return-value]
    return wrap


def _keep(name: str, fn: Callable) -> str | None:
    """Save a passed function for later notebooks (:mod:`.carry`), in a notebook kernel or where
    ``$MAE_LESSON_MY_MAE`` names the folder; plain scripts and tests leave no files behind."""
    ipython = sys.modules.get("IPython")
    in_kernel = ipython is not None and getattr(ipython.get_ipython(), "kernel", None) is not None  # Jupyter, Colab
    if not (in_kernel or os.environ.get("MAE_LESSON_MY_MAE")):
        return None
    try:
        path = save(name, fn)
    except OSError:
        return None
    return None if path is None else path.as_posix()


# Which function each use cell picked: True for the learner's, False for the reference.
CHOSEN: dict[str, bool] = {}


def use(name: str, mine: Callable, reference: Callable, ok: bool) -> Callable:
    """The function later cells call: the learner's when it passed its checker, else the reference."""
    CHOSEN[name] = ok is True
    if ok is True:
        saved = _keep(name, mine)
        say(f"Using your my_{name} from here on" + (f" (kept for later notebooks in {saved})." if saved else "."))
        return mine
    say(f"Using the reference solution from here on (your my_{name} has not passed the checker yet; "
          f"when it does, re-run this cell).")
    return reference


def whose(names: str | Sequence[str], noun: str) -> str:
    """Say what ran, for a label, title or printed sentence: ``"your <noun>"`` when every named exercise's
    use cell picked the learner's function, ``"the reference <noun>"`` when none did, and which pieces are
    the reference's otherwise. Example: ``whose(["train_one_epoch", "train_step"], "training loop")``."""
    names = [names] if isinstance(names, str) else list(names)
    reference = [n for n in names if not CHOSEN.get(n)]
    if not reference:
        return f"your {noun}"
    if len(reference) == len(names):
        return f"the reference {noun}"
    return f"your {noun} (with the reference {', '.join(reference)})"

