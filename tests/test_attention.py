"""Attention maps: recomputed weights are the ones the blocks use; rows are distributions; rollout."""

from __future__ import annotations

import pytest
import torch

from mae_lesson import MAE, Config
from mae_lesson.attention import (
    attention_output,
    attention_rollout,
    attention_weights,
    cls_attention,
    encoder_attention,
)
from mae_lesson.classifier import ViTClassifier
from mae_lesson.transformer import Block

TINY = {"img_size": 16, "patch_size": 4, "in_chans": 1, "embed_dim": 32, "encoder_depth": 3,
        "encoder_num_heads": 4, "decoder_embed_dim": 16, "decoder_depth": 1, "decoder_num_heads": 2}


def tiny_mae(seed: int = 0) -> MAE:
    torch.manual_seed(seed)
    return MAE(TINY).eval()


# 17 tokens take the block's explicit CPU path, 101 tokens and 64-wide heads take SDPA.
@pytest.mark.parametrize("tokens, dim, heads", [(17, 32, 4), (101, 128, 2)])
def test_recomputed_weights_reproduce_the_blocks_attention(tokens, dim, heads):
    torch.manual_seed(0)
    block = Block(dim, heads).eval()
    x = block.norm1(torch.randn(3, tokens, dim))
    weights = attention_weights(block.attn, x)
    assert weights.shape == (3, heads, tokens, tokens)
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(3, heads, tokens))
    with torch.no_grad():
        torch.testing.assert_close(attention_output(block.attn, x, weights), block.attn(x), atol=1e-5, rtol=1e-5)


def test_other_weights_give_another_output():
    """The equality above can fail: uniform weights do not reproduce the block."""
    torch.manual_seed(0)
    block = Block(32, 4).eval()
    x = block.norm1(torch.randn(2, 17, 32))
    uniform = torch.full((2, 4, 17, 17), 1 / 17)
    with torch.no_grad():
        assert not torch.allclose(attention_output(block.attn, x, uniform), block.attn(x), atol=1e-4)


def test_encoder_attention_shapes_rows_and_patch_order():
    model = tiny_mae()
    imgs = torch.randn(2, 1, 16, 16)
    maps = encoder_attention(model, imgs)
    assert len(maps) == TINY["encoder_depth"]
    for w in maps:
        assert w.shape == (2, 4, 17, 17)
        torch.testing.assert_close(w.sum(dim=-1), torch.ones(2, 4, 17))
    # Written out without hooks: patches in image order, cls first, then block by block.
    with torch.no_grad():
        x = model.patch_embed(imgs) + model.pos_embed[:, 1:]
        x = torch.cat([(model.cls_token + model.pos_embed[:, :1]).expand(2, -1, -1), x], dim=1)
        for blk, got in zip(model.blocks, maps):
            torch.testing.assert_close(got, attention_weights(blk.attn, blk.norm1(x)))
            x = blk(x)
    assert not any(blk.attn._forward_pre_hooks for blk in model.blocks), "hooks must be removed"


def test_encoder_attention_of_a_classifier_matches_its_mae():
    model = tiny_mae()
    classifier = ViTClassifier.from_mae(model, num_classes=3, drop_path=0.0)
    imgs = torch.randn(2, 1, 16, 16)
    for a, b in zip(encoder_attention(model, imgs), encoder_attention(classifier, imgs)):
        torch.testing.assert_close(a, b)
    assert classifier.training, "the model's train/eval mode is restored"


def test_pretrained_and_random_encoders_attend_differently():
    imgs = torch.randn(2, 1, 16, 16)
    a = encoder_attention(tiny_mae(0), imgs)[-1]
    b = encoder_attention(tiny_mae(1), imgs)[-1]
    assert not torch.allclose(a, b, atol=1e-3)


def test_cls_attention():
    weights = torch.rand(2, 3, 5, 5).softmax(dim=-1)
    got = cls_attention(weights)
    assert got.shape == (2, 3, 4)
    torch.testing.assert_close(got, weights[:, :, 0, 1:])
    assert (got.sum(dim=-1) < 1).all()
    with pytest.raises(ValueError, match=r"\[N, heads, T, T\]"):
        cls_attention(weights[:, :, 0])


def test_rollout_rows_sum_to_one_and_follow_the_paper():
    torch.manual_seed(0)
    weights = [torch.randn(2, 4, 6, 6).softmax(dim=-1) for _ in range(3)]
    rollout = attention_rollout(weights)
    assert rollout.shape == (2, 6, 6)
    torch.testing.assert_close(rollout.sum(dim=-1), torch.ones(2, 6))
    eye = torch.eye(6)
    mixed = [0.5 * w.mean(dim=1) + 0.5 * eye for w in weights]  # rows already sum to 1
    torch.testing.assert_close(rollout, mixed[2] @ mixed[1] @ mixed[0])
    assert not torch.allclose(rollout, mixed[0] @ mixed[1] @ mixed[2]), "the order of the product matters"


def test_rollout_of_identity_attention_is_identity_and_bad_input_is_refused():
    eye = torch.eye(5).expand(1, 2, 5, 5)
    torch.testing.assert_close(attention_rollout([eye, eye]), torch.eye(5).expand(1, 5, 5))
    with pytest.raises(ValueError, match="at least one block"):
        attention_rollout([])
    with pytest.raises(ValueError, match="head_fusion"):
        attention_rollout([eye], head_fusion="median")
    with pytest.raises(TypeError, match="encoder blocks"):
        encoder_attention(torch.nn.Linear(2, 2), torch.randn(1, 2))


def test_works_with_the_shipped_config():
    model = MAE(Config.from_file("fashion_mnist_p7")).eval()
    maps = encoder_attention(model, torch.randn(3, 1, 28, 28))
    assert len(maps) == 6 and maps[-1].shape == (3, 4, 17, 17)
    assert cls_attention(maps[-1]).shape == (3, 4, 16) and attention_rollout(maps).shape == (3, 17, 17)
