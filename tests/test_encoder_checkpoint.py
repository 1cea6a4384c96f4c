"""An encoder-only checkpoint (the official mae_pretrain_vit_*.pth kind) has its own loader path."""

from __future__ import annotations

import pytest
import torch

from mae_lesson import MAE
from mae_lesson.checkpoint import DECODER_PREFIXES, load_encoder_checkpoint


def encoder_only(model: MAE) -> dict[str, torch.Tensor]:
    """What the official fine-tuning checkpoints hold: the state dict without the decoder's keys."""
    return {k: v.clone() for k, v in model.state_dict().items() if not k.startswith(DECODER_PREFIXES)}


def test_an_encoder_only_checkpoint_loads_and_names_the_random_decoder(tiny_config, tmp_path):
    torch.manual_seed(0)
    source = MAE(tiny_config)
    path = tmp_path / "mae_pretrain_tiny.pth"
    torch.save({"model": encoder_only(source)}, path)
    target = MAE(tiny_config)
    with pytest.raises(ValueError, match="missing in checkpoint"):  # the strict loader refuses it
        target.load_checkpoint(path)
    left = load_encoder_checkpoint(target, path)
    assert left and all(k.startswith(DECODER_PREFIXES) for k in left)
    assert set(left) == {k for k in target.state_dict() if k.startswith(DECODER_PREFIXES)}
    for k, v in encoder_only(source).items():
        torch.testing.assert_close(target.state_dict()[k], v, msg=k)


def test_a_checkpoint_without_part_of_the_encoder_is_refused(tiny_config, tmp_path):
    state = encoder_only(MAE(tiny_config))
    del state["blocks.0.attn.qkv.weight"]
    state["norm.weight"] = torch.ones(3)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"blocks\.0\.attn\.qkv\.weight(.|\n)*norm\.weight"):
        load_encoder_checkpoint(MAE(tiny_config), path)


def test_a_full_checkpoint_loads_whole(tiny_config, tmp_path):
    torch.manual_seed(1)
    source = MAE(tiny_config)
    path = tmp_path / "full.pth"
    torch.save({"model": source.state_dict()}, path)
    target = MAE(tiny_config)
    assert load_encoder_checkpoint(target, path) == []
    torch.testing.assert_close(target.decoder_pred.weight, source.decoder_pred.weight)
