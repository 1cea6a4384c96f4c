"""mae_lesson.cli.check_fields: one validator that reads each field's arg_field metadata."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mae_lesson.cli import arg_field, check_fields
from mae_lesson.finetuning import FinetuneArgs
from mae_lesson.run.args import PretrainArgs


@dataclass
class Toy:
    """A dataclass the package has never seen: its checks come from the metadata alone."""

    steps: int = arg_field(1, "steps", at_least=1)
    cap: int | None = arg_field(None, "optional cap", at_least=2, at_most=9, why={"at_most": "one digit"})
    rate: float = arg_field(0.5, "a rate", positive=True)
    decay: float = arg_field(0.0, "a decay", non_negative=True)
    keep: float = arg_field(1.0, "a fraction", interval="(0, 1]")
    drop: float = arg_field(0.0, "a probability", interval="[0, 1)")
    mode: str = arg_field("a", "a mode", choices=("a", "b"))

    def __post_init__(self) -> None:
        check_fields(self)


@pytest.mark.parametrize("change, message", [
    ({"steps": 0}, "--steps must be at least 1, got 0"),
    ({"cap": 1}, "--cap must be at least 2, got 1"),  # the reason belongs to at_most only
    ({"cap": 10}, "--cap must be at most 9 (one digit), got 10"),
    ({"rate": 0.0}, "--rate must be positive, got 0.0"),
    ({"decay": -0.1}, "--decay must be 0 or more, got -0.1"),
    ({"keep": 0.0}, "--keep must be in (0, 1], got 0.0"),
    ({"keep": 1.5}, "--keep must be in (0, 1], got 1.5"),
    ({"drop": 1.0}, "--drop must be in [0, 1), got 1.0"),
    ({"drop": -0.5}, "--drop must be in [0, 1), got -0.5"),
    ({"mode": "c"}, "--mode must be one of a, b, got 'c'"),
    ({"steps": 1.5}, "Toy.steps (--steps) must be a whole number, got 1.5"),  # types before ranges
])
def test_a_new_field_is_checked_by_its_metadata(change, message):
    with pytest.raises(ValueError) as info:
        Toy(**change)
    assert str(info.value) == message


@pytest.mark.parametrize("change", [{"cap": None}, {"cap": 2}, {"cap": 9}, {"keep": 1.0}, {"drop": 0.0},
                                    {"decay": 0.0}, {"mode": "b"}])
def test_values_at_the_edges_and_none_pass(change):
    assert Toy(**change)


def test_a_misspelt_range_keyword_is_refused_when_the_field_is_declared():
    with pytest.raises(TypeError, match="atleast.*at_least"):
        arg_field(1, "steps", atleast=1)


@pytest.mark.parametrize("cls, change, message", [
    (PretrainArgs, {"num_figure_images": 0}, "--num-figure-images must be at least 1, got 0"),
    (PretrainArgs, {"num_figure_images": 33},
     "--num-figure-images must be at most 32 (one column of the figure each), got 33"),
    (PretrainArgs, {"lr": -1.0}, "--lr must be positive, got -1.0"),
    (PretrainArgs, {"min_lr": -1.0}, "--min-lr must be 0 or more, got -1.0"),
    (PretrainArgs, {"amp": "fp8"}, "--amp must be one of auto, bf16, fp16, none, got 'fp8'"),
    (FinetuneArgs, {"layer_decay": 0.0}, "--layer-decay must be in (0, 1], got 0.0"),
    (FinetuneArgs, {"mix_switch_prob": 1.5}, "--mix-switch-prob must be in [0, 1], got 1.5"),
    (FinetuneArgs, {"max_steps": 0}, "--max-steps must be at least 1, got 0"),
])
def test_both_argument_dataclasses_use_the_one_validator(cls, change, message):
    with pytest.raises(ValueError) as info:
        cls(**change)
    assert str(info.value) == message
