"""mae_lesson.checkpoint and MAE.save_checkpoint / load_checkpoint / from_checkpoint:
round trips, the guide's and the official formats, and refusing anything that is not data."""

from __future__ import annotations

import argparse
import builtins
import os
import pickle

import pytest
import torch

from mae_lesson import MAE, Config
from mae_lesson.checkpoint import atomic_save, describe_mismatch, extract_state_dict, safe_load


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _other_model(tiny_dict) -> MAE:
    torch.manual_seed(99)
    return MAE(tiny_dict)


# ---------------------------------------------------------------- round trips and formats


def test_save_and_from_checkpoint_roundtrip(tiny_model, tiny_images, tmp_path):
    path = tmp_path / "sub" / "mae.pth"
    tiny_model.save_checkpoint(path, epoch=3, note="hello")
    restored = MAE.from_checkpoint(path)
    assert restored.config == tiny_model.config
    assert _same_weights(restored, tiny_model)
    noise = torch.rand(2, 64)
    a, b = tiny_model.eval()(tiny_images, noise=noise), restored.eval()(tiny_images, noise=noise)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [p.name for p in path.parent.iterdir()] == ["mae.pth"]  # no temporary file left behind


def test_saved_checkpoint_is_plain_data(tiny_model, tmp_path):
    path = tmp_path / "mae.pth"
    tiny_model.save_checkpoint(path, epoch=3)
    ckpt = torch.load(path, weights_only=True)  # no allow-list needed
    assert type(ckpt["config"]) is dict and ckpt["config"] == dict(tiny_model.config)
    assert ckpt["epoch"] == 3
    assert set(ckpt["model"]) == set(tiny_model.state_dict())


def test_load_guide_format(tiny_model, tiny_dict, tmp_path):
    # Exactly what the guide's training loop writes.
    optimizer = torch.optim.AdamW(tiny_model.parameters(), lr=1e-4, weight_decay=0.05)
    tiny_model(torch.randn(2, 3, 32, 32))["loss"].backward()
    optimizer.step()
    path = tmp_path / "mae_checkpoint_epoch_0.pth"
    torch.save({"epoch": 0, "model_state_dict": tiny_model.state_dict(),
                "optimizer_state_dict": optimizer.state_dict(), "loss": 0.5}, path)
    other = _other_model(tiny_dict)
    assert not _same_weights(other, tiny_model)
    ckpt = other.load_checkpoint(path)
    assert _same_weights(other, tiny_model)
    assert ckpt["epoch"] == 0 and ckpt["loss"] == 0.5
    with pytest.raises(ValueError, match="config"):  # the guide's file does not carry a config
        MAE.from_checkpoint(path)


def test_load_official_format_with_argparse_namespace(tiny_model, tiny_dict, tmp_path):
    args = argparse.Namespace(model="mae_vit_base_patch16", mask_ratio=0.75, norm_pix_loss=True, blr=1.5e-4,
                              input_size=224, output_dir="./output_dir")
    optimizer = torch.optim.AdamW(tiny_model.parameters(), lr=1e-4)
    path = tmp_path / "checkpoint-799.pth"
    torch.save({"model": tiny_model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 799,
                "scaler": {"scale": 65536.0}, "args": args}, path)
    other = _other_model(tiny_dict)
    ckpt = other.load_checkpoint(path)
    assert _same_weights(other, tiny_model)
    assert ckpt["args"] == args and ckpt["epoch"] == 799


def test_load_bare_and_lightning_state_dicts(tiny_model, tiny_dict, tmp_path):
    for i, obj in enumerate([tiny_model.state_dict(), {"state_dict": tiny_model.state_dict()}]):
        path = tmp_path / f"{i}.pth"
        torch.save(obj, path)
        other = _other_model(tiny_dict)
        other.load_checkpoint(path)
        assert _same_weights(other, tiny_model)


def test_strict_false_loads_a_partial_checkpoint(tiny_model, tiny_dict, tmp_path):
    encoder_only = {k: v for k, v in tiny_model.state_dict().items() if k.startswith(("blocks.", "patch_embed."))}
    path = tmp_path / "encoder.pth"
    torch.save({"model": encoder_only}, path)
    other = _other_model(tiny_dict)
    with pytest.raises(ValueError, match="missing in checkpoint"):
        other.load_checkpoint(path)
    other.load_checkpoint(path, strict=False)
    assert torch.equal(other.blocks[0].attn.qkv.weight, tiny_model.blocks[0].attn.qkv.weight)
    assert not torch.equal(other.decoder_pred.weight, tiny_model.decoder_pred.weight)


# ---------------------------------------------------------------- errors


