"""mae_lesson.patch_embed: PatchEmbed, patchify / unpatchify layout (channel fastest, as official)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from mae_lesson import MAE
from mae_lesson.patch_embed import PatchEmbed, patchify, unpatchify


@pytest.mark.parametrize("shape, p", [((2, 3, 32, 32), 4), ((1, 3, 224, 224), 16), ((2, 3, 24, 40), 8), ((2, 1, 28, 28), 4)])
def test_patchify_matches_official_einsum(shape, p, reference):
    imgs = torch.randn(shape)
    out = patchify(imgs, p)
    n, c, h, w = shape
    assert out.shape == (n, (h // p) * (w // p), p * p * c)
    torch.testing.assert_close(out, reference.patchify(imgs, p), rtol=0, atol=0)


def test_patchify_element_layout_by_hand():
    # Each pixel gets a unique value so any permutation of the layout is caught.
    n, c, h, w, p = 1, 3, 8, 12, 4
    imgs = torch.arange(n * c * h * w, dtype=torch.float32).reshape(n, c, h, w)
    out = patchify(imgs, p)
    grid_w = w // p
    for i in range(h // p):
        for j in range(grid_w):
            for a in range(p):
                for b in range(p):
                    for ch in range(c):
                        # patch index row-major; vector index (row-in-patch, col-in-patch, channel)
                        assert out[0, i * grid_w + j, (a * p + b) * c + ch] == imgs[0, ch, i * p + a, j * p + b]


def test_patchify_is_not_channel_first():
    imgs = torch.randn(2, 3, 16, 16)
    channel_first = rearrange(imgs, "n c (h p) (w q) -> n (h w) (c p q)", p=4, q=4)
    assert not torch.allclose(patchify(imgs, 4), channel_first)


@pytest.mark.parametrize("shape, p", [((2, 3, 32, 32), 4), ((2, 1, 28, 28), 4), ((1, 3, 48, 48), 16)])
def test_unpatchify_inverts_square(shape, p):
    imgs = torch.randn(shape)
    back = unpatchify(patchify(imgs, p), p, shape[1])
    torch.testing.assert_close(back, imgs, rtol=0, atol=0)


def test_unpatchify_matches_official_square(reference):
    # facebookresearch/mae unpatchify (3 channels, square).
    p, h = 4, 8
    x = torch.randn(2, h * h, p * p * 3)
    official = torch.einsum("nhwpqc->nchpwq", x.reshape(2, h, h, p, p, 3)).reshape(2, 3, h * p, h * p)
    torch.testing.assert_close(unpatchify(x, p, 3), official, rtol=0, atol=0)


@pytest.mark.parametrize("shape, p", [((2, 3, 36, 28), 4), ((1, 1, 16, 64), 8), ((2, 3, 8, 32), 4)])
def test_unpatchify_inverts_non_square(shape, p):
    imgs = torch.randn(shape)
    back = unpatchify(patchify(imgs, p), p, shape[1], size=shape[2:])
    torch.testing.assert_close(back, imgs, rtol=0, atol=0)


def test_unpatchify_wrong_layout_does_not_invert():
    # Reading patches back with a channel-first layout scrambles the image: the pair is not symmetric by accident.
    imgs = torch.randn(1, 3, 16, 16)
    wrong = rearrange(patchify(imgs, 4), "n (h w) (c p q) -> n c (h p) (w q)", h=4, p=4, q=4, c=3)
    assert not torch.allclose(wrong, imgs)
    # And wrong channels are refused rather than silently reshaped.
    with pytest.raises(Exception):
        unpatchify(patchify(imgs, 4), 4, 2)


def test_unpatchify_errors():
    x = torch.randn(1, 12, 48)  # 12 patches: not a square grid
    with pytest.raises(ValueError, match="size"):
        unpatchify(x, 4, 3)
    with pytest.raises(ValueError, match="12"):
        unpatchify(x, 4, 3, size=(16, 16))
    assert unpatchify(x, 4, 3, size=(12, 16)).shape == (1, 3, 12, 16)


def test_patch_embed_is_a_linear_map_on_each_patch():
    embed = PatchEmbed(img_size=(16, 24), patch_size=4, in_chans=3, embed_dim=8)
    imgs = torch.randn(2, 3, 16, 24)
    out = embed(imgs)
    assert out.shape == (2, 4 * 6, 8)
    # unfold lists each patch as (c, row, col), the conv weight's own order.
    cols = F.unfold(imgs, kernel_size=4, stride=4).transpose(1, 2)  # [N, L, C*p*p]
    expected = cols @ embed.proj.weight.reshape(8, -1).T + embed.proj.bias
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_patch_embed_attributes():
    embed = PatchEmbed(img_size=(16, 24), patch_size=4, in_chans=1, embed_dim=8)
    assert embed.patch_size == (4, 4)
    assert embed.grid_size == (4, 6)
    assert embed.num_patches == 24
    square = PatchEmbed(img_size=224, patch_size=16, in_chans=3, embed_dim=8)
    assert square.img_size == (224, 224) and square.num_patches == 196
    assert isinstance(square.proj, torch.nn.Conv2d)
    assert square.proj.kernel_size == (16, 16) and square.proj.stride == (16, 16)


def test_model_patchify_methods(tiny_model, tiny_images, reference):
    torch.testing.assert_close(tiny_model.patchify(tiny_images), reference.patchify(tiny_images, 4), rtol=0, atol=0)
    torch.testing.assert_close(tiny_model.unpatchify(tiny_model.patchify(tiny_images)), tiny_images, rtol=0, atol=0)
    rect = torch.randn(1, 3, 36, 28)
    torch.testing.assert_close(tiny_model.unpatchify(tiny_model.patchify(rect), size=(36, 28)), rect, rtol=0, atol=0)
    assert tiny_model.patch_size == 4 and isinstance(tiny_model, MAE)


@pytest.mark.parametrize("shape, p", [((4, 1, 28, 28), 7), ((3, 3, 32, 32), 4), ((2, 3, 16, 24), 8)])
def test_patch_embed_matmul_equals_its_convolution(shape, p):
    """The forward (one matrix product) computes the stored Conv2d's map: values and weight gradients."""
    torch.manual_seed(0)
    embed = PatchEmbed(img_size=shape[2:], patch_size=p, in_chans=shape[1], embed_dim=16)
    imgs = torch.randn(shape)
    target = torch.randn(shape[0], embed.num_patches, 16)
    out = embed(imgs)
    expected = embed.proj(imgs).flatten(2).transpose(1, 2)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad((out * target).sum(), (embed.proj.weight, embed.proj.bias))
    grads_expected = torch.autograd.grad((expected * target).sum(), (embed.proj.weight, embed.proj.bias))
    for got, want in zip(grads, grads_expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # The check can fail: the transposed patch order (p, p, C) is a different map for C > 1.
    if shape[1] > 1:
        wrong = F.linear(patchify(imgs, p), embed.proj.weight.flatten(1), embed.proj.bias)
        assert not torch.allclose(wrong, expected, atol=1e-3)
