"""Issue 32, tracebacks and misleading messages at the edges: each is one line naming the problem and the
fix, exit code 2, with nothing written; checkpoint configs are checked against their tensors before any
model is built; knobs with no useful upper end have one."""

from __future__ import annotations

import gzip
import json
import math
import shutil
import time
from pathlib import Path

import pytest
import torch

from mae_lesson import MAE, results
from mae_lesson import pretrain as engine
from mae_lesson.run import finetune_cli, pretrain_cli
from mae_lesson.run import setup as run_setup
from mae_lesson.checkpoint import safe_load
from mae_lesson.data import DEBIAN_FASHION_MNIST, ImageData, load_fashion_mnist
from mae_lesson.finetune import FinetuneArgs, finetune
from mae_lesson.pretrain import pretrain

from conftest import TINY_RUN, needs_fmnist  # noqa: E402
from test_edges_resume import grey_folder, small_args, snapshot  # noqa: E402
from test_robustness import one_error_line  # noqa: E402

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
NO_MPS = pytest.mark.skipif(getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
                            reason="this machine has MPS")


def refused(main, argv, capsys) -> str:
    """Run a command line that must fail: exit code 2 and one error line, returned."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    return one_error_line(capsys.readouterr().err)


# ------------------------------------------------------------------------------ values
@pytest.mark.parametrize("argv, phrase", [
    pytest.param(["--device", "cuda"], "--device cuda: no CUDA GPU is available", marks=NO_CUDA),
    pytest.param(["--device", "mps"], "--device mps: Apple's MPS backend is not available", marks=NO_MPS),
    (["--device", "cdua"], "--device 'cdua' is not a device: use auto, cpu, cuda"),
    (["--warmup-epochs", "inf"], "(--warmup-epochs) must be a finite number, got inf"),
    (["--blr", "nan"], "(--blr) must be a finite number, got nan"),
    (["--seed", str(2**63 + 1)], "--seed must be between 0 and 18,446,632"),
    (["--num-figure-images", "100000"], "--num-figure-images must be at most 32"),
])
def test_bad_pretraining_values_are_one_line_and_write_nothing(argv, phrase, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    message = refused(engine.main, argv, capsys)
    assert phrase in message, message
    assert list(tmp_path.iterdir()) == []


def test_a_number_yaml_reads_as_text_is_the_number_and_quoted_text_stays_text():
    assert engine.parse_overrides(["mask_ratio=1e-1", "embed_dim=64", "model_name='1e3'"]) == {
        "mask_ratio": 0.1, "embed_dim": 64, "model_name": "1e3"}
    assert engine.parse_args(["--set", "mask_ratio=1e-1"]).overrides == {"mask_ratio": 0.1}


@pytest.mark.parametrize("argv, phrase", [
    pytest.param(["--mode", "finetune", "--device", "cuda"], "--device cuda: no CUDA GPU", marks=NO_CUDA),
    (["--mode", "finetune", "--seeds", "0", str(2**63)], "--seeds must be between 0 and"),
    (["--mode", "probe", "--warmup-epochs", "inf"], "must be a finite number, got inf"),
])
def test_bad_fine_tuning_values_are_one_line(argv, phrase, tiny_model, tmp_path, capsys, monkeypatch):
    tiny_model.save_checkpoint(tmp_path / "model.pt")
    monkeypatch.setattr(results, "load_dataset", lambda *a, **k: pytest.fail("data loaded before the values were checked"))
    message = refused(finetune_cli.main, [*argv, "--checkpoint", str(tmp_path / "model.pt"), "--out", str(tmp_path / "e")],
                      capsys)
    assert phrase in message, message


def test_an_img_size_pair_trains(tmp_path):
    data = grey_folder(tmp_path / "imgs")
    args = small_args(data, tmp_path / "run", max_steps=2, overrides={**TINY_RUN, "img_size": [16, 16],
                                                                      "patch_size": 4})
    model = MAE.from_checkpoint(pretrain(args) / "model.pt")
    assert model.config.img_size == [16, 16]


# ------------------------------------------------------------------------------ checkpoints
def huge_claim(tiny_model, path, **claims) -> None:
    """Real (tiny) weights under a config that claims a huge model."""
    torch.save({"model": tiny_model.state_dict(), "config": {**tiny_model.config.to_dict(), **claims}}, path)


@pytest.mark.parametrize("claims, phrase", [
    ({"embed_dim": 65536, "encoder_num_heads": 16}, "cls_token is [1, 1, 32] in the file, [1, 1, 65536] by the config"),
    ({"encoder_depth": 100_000}, "encoder_depth is 100000 by the config, 2 blocks in the file"),
    ({"decoder_depth": 5000}, "decoder_depth is 5000 by the config, 1 blocks in the file"),
    ({"img_size": 4096}, "pos_embed is [1, 65, 32] in the file, [1, 1048577, 32] by the config"),
])
def test_a_config_that_claims_a_huge_model_is_refused_from_the_shapes_alone(claims, phrase, tiny_model, tmp_path,
                                                                             monkeypatch):
    path = tmp_path / "hostile.pt"
    huge_claim(tiny_model, path, **claims)
    monkeypatch.setattr(MAE, "__init__", lambda *a, **k: pytest.fail("a model was built before the shapes were checked"))
    start = time.perf_counter()
    with pytest.raises(ValueError, match="does not match its own config") as err:
        MAE.from_checkpoint(path)
    assert phrase in str(err.value) and time.perf_counter() - start < 5, str(err.value)


@pytest.mark.parametrize("config, phrase", [([1, 2], "its 'config' is a list, not a mapping"),
                                            ({"img_size": "big"}, "has a config that is not valid: img_size")])
def test_a_checkpoint_config_that_is_not_a_config_is_one_line(config, phrase, tiny_model, tmp_path, capsys):
    path = tmp_path / "model.pt"
    torch.save({"model": tiny_model.state_dict(), "config": config}, path)
    message = refused(finetune_cli.main, ["--mode", "probe", "--checkpoint", str(path), "--out", str(tmp_path / "e")], capsys)
    assert phrase in message and str(path) in message, message


def test_resume_from_a_model_pt_copied_to_checkpoint_pt_is_one_line(tmp_path, capsys):
    data = grey_folder(tmp_path / "imgs")
    out = pretrain(small_args(data, tmp_path / "run", max_steps=2))
    shutil.copy(out / "model.pt", out / "checkpoint.pt")
    before = snapshot(out)
    argv = ["--config", "fashion_mnist_tiny", "--dataset", str(data), "--batch-size", "16", "--epochs", "3",
            "--warmup-epochs", "0.5", "--blr", "1e-3", "--ckpt-every-steps", "100", "--log-every-steps", "1",
            "--no-progress", "--num-figure-images", "2", "--out", str(out), "--resume",
            *[f"--set={k}={v}" for k, v in {**TINY_RUN, "img_size": 16, "patch_size": 4}.items()]]
    message = refused(engine.main, argv, capsys)
    assert "is not a training checkpoint" in message and "model.pt copied" in message, message
    assert snapshot(out) == before


@pytest.mark.slow
@pytest.mark.parametrize("damage, phrase", [
    ('{"kind": "train", "step": 1, "epoch": 1, "lr": 0.001}\n', "line 1 is not a metrics row with a step and a loss"),
    (b"\x89PNG\r\n\x1a\n\xff\xfe binary", "is not a text file of metrics rows"),
])
def test_a_damaged_metrics_log_is_named_before_the_resume_changes_anything(damage, phrase, tmp_path):
    data = grey_folder(tmp_path / "imgs")
    out = pretrain(small_args(data, tmp_path / "run", max_steps=3))
    good = (out / "metrics.jsonl").read_text()
    (out / "metrics.jsonl").write_bytes(damage.encode() + good.encode() if isinstance(damage, str) else damage)
    before = snapshot(out)
    with pytest.raises(engine.RunError, match=phrase) as err:
        pretrain(small_args(data, out, resume=True))
    assert str(out / "metrics.jsonl") in str(err.value)
    assert snapshot(out) == before


def test_a_late_failure_of_a_fresh_run_leaves_no_run_behind(tmp_path, monkeypatch):
    def late(*args, **kwargs):
        raise engine.RunError("late failure")

    monkeypatch.setattr(run_setup, "eval_transform", late)  # the last thing set_up does before the first step
    out = tmp_path / "run"
    with pytest.raises(engine.RunError, match="late failure"):
        pretrain(small_args(grey_folder(tmp_path / "imgs"), out))
    assert not out.exists()  # not even args.json or config.yaml: the folder holds no run


def test_a_second_ctrl_c_names_the_checkpoint_that_exists(tmp_path, capsys, monkeypatch):
    def stopped_at_once(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrain_cli, "pretrain", stopped_at_once)
    out = tmp_path / "run"
    with pytest.raises(SystemExit):
        engine.main(["--out", str(out)])
    assert "no checkpoint was saved" in capsys.readouterr().err
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"a run's last save")
    with pytest.raises(SystemExit) as exit_:
        engine.main(["--out", str(out)])
    err = capsys.readouterr().err
    assert exit_.value.code == 130 and "nothing was saved" not in err
    assert f"{out / 'checkpoint.pt'} holds the run as of its last save" in err and "--resume" in err


# ------------------------------------------------------------------------------ fine-tuning
def grey(n: int) -> ImageData:
    return ImageData(torch.zeros(n, 1, 32, 32, dtype=torch.uint8), torch.arange(n) % 2, ("a", "b"), (0.5,), (0.25,))


def test_fine_tuning_with_a_batch_larger_than_the_data_or_other_channels_is_refused(tiny_model):
    args = FinetuneArgs(epochs=1, batch_size=64, progress=False, eval_every_epoch=False)
    one_channel = MAE({**tiny_model.config.to_dict(), "in_chans": 1})
    with pytest.raises(ValueError, match="--batch-size 64 is larger than the 16 training images"):
        finetune(one_channel, grey(16), grey(8), args)
    with pytest.raises(ValueError, match="the model takes 3-channel images but the training images have 1"):
        finetune(tiny_model, grey(128), grey(8), args)


# ------------------------------------------------------------------------------ data
@needs_fmnist
@pytest.mark.parametrize("damage", ["cut short", "not gzip", "wrong header"])
def test_damaged_fashion_mnist_files_are_named(damage, tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(DEBIAN_FASHION_MNIST / name, raw / name)
    images = raw / "t10k-images-idx3-ubyte.gz"
    if damage == "cut short":
        images.write_bytes(images.read_bytes()[:50_000])
    elif damage == "not gzip":
        images.write_bytes(b"<html>a proxy's error page</html>")
    else:
        images.write_bytes(gzip.compress(b"\x00\x00\x09\x03" + bytes(100)))
    with pytest.raises(engine.RunError, match=f"{images} is damaged") as err:
        load_fashion_mnist(tmp_path, "test")
    assert "download" in str(err.value) and len(str(err.value).splitlines()) == 1


# ------------------------------------------------------------------------------ Hugging Face
def test_conversions_that_would_lose_something_are_refused(tiny_dict):
    pytest.importorskip("transformers")
    from transformers import ViTMAEConfig, ViTMAEModel

    from mae_lesson.interop import from_hf, to_hf

    with pytest.raises(ValueError, match="mask_type is 'block'"):
        to_hf(MAE({**tiny_dict, "mask_type": "block"}))
    hf_config = ViTMAEConfig(image_size=32, patch_size=4, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                             intermediate_size=128, decoder_hidden_size=16, decoder_num_hidden_layers=1,
                             decoder_num_attention_heads=2, decoder_intermediate_size=64, layer_norm_eps=1e-6)
    with pytest.raises(ValueError, match="no decoder.*ViTMAEForPreTraining"):
        from_hf(ViTMAEModel(hf_config))
