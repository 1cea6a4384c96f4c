"""One way to recognise a known wrong answer: a table of mistakes per exercise, and one judge.

Each exercise module keeps its known mistakes as a table of :class:`Mistake` rows: a name, how the
wrong answer is computed from the check's inputs (``wrong(case)``), and what to say. :func:`judge`
compares the learner's answer with the reference in a fixed order:

1. mistakes recognised by their shape alone (``Mistake(..., shape=True)``: ``wrong`` returns the shape);
2. the shape contract (a tensor of the reference's shape);
3. the values; a value that matches is then held to the rest of the contract (dtype, ``requires_grad``),
   so a wrong value is named by its mistake first;
4. the first table row whose wrong answer the learner's reproduces: its message;
5. otherwise where the answer differs from the reference (``differs``, by default the largest difference).

Tensors, numbers and (nested) lists, tuples and dicts of them are compared by :func:`close`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, NoReturn

import torch

from ._feedback import ExerciseError


@dataclass(frozen=True)
class Mistake:
    """One known wrong answer of an exercise.

    Args:
        name: a short id, unique in its table (tests name a mistake by it).
        wrong: ``wrong(case)`` computes the wrong answer from the check's inputs ``case``; for a
            ``shape`` row it returns the wrong answer's shape.
        message: what to say when the learner's answer is this one: a string, or ``message(case)``.
        shape: recognise the mistake by the answer's shape alone, before any value is compared.
    """

    name: str
    wrong: Callable[[Any], Any]
    message: str | Callable[[Any], str]
    shape: bool = False

    def says(self, case: Any) -> str:
        """The message for this case."""
        return self.message(case) if callable(self.message) else self.message


def close(value: Any, other: Any, atol: float = 1e-5, rtol: float = 1e-5, equal_nan: bool = False,
          double: bool = False) -> bool:
    """True when ``value`` equals ``other`` within tolerance: tensors of the same shape (compared in float32,
    or float64 with ``double``), numbers, and lists/tuples/dicts of them element by element."""
    if other is None:  # a row that does not apply to this case
        return False
    if isinstance(other, torch.Tensor):
        if not (isinstance(value, torch.Tensor) and value.shape == other.shape):
            return False
        cast = torch.Tensor.double if double else torch.Tensor.float
        return torch.allclose(cast(value), cast(other), atol=atol, rtol=rtol, equal_nan=equal_nan)
    if isinstance(other, Mapping):
        return (isinstance(value, Mapping) and value.keys() == other.keys()
                and all(close(value[k], other[k], atol, rtol, equal_nan, double) for k in other))
    if isinstance(other, (list, tuple)):
        return (isinstance(value, (list, tuple)) and len(value) == len(other)
                and all(close(a, b, atol, rtol, equal_nan, double) for a, b in zip(value, other)))
    if isinstance(other, (int, float)) and not isinstance(other, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            return False
        return math.isclose(number, float(other), rel_tol=rtol, abs_tol=atol)
    return bool(value == other)


def same(value: Any, other: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-5) -> bool:
    """True when ``value`` is a tensor of ``other``'s shape and values (within tolerance)."""
    return isinstance(value, torch.Tensor) and close(value, other, atol, rtol)


def first_values(t: torch.Tensor, k: int = 4) -> str:
    """The first ``k`` values of a tensor, short, for messages: ``[0.123, -1.000, ...]``."""
    values = ", ".join(f"{v:.3f}" for v in t.flatten()[:k].tolist())
    return f"[{values}, ...]"


def expect_shape(name: str, value: Any, shape: Sequence[int], hint: str = "") -> None:
    """Raise unless ``value`` is a tensor of ``shape``."""
    if not isinstance(value, torch.Tensor):
        raise ExerciseError(f"{name}: expected a torch.Tensor of shape {list(shape)}, got {type(value).__name__}")
    if tuple(value.shape) != tuple(shape):
        raise ExerciseError(f"{name}: expected shape {list(shape)}, got {list(value.shape)}" + (f". Hint: {hint}" if hint else ""))


def expect_close(name: str, value: torch.Tensor, expected: torch.Tensor, hint: str = "",
                 atol: float = 1e-5, rtol: float = 1e-5) -> None:
    """Raise unless ``value`` has ``expected``'s shape and values; the message names the largest difference."""
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
    """Raise unless ``value == expected`` (``torch.equal`` for tensors)."""
    equal = torch.equal(value, expected) if isinstance(expected, torch.Tensor) and isinstance(value, torch.Tensor) else value == expected
    if not equal:
        raise ExerciseError(f"{name}: expected {expected!r}, got {value!r}" + (f". Hint: {hint}" if hint else ""))


