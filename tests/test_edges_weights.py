"""Issue 32, diverged weights and damaged checkpoints: non-finite weights are never saved, a checkpoint
that holds them (or values that are not tensors) is refused when loaded, and evaluation refuses such a model."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mae_lesson import MAE, results
from mae_lesson.run import finetune_cli
from mae_lesson import engine
from mae_lesson.checkpoint import safe_load
from mae_lesson.pretrain import NonFiniteLossError, pretrain

from test_edges_resume import grey_folder, small_args, snapshot  # noqa: E402
from test_robustness import one_error_line  # noqa: E402


def diverge_after(step: int, monkeypatch) -> None:
    """The update of optimizer step ``step`` sends a weight to Inf while its loss was finite (a huge rate)."""
    original, calls = engine.train_step, []

    def train_step(model, *args, **kwargs):
        loss = original(model, *args, **kwargs)
        calls.append(loss)
        if len(calls) == step:
            with torch.no_grad():
                next(model.parameters()).view(-1)[0] = math.inf
        return loss

    monkeypatch.setattr(engine, "train_step", train_step)


def test_weights_that_diverge_before_the_first_save_are_never_written(tmp_path, monkeypatch):
    out = tmp_path / "run"
    diverge_after(2, monkeypatch)  # the last step of epoch 1: its end-of-epoch work would save them
    with pytest.raises(NonFiniteLossError, match="after optimizer step 2 hold NaN or Inf in cls_token") as err:
        pretrain(small_args(grey_folder(tmp_path / "imgs"), out))
    assert "No checkpoint was saved" in str(err.value) and "intact" not in str(err.value)
    assert not (out / "checkpoint.pt").exists() and not (out / "model.pt").exists()
    assert not list(out.glob("recon_*.png"))
    assert all(row["kind"] == "train" for row in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()))


@pytest.mark.slow
def test_the_last_good_checkpoint_has_finite_weights(tmp_path, monkeypatch):
    out = tmp_path / "run"
    diverge_after(4, monkeypatch)
    with pytest.raises(NonFiniteLossError, match="after optimizer step 4") as err:
        pretrain(small_args(grey_folder(tmp_path / "imgs"), out))
    assert f"{out / 'checkpoint.pt'} (step 2), is intact" in str(err.value)
    state = safe_load(out / "checkpoint.pt")  # loads: its weights are finite
    assert state["step"] == 2 and not (out / "model.pt").exists()


@pytest.fixture
def no_data(monkeypatch):
    monkeypatch.setattr(results, "load_dataset", lambda *a, **k: pytest.fail("data loaded for a model refused"))


@pytest.mark.parametrize("damage", ["nan", "inf", "not a tensor"])
def test_a_checkpoint_with_non_finite_or_non_tensor_weights_is_refused_in_one_line(damage, tiny_model, tmp_path,
                                                                                   capsys, no_data):
    path = tmp_path / "model.pt"
    state = tiny_model.state_dict()
    state["decoder_pred.weight"] = (state["decoder_pred.weight"] * {"nan": math.nan, "inf": math.inf}[damage]
                                    if damage != "not a tensor" else [1.0, 2.0])
    torch.save({"model": state, "config": tiny_model.config.to_dict()}, path)
    phrase = "non-finite weights (NaN or Inf in decoder_pred.weight)" if damage != "not a tensor" else \
        "not tensors: decoder_pred.weight (list)"
    with pytest.raises(ValueError, match=phrase.replace("(", r"\(").replace(")", r"\)")):
        MAE.from_checkpoint(path)
    for mode in ("probe", "finetune", "table"):
        with pytest.raises(SystemExit) as exit_:
            finetune_cli.main(["--mode", mode, "--checkpoint", str(path), "--out", str(tmp_path / f"eval_{mode}")])
        assert exit_.value.code == 2
        message = one_error_line(capsys.readouterr().err)
        assert str(path) in message and phrase in message and len(message.splitlines()) == 1, message


def test_evaluating_a_model_with_nan_weights_is_refused(tiny_model):
    from mae_lesson.data import ImageData

    with torch.no_grad():
        tiny_model.norm.weight.fill_(math.nan)
    data = ImageData(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.zeros(4, dtype=torch.long), ("a",),
                     (0.5,) * 3, (0.25,) * 3)
    with pytest.raises(ValueError, match="NaN or Inf in norm.weight.*diverged"):
        results.evaluate_checkpoint(tiny_model, data, data, probe_epochs=1, device="cpu", progress=False)


def test_a_resume_from_a_diverged_checkpoint_is_refused_naming_it(tmp_path):
    data = grey_folder(tmp_path / "imgs")
    out = pretrain(small_args(data, tmp_path / "run", max_steps=2))
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state["model"]["norm.bias"][0] = math.nan
    torch.save(state, out / "checkpoint.pt")
    before = snapshot(out)
    with pytest.raises(ValueError, match="checkpoint.pt' holds non-finite weights"):
        pretrain(small_args(data, out, resume=True))
    assert snapshot(out) == before
