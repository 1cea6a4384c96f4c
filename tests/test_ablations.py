"""The ablation script end to end on a tiny budget: CSV rows, resumability, figures."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

from ablations import SHIPPED_CHECKPOINT, EncoderWithMaskTokens, main, tick_label, train_or_load  # noqa: E402

from mae_lesson import MAE  # noqa: E402
from mae_lesson.data import DEBIAN_FASHION_MNIST  # noqa: E402

TINY = {"img_size": 28, "patch_size": 4, "in_chans": 1, "embed_dim": 32, "encoder_depth": 1, "encoder_num_heads": 2,
        "decoder_embed_dim": 32, "decoder_depth": 1, "decoder_num_heads": 2}


def test_encoder_with_mask_tokens_sees_every_patch():
    torch.manual_seed(0)
    model = EncoderWithMaskTokens(TINY)
    imgs = torch.randn(2, 1, 28, 28)
    out = model(imgs)
    assert out["latent"].shape == (2, 1 + 49, 32)  # all patches, not the 12 visible ones
    assert out["pred"].shape == (2, 49, 16) and int(out["mask"].sum()) == 2 * (49 - 12)
    baseline = MAE(TINY)
    assert baseline(imgs)["latent"].shape == (2, 1 + 12, 32)
    # A removed patch's pixels cannot reach the encoder: changing them leaves the latent unchanged.
    noise = torch.rand(2, 49)
    mask = model(imgs, noise=noise)["mask"]
    hidden = model.unpatchify(mask.unsqueeze(-1).expand(-1, -1, 16))
    changed = imgs + 5 * hidden
    torch.testing.assert_close(model(imgs, noise=noise)["latent"], model(changed, noise=noise)["latent"])


def test_schedule_endpoints_random_init_and_shipped_checkpoint(tmp_path):
    """x0 is an untrained model (seeded); "shipped" loads data/'s checkpoint with its run's timing."""
    import argparse
    import json

    from mae_lesson import load_pretrained

    args = argparse.Namespace(seed=3, out=str(tmp_path), steps=10, batch_size=8)
    model, seconds, steps, epochs = train_or_load({}, {"steps_multiplier": 0}, "x0", [None] * 64, args)
    torch.manual_seed(3)
    fresh = MAE(model.config)
    assert (seconds, steps, epochs) == (0.0, 0, 0.0) and not any(tmp_path.iterdir())
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    model, seconds, steps, epochs = train_or_load({}, {"checkpoint": SHIPPED_CHECKPOINT}, "shipped", [None] * 64, args)
    shipped = load_pretrained("mae_fashion_mnist_tiny")
    assert model.config == shipped.config and model.pos_embed.dtype == torch.float32
    torch.testing.assert_close(model.blocks[0].attn.qkv.weight, shipped.blocks[0].attn.qkv.weight.float())
    log = [json.loads(line) for line in (ROOT / "data" / "mae_fashion_mnist_tiny_run" / "metrics.jsonl").open()]
    epoch_rows = [m for m in log if m["kind"] == "epoch"]
    assert epochs == len(epoch_rows) and steps == epoch_rows[-1]["step"]
    assert seconds == min(m["seconds"] for m in epoch_rows)
    assert tick_label({"ablation": "schedule", "value": "shipped", "epochs": "20.00"}) == "shipped\n20.0 ep"


@pytest.mark.parametrize("argv, message", [
    (["--only", "targt"], "unknown ablation 'targt'; choose from mask_ratio, target"),
    (["--only", "target", "--values", "normpix"], "its values are pixels, norm_pix"),
])
def test_unknown_settings_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    assert message in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(), reason="no Fashion-MNIST")
def test_sweep_writes_csv_and_figures_and_resumes(tmp_path):
    cmd = [sys.executable, str(ROOT / "experiments" / "ablations.py"), "--out", str(tmp_path), "--steps", "2",
           "--batch-size", "32", "--train-images", "256", "--test-images", "100", "--probe-images", "128",
           "--finetune-steps", "2", "--only", "encoder_mask_tokens", "target"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    subprocess.run(cmd, check=True, env=env, timeout=600)
    rows = list(csv.DictReader(open(tmp_path / "ablations.csv")))
    assert [(r["ablation"], r["value"]) for r in rows] == [
        ("target", "pixels"), ("target", "norm_pix"), ("encoder_mask_tokens", "no (MAE)"), ("encoder_mask_tokens", "yes")]
    for row in rows:
        for key in ("recon_loss", "linear_probe", "knn", "finetune", "epoch_seconds"):
            assert float(row[key]) >= 0, (row, key)
        assert 0 <= float(row["linear_probe"]) <= 1
    # The default setting was trained once and reused: identical numbers.
    assert rows[0]["overrides"] == rows[2]["overrides"] and rows[0]["knn"] == rows[2]["knn"]
    assert (tmp_path / "ablations.png").stat().st_size > 10_000
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(runs) == 3
    # Resumable: a second call trains nothing new and keeps the rows.
    mtimes = {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("model.pt")}
    subprocess.run(cmd, check=True, env=env, timeout=600)
    assert len(list(csv.DictReader(open(tmp_path / "ablations.csv")))) == 4
    assert all(p.stat().st_mtime == t for p, t in mtimes.items())
