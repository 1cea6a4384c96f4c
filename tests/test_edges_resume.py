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

    monkeypatch.setattr(engine, "_stop_requested", requested)


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
