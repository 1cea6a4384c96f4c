"""Pretraining engine: run folder, exact resume after SIGKILL, NaN stop, schedule, 2-process DDP."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mae_lesson import MAE
from mae_lesson.checkpoint import safe_load
from mae_lesson.optim import WarmupCosine, param_groups, scaled_lr
from mae_lesson.pretrain import NonFiniteLossError, parse_args, pretrain

from conftest import TINY_RUN, cli, needs_fmnist, run_env, tiny_args  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return safe_load(path)["model"]


def test_schedule_warmup_then_cosine():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0)
    sched = WarmupCosine(opt, base_lr=1.0, total_steps=110, warmup_steps=10, min_lr=0.1)
    lrs = [sched.lr]
    for _ in range(110):
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == 0 and abs(lrs[5] - 0.5) < 1e-12 and abs(lrs[10] - 1.0) < 1e-12
    assert abs(lrs[60] - 0.55) < 1e-9 and abs(lrs[110] - 0.1) < 1e-12  # half-way: (1 + 0.1) / 2
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert scaled_lr(1.5e-4, 4096) == pytest.approx(2.4e-3)


def test_no_weight_decay_on_biases_norms_tokens():
    model = MAE({"img_size": 16, "patch_size": 4, "in_chans": 1, **TINY_RUN})
    groups = param_groups(model, 0.05)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in decayed}
    assert "blocks.0.attn.qkv.weight" in names and "patch_embed.proj.weight" in names
    assert not any(n.endswith(("bias", "cls_token", "mask_token")) or "norm" in n for n in names)
    assert sum(len(g["params"]) for g in groups) == sum(p.requires_grad for p in model.parameters())


def test_cli_flags():
    args = parse_args(["--epochs", "3", "--set", "mask_ratio=0.5", "--set", "norm_pix_loss=true", "--quick"])
    assert args.overrides == {"mask_ratio": 0.5, "norm_pix_loss": True}
    assert args.epochs == 1 and args.max_steps == 150


@pytest.mark.slow
@needs_fmnist
def test_run_folder_and_loss_falls(tmp_path):
    out = pretrain(tiny_args(tmp_path / "run", epochs=3))
    for name in ("args.json", "config.yaml", "metrics.jsonl", "loss_curve.png", "recon_epoch001.png",
                 "recon_epoch003.png", "checkpoint.pt", "model.pt"):
        assert (out / name).is_file(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2, 3]
    assert epochs[-1]["test_loss"] < epochs[0]["test_loss"]
    model = MAE.from_checkpoint(out / "model.pt")
    assert model.config.norm_mean == [0.286] and model.config.embed_dim == 32
    full = torch.load(out / "checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "epoch", "step", "config"} <= set(full)
    assert full["step"] == 24 and full["scheduler"]["step_count"] == 24


@pytest.mark.slow
@needs_fmnist
def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    straight = tmp_path / "straight"
    subprocess.run([sys.executable, *cli(straight)], check=True, env=run_env(), cwd=ROOT, timeout=300)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, *cli(killed)], env=run_env(), cwd=ROOT)
    deadline = time.time() + 240
    while not (killed / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # land somewhere after the first checkpoint, mid-step
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "model.pt").exists(), "run finished before it could be killed"
    subprocess.run([sys.executable, *cli(killed, "--resume")], check=True, env=run_env(), cwd=ROOT, timeout=300)
    a, b = weights(straight / "model.pt"), weights(killed / "model.pt")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # The killed run's lock and half-written saves are gone; each epoch's mean loss is the uninterrupted run's.
    assert not (killed / ".lock").exists() and not list(killed.glob(".*.tmp"))
    assert epoch_losses(killed) == epoch_losses(straight)


def epoch_losses(out: Path) -> list[float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["train_loss"] for r in rows if r["kind"] == "epoch"]


@pytest.mark.slow
@needs_fmnist
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = MAE.forward_loss

    def poisoned(self, imgs, pred, mask):
        calls["n"] += 1
        loss = original(self, imgs, pred, mask)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(MAE, "forward_loss", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match="step 5") as err:
        pretrain(tiny_args(out))
    assert "--blr" in str(err.value) and "checkpoint" in str(err.value)
    digest = hashlib.sha256((out / "checkpoint.pt").read_bytes()).hexdigest()
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 3  # the checkpoint before the bad step
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert digest == hashlib.sha256((out / "checkpoint.pt").read_bytes()).hexdigest()


@needs_fmnist
@pytest.mark.slow
def test_torchrun_two_gloo_processes_match_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    extra = ["--epochs", "1"]
    subprocess.run([sys.executable, *cli(one, *extra)], check=True, env=run_env(), cwd=ROOT, timeout=300)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                    *cli(two, *extra)], check=True, env=run_env(), cwd=ROOT, timeout=300)
    a, b = weights(one / "model.pt"), weights(two / "model.pt")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=2e-5, rtol=1e-4, msg=key)
    assert not any(p.name.startswith("recon") for p in (two.parent).glob("*.png"))  # only rank 0 writes, in its folder


@pytest.mark.slow
@needs_fmnist
def test_schedule_steps_sets_the_cosine_length(tmp_path):
    """max_steps alone stops a long schedule early; schedule_steps fits the whole cosine into the run."""
    import json

    lrs = {}
    for name, extra in {"capped": {}, "fitted": {"schedule_steps": 6}}.items():
        pretrain(tiny_args(tmp_path / name, epochs=100, max_steps=6, warmup_epochs=0, log_every_steps=1,
                           ckpt_every_steps=100, **extra))
        log = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        lrs[name] = [m["lr"] for m in log if m["kind"] == "train"]
    assert len(lrs["fitted"]) == 6 and lrs["capped"][-1] > 0.99 * lrs["capped"][0]
    assert lrs["fitted"][-1] < 0.1 * lrs["fitted"][0]
    assert parse_args(["--schedule-steps", "40"]).schedule_steps == 40
