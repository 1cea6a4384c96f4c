"""The shipped checkpoints in data/: every one loads by name as documented; export round-trips."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from mae_lesson import MAE, Config, available_pretrained, load_pretrained
from mae_lesson.checkpoint import safe_load
from mae_lesson.pretrain import PretrainArgs
from mae_lesson.pretrained import DATA_DIR, DEFAULT_PRETRAINED, export_pretrained

TINY = {"img_size": 8, "patch_size": 4, "in_chans": 1, "embed_dim": 16, "encoder_depth": 1, "encoder_num_heads": 2,
        "decoder_embed_dim": 16, "decoder_depth": 1, "decoder_num_heads": 2, "norm_mean": [0.3], "norm_std": [0.4]}


def test_the_default_checkpoint_is_shipped():
    assert DEFAULT_PRETRAINED in available_pretrained()


def test_the_default_checkpoint_is_the_default_cpu_config_trained():
    """load_pretrained() is the main job's model: same architecture as the pretraining default config."""
    default_config = Config.from_file(PretrainArgs().config)
    shipped = safe_load(DATA_DIR / f"{DEFAULT_PRETRAINED}.pt")
    model_keys = [k for k in default_config.to_dict() if k not in ("model_name", "description")]
    assert {k: shipped["config"][k] for k in model_keys} == {k: default_config[k] for k in model_keys}


@pytest.mark.slow
@pytest.mark.parametrize("name", available_pretrained())
def test_every_shipped_checkpoint_loads_as_documented(name):
    path = DATA_DIR / f"{name}.pt"
    assert path.stat().st_size <= 20 * 2**20  # small enough to commit and clone quickly
    raw = safe_load(path)  # weights_only=True, like every checkpoint
    assert "optimizer" not in raw and all(v.dtype == torch.float16 for v in raw["model"].values() if v.is_floating_point())
    model = load_pretrained(name)
    assert isinstance(model, MAE) and not model.training and model.config.model_name == name
    assert all(p.dtype == torch.float32 for p in model.parameters())
    cfg = model.config
    assert len(cfg.norm_mean) == len(cfg.norm_std) == cfg.in_chans  # how to feed it images
    imgs = torch.zeros(2, cfg.in_chans, cfg.img_size, cfg.img_size)
    out = model(imgs, mask_ratio=cfg.mask_ratio)
    patches = cfg.grid_size[0] * cfg.grid_size[1]
    assert torch.isfinite(out["loss"]) and out["pred"].shape[:2] == out["mask"].shape == (2, patches)


@pytest.mark.parametrize("name", available_pretrained())
def test_every_shipped_checkpoint_comes_with_its_run_record(name):
    """data/<name>_run/ holds the exact arguments, the config and a metrics log that ends at the shipped step."""
    raw = safe_load(DATA_DIR / f"{name}.pt")
    run = DATA_DIR / f"{name}_run"
    args = json.loads((run / "args.json").read_text())
    # A resumed run's checkpoint says resume=True; older checkpoints predate some later flags.
    shared = (args.keys() & raw["args"].keys()) - {"resume"}
    assert {"config", "overrides", "epochs", "batch_size", "blr", "warmup_epochs", "seed"} <= shared
    assert {k: args[k] for k in shared} == {k: raw["args"][k] for k in shared}
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert {k: v for k, v in config.items() if k != "model_name"} == {k: v for k, v in raw["config"].items() if k != "model_name"}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    last_epoch = [r for r in records if r["kind"] == "epoch"][-1]
    assert last_epoch["step"] == raw["step"] and last_epoch["epoch"] == args["epochs"]
    assert (run / "loss_curve.png").is_file() and (run / f"recon_epoch{args['epochs']:03d}.png").is_file()


def test_missing_name_says_what_is_available(tmp_path):
    (tmp_path / "mae_other.pt").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="mae_other"):
        load_pretrained("mae_nope", data_dir=tmp_path)


def test_export_keeps_weights_in_fp16_and_drops_training_state(tmp_path):
    torch.manual_seed(0)
    model = MAE(TINY)
    model.save_checkpoint(tmp_path / "model.pt", optimizer={"state": {}}, epoch=3)
    export_pretrained(tmp_path / "model.pt", tmp_path / "mae_small.pt")
    assert available_pretrained(tmp_path) == ["mae_small"]
    shipped = load_pretrained("mae_small", data_dir=tmp_path)
    assert "optimizer" not in safe_load(tmp_path / "mae_small.pt") and safe_load(tmp_path / "mae_small.pt")["epoch"] == 3
    assert shipped.config.norm_mean == [0.3] and shipped.config.model_name == "mae_small"
    for key, value in model.state_dict().items():
        torch.testing.assert_close(shipped.state_dict()[key], value, atol=2e-3, rtol=1e-3)
