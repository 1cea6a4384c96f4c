"""Shared feedback helpers: say what was expected, what came back, and a hint."""

from __future__ import annotations

from typing import Any, Sequence

import torch


class ExerciseError(AssertionError):
    """An exercise answer is wrong; the message says how."""


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
    """Run the learner's function; turn its exception into feedback that names the inputs."""
    try:
        if no_grad:
            with torch.no_grad():
                return fn(*args)
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - any failure is feedback for the learner
        raise ExerciseError(
            f"{name}({', '.join(_describe(a) for a in args)}) raised {type(exc).__name__}: {exc}") from exc


def same(value: Any, other: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-5) -> bool:
    """True when ``value`` is a tensor of ``other``'s shape and values (within tolerance)."""
    return (isinstance(value, torch.Tensor) and value.shape == other.shape
            and torch.allclose(value.float(), other.float(), atol=atol, rtol=rtol))
