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