def test_missing_file(tiny_model, tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        tiny_model.load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        MAE.from_checkpoint(path)


def _good_file(tiny_model, tmp_path) -> bytes:
    tiny_model.save_checkpoint(tmp_path / "good.pth")
    return (tmp_path / "good.pth").read_bytes()


@pytest.mark.parametrize("kind", ["truncated", "truncated_tail", "empty"])
def test_truncated_or_empty_file_raises_value_error_naming_path(kind, tiny_model, tmp_path):
    data = _good_file(tiny_model, tmp_path)
    content = {"truncated": data[: len(data) // 2], "truncated_tail": data[:-100], "empty": b""}[kind]
    path = tmp_path / f"{kind}.pth"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"{kind}.pth"):
        tiny_model.load_checkpoint(path)
    with pytest.raises(ValueError, match=f"{kind}.pth"):
        safe_load(path)


@pytest.mark.parametrize(
    "content",
    [b"hello, this is a text file, not a checkpoint\n", bytes(range(256)) * 4, b"\x00" * 64],
    ids=["text", "byte_ramp", "zeros"],
)
def test_garbage_bytes_raise_value_error_naming_path(content, tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="garbage.pth"):
        safe_load(path)


class _SystemPayload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


class _ExecPayload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.target)!r}, 'w').close()",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on raw protocol-4 pickles
@pytest.mark.parametrize("payload", [_SystemPayload, _ExecPayload])
@pytest.mark.parametrize("container", ["torch_zip", "raw_pickle"])
def test_malicious_pickle_is_refused_without_running(payload, container, tiny_model, tmp_path):
    marker = tmp_path / "pwned"
    obj = {"model": tiny_model.state_dict(), "config": dict(tiny_model.config), "evil": payload(marker)}
    path = tmp_path / "evil.pth"
    if container == "torch_zip":
        torch.save(obj, path)
    else:
        with open(path, "wb") as handle:
            pickle.dump(obj, handle)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match="evil.pth"):
        safe_load(path)
    with pytest.raises(pickle.UnpicklingError):
        tiny_model.load_checkpoint(path)
    with pytest.raises(pickle.UnpicklingError):
        MAE.from_checkpoint(path)
    assert not marker.exists(), "the payload ran"


def test_payload_would_run_under_unsafe_load(tmp_path):
    # Proves the malicious-file test can fail: a plain pickle load does run the payload.
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as handle:
        pickle.dump(_ExecPayload(marker), handle)
    with open(path, "rb") as handle:
        pickle.load(handle)
    assert marker.exists()


@pytest.mark.parametrize("change", [{"embed_dim": 64}, {"encoder_depth": 3}, {"in_chans": 1}])
def test_other_architecture_lists_mismatches(change, tiny_model, tiny_dict, tmp_path):
    path = tmp_path / "mae.pth"
    tiny_model.save_checkpoint(path)
    other = MAE({**tiny_dict, **change})
    with pytest.raises(ValueError) as info:
        other.load_checkpoint(path)
    message = str(info.value)
    assert "mae.pth" in message
    if "embed_dim" in change:
        assert "shape mismatches" in message
        assert "cls_token: model [1, 1, 64], checkpoint [1, 1, 32]" in message
    elif "encoder_depth" in change:
        assert "missing in checkpoint (12): blocks.2." in message  # 12 tensors of the third block
    else:
        assert "patch_embed.proj.weight: model [32, 1, 4, 4], checkpoint [32, 3, 4, 4]" in message
    if "encoder_depth" not in change:  # shape mismatches are refused even when not strict
        with pytest.raises(ValueError, match="shape mismatches"):
            other.load_checkpoint(path, strict=False)


def test_from_checkpoint_with_inconsistent_config(tiny_model, tiny_dict, tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"model": tiny_model.state_dict(), "config": {**tiny_dict, "embed_dim": 64}}, path)
    with pytest.raises(ValueError, match="does not match its own config"):
        MAE.from_checkpoint(path)


# ---------------------------------------------------------------- helpers


def test_atomic_save_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "ckpt.pth"
    atomic_save({"a": torch.ones(2)}, path)
    with pytest.raises(Exception):
        atomic_save({"a": lambda: None}, path)  # lambdas cannot be pickled
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]
    atomic_save({"a": torch.zeros(3)}, path)  # overwrite
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.zeros(3))


def test_extract_state_dict_and_describe_mismatch():
    sd = {"w": torch.zeros(2, 3)}
    for wrapped in (sd, {"model": sd}, {"model_state_dict": sd}, {"state_dict": sd}):
        assert extract_state_dict(wrapped).keys() == sd.keys()
    with pytest.raises(ValueError, match="model_state_dict"):
        extract_state_dict({"epoch": 1})
    assert describe_mismatch(sd, sd) == ""
    text = describe_mismatch({"w": torch.zeros(2, 3), "b": torch.zeros(2)}, {"w": torch.zeros(3, 3), "x": torch.zeros(1)})
    assert "missing in checkpoint (1): b" in text
    assert "not in model (1): x" in text
    assert "w: model [2, 3], checkpoint [3, 3]" in text


def test_config_object_survives_checkpoint(tiny_dict, tmp_path):
    cfg = Config({**tiny_dict, "img_size": [32, 24], "mask_type": "block"})
    model = MAE(cfg)
    model.save_checkpoint(tmp_path / "m.pth")
    again = MAE.from_checkpoint(tmp_path / "m.pth")
    assert again.config.mask_type == "block" and again.patch_embed.grid_size == (8, 6)