@dataclass(frozen=True)
class Contract:
    """What later cells rely on beyond the values: checked once the values match (``None``: not checked).

    ``dtype`` and ``requires_grad`` are each a pair (the wanted value, the message when it is not met)."""

    dtype: tuple[torch.dtype, str | Callable[[Any], str]] | None = None
    requires_grad: tuple[bool, str | Callable[[Any], str]] | None = None

    def check(self, got: Any) -> None:
        """Raise the message (a string, or ``message(got)``) of the first requirement ``got`` does not meet."""
        for wanted, attribute in ((self.dtype, "dtype"), (self.requires_grad, "requires_grad")):
            if wanted is not None and getattr(got, attribute, None) != wanted[0]:
                raise ExerciseError(wanted[1](got) if callable(wanted[1]) else wanted[1])


def fail(message: str) -> NoReturn:
    """Raise :class:`ExerciseError` with ``message`` (for a ``differs`` callback written as a lambda)."""
    raise ExerciseError(message)


def judge_shape(where: str, got: Any, shape: Sequence[int], mistakes: Sequence[Mistake] = (), case: Any = None, *,
                hint: str = "", found: Callable[[str], str] | None = None,
                otherwise: Callable[[list[int]], None] | None = None) -> None:
    """Steps 1 and 2 of :func:`judge`: raise unless ``got`` is a tensor of ``shape``, naming a shape row it matches.

    ``otherwise(got_shape)`` may raise a message of its own for a tensor of another shape that no row names."""
    if isinstance(got, torch.Tensor) and list(got.shape) != list(shape):
        for row in mistakes:
            if row.shape and list(got.shape) == list(row.wrong(case)):
                fail((found or (lambda m: f"{where}: expected shape {list(shape)}, got {list(got.shape)}: {m}"))(
                    row.says(case)))
        if otherwise is not None:
            otherwise(list(got.shape))
    expect_shape(where, got, shape, hint)


def judge(where: str, got: Any, expected: Any, mistakes: Sequence[Mistake] = (), case: Any = None, *,
          hint: str = "", shape_hint: str | None = None, atol: float = 1e-5, rtol: float = 1e-5,
          matches: Callable[[Any, Any], bool] | None = None, contract: Contract | None = None,
          found: Callable[[str], str] | None = None, found_shape: Callable[[str], str] | None = None,
          differs: Callable[[], Any] | None = None) -> None:
    """Return if ``got`` matches ``expected``; else raise :class:`ExerciseError` naming what is wrong.

    Args:
        where: the call, as the learner would write it (every message starts with it).
        got, expected: the learner's answer and the reference's (tensors, numbers, or lists/dicts of them).
        mistakes: the exercise's table; each row's ``wrong(case)`` is computed only when reached.
        case: the inputs the rows compute their wrong answers from.
        hint: the recipe, said when the values differ and no row matches (and on a wrong shape, unless
            ``shape_hint`` is given).
        matches: how two answers are compared (default :func:`close` with ``atol``/``rtol``).
        contract: dtype / ``requires_grad`` wanted of a right value.
        found, found_shape: the whole message for a matching value row / shape row, from the row's message.
        differs: called when nothing matches: it raises saying where the answer differs (returning accepts
            the answer); default: the largest difference, with ``hint``.
    """
    matches = matches or (lambda a, b: close(a, b, atol, rtol))
    if isinstance(expected, torch.Tensor):
        judge_shape(where, got, list(expected.shape), mistakes, case, found=found_shape,
                    hint=hint if shape_hint is None else shape_hint)
    if matches(got, expected):
        if contract is not None:
            contract.check(got)
        return
    default = (lambda m: f"{where}: expected {first_values(expected)}, got {first_values(got)}: {m}")
    for row in mistakes:
        if not row.shape and matches(got, row.wrong(case)):
            fail((found or default)(row.says(case)))
    if differs is not None:
        differs()  # raises what differs; returning accepts the answer (a difference the checker tolerates)
        return
    expect_close(where, got, expected, hint=hint, atol=atol, rtol=rtol)
