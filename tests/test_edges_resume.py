"""Issue 32, stops at an epoch's edge: a run stopped after ANY step and resumed leaves the folder an
uninterrupted run leaves (metrics rows, figures, loss curve, weights; timings aside)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from mae_lesson import pretrain as engine
from mae_lesson.run.state import Run
from mae_lesson.checkpoint import safe_load
from mae_lesson.pretrain import PretrainArgs, pretrain
from mae_lesson.stopping import TrainingInterrupted

from conftest import TINY_RUN  # noqa: E402

TIMINGS = ("seconds", "img_per_s")
STEPS_PER_EPOCH, EPOCHS = 2, 3


def grey_folder(root: Path) -> Path:
    """40 random 16x16 grey images in two classes: loads in milliseconds, no dataset needed."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(20):
            Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


def small_args(data: Path, out: Path, **changes) -> PretrainArgs:
    """2 steps per epoch (40 images, batch 16), 3 epochs: 6 steps, three of them an epoch's last."""
    base = dict(config="fashion_mnist_tiny", overrides={**TINY_RUN, "img_size": 16, "patch_size": 4},
                dataset=str(data), batch_size=16, epochs=EPOCHS, warmup_epochs=0.5, blr=1e-3, out=str(out),
                ckpt_every_steps=100, log_every_steps=1, progress=False, num_figure_images=2)
    return PretrainArgs(**{**base, **changes})


def folder_state(out: Path) -> dict:
    """What a run leaves: metrics rows without timings, every figure's bytes, the final weights."""
    rows = [{k: v for k, v in json.loads(line).items() if k not in TIMINGS}
            for line in (out / "metrics.jsonl").read_text().splitlines()]
    figures = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.png"))}
    weights = safe_load(out / "model.pt")["model"]
    return {"rows": rows, "figures": figures, "weights": weights}


def stop_after(step: int, monkeypatch) -> None:
    """A SIGINT that lands after optimizer step ``step``, as a Ctrl-C would."""
    def requested(run):
        if run.step == step and run.stop.signum is None:
            run.stop.signum = signal.SIGINT
        return run.stop.signum is not None

    monkeypatch.setattr(Run, "stop_requested", requested)


@pytest.mark.slow
def test_a_stop_after_every_step_then_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    data = grey_folder(tmp_path / "imgs")
    straight = folder_state(pretrain(small_args(data, tmp_path / "straight")))
    assert len(straight["rows"]) == STEPS_PER_EPOCH * EPOCHS + EPOCHS
    assert sorted(straight["figures"]) == ["loss_curve.png", "recon_epoch001.png", "recon_epoch002.png",
                                           "recon_epoch003.png"]
    for step in range(1, STEPS_PER_EPOCH * EPOCHS + 1):
        out = tmp_path / f"stopped_at_{step}"
        with monkeypatch.context() as patch:
            stop_after(step, patch)
            with pytest.raises(TrainingInterrupted):
                pretrain(small_args(data, out))
        assert not (out / "model.pt").exists() and safe_load(out / "checkpoint.pt")["step"] == step
        resumed = folder_state(pretrain(small_args(data, out, resume=True)))
        assert resumed["rows"] == straight["rows"], f"stopped after step {step}"
        assert resumed["figures"] == straight["figures"], f"stopped after step {step}"
        for key, value in straight["weights"].items():
            assert torch.equal(value, resumed["weights"][key]), (step, key)


def snapshot(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("change", ["more images", "other pixels"])
def test_resume_on_other_training_images_is_refused_with_the_difference(change, tmp_path):
    from PIL import Image

    data = grey_folder(tmp_path / "imgs")
    out = pretrain(small_args(data, tmp_path / "run", max_steps=2))
    before = snapshot(out)
    if change == "more images":
        for i in range(20, 40):
            Image.fromarray(np.full((16, 16), i, dtype=np.uint8)).save(data / "a" / f"{i}.png")
    else:
        Image.fromarray(np.zeros((16, 16), dtype=np.uint8)).save(data / "a" / "0.png")
    with pytest.raises(engine.RunError) as err:
        pretrain(small_args(data, out, resume=True))
    message = str(err.value)
    assert "training data fingerprint" in message and "in the run" in message, message
    if change == "more images":
        assert "training data images: 40 in the run, 60 now" in message, message
        assert "training data steps_per_epoch: 2 in the run, 3 now" in message, message
    else:
        assert "images:" not in message and "steps_per_epoch" not in message, message
    assert snapshot(out) == before


@pytest.mark.slow
def test_resume_past_the_end_of_the_schedule_is_refused_with_the_reason(tmp_path):
    data = grey_folder(tmp_path / "imgs")
    out = pretrain(small_args(data, tmp_path / "run"))  # 3 epochs: the cosine ends at step 6
    before = snapshot(out)
    with pytest.raises(engine.RunError, match="schedule ends at step 6.*final rate") as err:
        pretrain(small_args(data, out, resume=True, epochs=5))
    assert "step 10" in str(err.value) and "--epochs" in str(err.value)
    assert snapshot(out) == before
    # Within the schedule a resume may go on: a run stopped by --max-steps continues to its end.
    short = pretrain(small_args(data, tmp_path / "short", max_steps=3))
    pretrain(small_args(data, short, resume=True))
    assert safe_load(short / "model.pt")["step"] == 6
