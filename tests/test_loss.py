"""mae_lesson.loss: MSE on removed patches only; norm_pix_loss as the official formula."""

from __future__ import annotations

import pytest
import torch

from mae_lesson.loss import mae_loss, masked_mse, normalize_patches
from mae_lesson.patch_embed import patchify


def _mask(n: int, length: int, removed: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    order = torch.rand(n, length, generator=g).argsort(dim=1)
    mask = torch.zeros(n, length)
    mask.scatter_(1, order[:, :removed], 1.0)
    return mask


@pytest.mark.parametrize("norm_pix", [False, True])
def test_equals_official_forward_loss(norm_pix, reference):
    imgs = torch.randn(3, 3, 16, 16)
    pred = torch.randn(3, 16, 48)
    mask = _mask(3, 16, 12)
    ours = mae_loss(patchify(imgs, 4), pred, mask, norm_pix)
    torch.testing.assert_close(ours, reference.loss(imgs, pred, mask, 4, norm_pix))


def test_visible_patches_do_not_count():
    target = torch.randn(2, 16, 12)
    pred = torch.randn(2, 16, 12)
    mask = _mask(2, 16, 12)
    base = masked_mse(pred, target, mask)
    changed = pred.clone()
    changed[mask == 0] += 100.0  # garbage on every visible patch
    torch.testing.assert_close(masked_mse(changed, target, mask), base, rtol=0, atol=0)
    # ...while a change on one removed patch does move the loss.
    removed = changed.clone()
    n, l = (mask == 1).nonzero()[0].tolist()
    removed[n, l] += 1.0
    assert masked_mse(removed, target, mask) > base


def test_gradient_only_on_removed_patches():
    pred = torch.randn(2, 16, 12, requires_grad=True)
    mask = _mask(2, 16, 4)
    masked_mse(pred, torch.randn(2, 16, 12), mask).backward()
    grad_norm = pred.grad.abs().sum(-1)
    assert torch.all(grad_norm[mask == 0] == 0)
    assert torch.all(grad_norm[mask == 1] > 0)


def test_is_mean_over_removed_patches_of_per_patch_mse():
    target = torch.zeros(1, 4, 2)
    pred = torch.tensor([[[1.0, 1.0], [2.0, 0.0], [3.0, 3.0], [10.0, 10.0]]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    # per-patch MSE: 1, 2, 9 (the visible 100 is ignored)
    torch.testing.assert_close(masked_mse(pred, target, mask), torch.tensor(4.0))


def test_no_removed_patches_gives_mean_not_nan():
    pred, target = torch.randn(2, 9, 4), torch.randn(2, 9, 4)
    loss = masked_mse(pred, target, torch.zeros(2, 9))
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, ((pred - target) ** 2).mean())


def test_normalize_uses_unbiased_variance():
    # Few elements per patch (p*p*C = 4) so biased and unbiased variance differ by 4/3.
    target = torch.randn(2, 5, 4)
    mean = target.mean(-1, keepdim=True)
    unbiased = (target - mean) / (target.var(-1, unbiased=True, keepdim=True) + 1e-6) ** 0.5
    biased = (target - mean) / (target.var(-1, unbiased=False, keepdim=True) + 1e-6) ** 0.5
    out = normalize_patches(target)
    torch.testing.assert_close(out, unbiased)
    assert not torch.allclose(out, biased, atol=1e-3)


def test_normalize_eps_is_1e_minus_6():
    # A patch with tiny variance: the eps dominates, so 1e-6 vs 1e-5 or 1e-8 is visible.
    target = torch.tensor([[[0.0, 1e-3, 0.0, 1e-3]]])
    mean = target.mean(-1, keepdim=True)
    var = target.var(-1, keepdim=True)
    out = normalize_patches(target)
    torch.testing.assert_close(out, (target - mean) / (var + 1e-6) ** 0.5)
    for other in (1e-5, 1e-8):
        assert not torch.allclose(out, (target - mean) / (var + other) ** 0.5, rtol=1e-3)
    # A constant patch gives zeros, not NaN.
    const = normalize_patches(torch.full((1, 1, 8), 3.0))
    assert torch.equal(const, torch.zeros(1, 1, 8))


def test_model_forward_loss(tiny_model, tiny_images, reference):
    out = tiny_model(tiny_images)
    torch.testing.assert_close(out["loss"], reference.loss(tiny_images, out["pred"], out["mask"], 4, True))
    torch.testing.assert_close(tiny_model.forward_loss(tiny_images, out["pred"], out["mask"]), out["loss"])
    tiny_model.norm_pix_loss = False
    torch.testing.assert_close(
        tiny_model.forward_loss(tiny_images, out["pred"], out["mask"]),
        reference.loss(tiny_images, out["pred"], out["mask"], 4, False),
    )
