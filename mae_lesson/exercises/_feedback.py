"""Shared feedback helpers: say what was expected, what came back, and a hint.

Every ``check_*`` function is wrapped in :func:`checker`: a learner's function that is still the
stub (it returns ``None``/``...`` or raises ``NotImplementedError``) is reported as not attempted
and the checker returns ``False`` instead of raising, so a notebook runs top to bottom before the
learner has written anything. A wrong answer still raises :class:`ExerciseError` with a hint.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Callable, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])


class ExerciseError(AssertionError):
    """An exercise answer is wrong; the message says how."""


class NotAttempted(ExerciseError):
    """The learner's function is still the stub (returns None/... or raises NotImplementedError).

    A subclass of :class:`ExerciseError` so that a checker not (yet) wrapped in :func:`checker`
    still stops with a message naming the inputs, rather than with a stray exception.
    """


def passed(name: str, detail: str = "") -> bool:
    """Print the success line every checker ends with and return True."""
    print(f"Correct: {name}" + (f" ({detail})" if detail else ""))
    return True


def expect_shape(name: str, value: Any, shape: Sequence[int], hint: str = "") -> None:
    if not isinstance(value, torch.Tensor):
        raise ExerciseError(f"{name}: expected a torch.Tensor of shape {list(shape)}, got {type(value).__name__}")
    if tuple(value.shape) != tuple(shape):
        raise ExerciseError(f"{name}: expected shape {list(shape)}, got {list(value.shape)}" + (f". Hint: {hint}" if hint else ""))


def expect_close(name: str, value: torch.Tensor, expected: torch.Tensor, hint: str = "",
                 atol: float = 1e-5, rtol: float = 1e-5) -> None:
    expect_shape(name, value, expected.shape, hint)
    if not torch.allclose(value.float(), expected.float(), atol=atol, rtol=rtol):
        diff = (value.float() - expected.float()).abs()
        where = tuple(int(i) for i in torch.nonzero(diff == diff.max())[0])
        raise ExerciseError(
            f"{name}: values differ (max abs difference {diff.max().item():.3g} at index {list(where)}: "
            f"expected {expected.flatten()[diff.flatten().argmax()].item():.4g}, got "
            f"{value.flatten()[diff.flatten().argmax()].item():.4g})" + (f". Hint: {hint}" if hint else "")
        )


def expect_equal(name: str, value: Any, expected: Any, hint: str = "") -> None:
    same = torch.equal(value, expected) if isinstance(expected, torch.Tensor) and isinstance(value, torch.Tensor) else value == expected
    if not same:
        raise ExerciseError(f"{name}: expected {expected!r}, got {value!r}" + (f". Hint: {hint}" if hint else ""))


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
        NotAttempted: ``fn`` raised ``NotImplementedError`` or returned ``None``/``...`` (the stub).
        ExerciseError: ``fn`` is not callable or raised anything else; the message names the inputs.
    """
    call = f"{name}({', '.join(_describe(a) for a in args)})"
    if not callable(fn):
        raise ExerciseError(f"{name}: expected a function, got {type(fn).__name__}")
    try:
        if no_grad:
            with torch.no_grad():
                out = fn(*args)
        else:
            out = fn(*args)
    except NotImplementedError as exc:
        raise NotAttempted(f"{call} raised NotImplementedError: {exc} (not attempted yet)") from exc
    except Exception as exc:  # noqa: BLE001 - any failure is feedback for the learner
        raise ExerciseError(f"{call} raised {type(exc).__name__}: {exc}") from exc
    if out is None or out is Ellipsis:
        raise NotAttempted(f"{call} returned {out!r}, the stub's value (not attempted yet)")
    return out


def not_attempted_message(name: str) -> str:
    """The line a checker prints for an untouched stub ``my_<name>``."""
    return f"Not attempted yet: write my_{name} above, or open the reference solution below."


def checker(name: str) -> Callable[[F], F]:
    """Decorate ``check_<name>``: an untouched stub prints "Not attempted yet" and returns False.

    Wrong answers still raise :class:`ExerciseError`; a right one returns True.
    """
    def wrap(check: F) -> F:
        @functools.wraps(check)
        def run(*args: Any, **kwargs: Any) -> bool:
            try:
                return check(*args, **kwargs)
            except NotAttempted:
                print(not_attempted_message(name))
                return False
        return run  # type: ignore[return-value]
    return wrap


def use(name: str, mine: Callable, reference: Callable, ok: bool) -> Callable:
    """The function later cells call: the learner's when it passed its checker, else the reference."""
    if ok is True:
        print(f"Using your my_{name} from here on.")
        return mine
    print(f"Using the reference solution from here on (your my_{name} has not passed the checker yet).")
    return reference


def same(value: Any, other: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-5) -> bool:
    """True when ``value`` is a tensor of ``other``'s shape and values (within tolerance)."""
    return (isinstance(value, torch.Tensor) and value.shape == other.shape
            and torch.allclose(value.float(), other.float(), atol=atol, rtol=rtol))


def first_values(t: torch.Tensor, k: int = 4) -> str:
    """The first ``k`` values of a tensor, short, for messages: ``[0.123, -1.000, ...]``."""
    values = ", ".join(f"{v:.3f}" for v in t.flatten()[:k].tolist())
    return f"[{values}, ...]"


def diagnose(where: str, got: torch.Tensor, expected: torch.Tensor,
             mistakes: Sequence[tuple[torch.Tensor, str]], hint: str,
             atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Return if ``got`` matches ``expected``; else raise naming the first known mistake it reproduces.

    Args:
        mistakes: ``(wrong_output, message)`` pairs: what a typical mistake computes and what to say.
        hint: the recipe, for a mismatch that is none of the known mistakes.
    """
    if same(got, expected, atol=atol, rtol=rtol):
        return
    for wrong, message in mistakes:
        if same(got, wrong, atol=atol, rtol=rtol):
            raise ExerciseError(f"{where}: expected {first_values(expected)}, got {first_values(got)}: {message}")
    expect_close(where, got, expected, hint=hint, atol=atol, rtol=rtol)
