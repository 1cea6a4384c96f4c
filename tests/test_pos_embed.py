"""mae_lesson.pos_embed: the fixed 2-D sin-cos table, against a NumPy copy of the official code."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mae_lesson import MAE, Config
from mae_lesson.pos_embed import get_2d_sincos_pos_embed, sincos_1d


@pytest.mark.parametrize("dim, grid", [(32, 4), (64, 7), (128, 14), (16, 1)])
@pytest.mark.parametrize("cls_token", [False, True])
def test_square_table_matches_official_numpy(dim, grid, cls_token, reference):
    ours = get_2d_sincos_pos_embed(dim, grid, cls_token=cls_token)
    expected = torch.from_numpy(reference.sincos_2d(dim, grid, cls_token=cls_token)).float()
    assert ours.dtype == torch.float32
    assert ours.shape == (grid * grid + int(cls_token), dim)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("grid", [(3, 5), (5, 3), (9, 7), (1, 4)])
def test_non_square_table_matches_official_numpy(grid, reference):
    ours = get_2d_sincos_pos_embed(32, grid, cls_token=True)
    expected = torch.from_numpy(reference.sincos_2d(32, grid, cls_token=True)).float()
    assert ours.shape == (grid[0] * grid[1] + 1, 32)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)


def test_cls_row_is_zero_and_rest_unchanged():
    with_cls = get_2d_sincos_pos_embed(32, (3, 4), cls_token=True)
    without = get_2d_sincos_pos_embed(32, (3, 4))
    assert torch.count_nonzero(with_cls[0]) == 0
    torch.testing.assert_close(with_cls[1:], without, rtol=0, atol=0)


def test_first_half_encodes_the_column():
    # The official np.meshgrid(grid_w, grid_h) quirk, checked without the reference implementation.
    gh, gw, dim = 3, 5, 16
    table = get_2d_sincos_pos_embed(dim, (gh, gw)).reshape(gh, gw, dim)
    first, second = table[..., : dim // 2], table[..., dim // 2 :]
    # first half: the same along each column (varies only with the column index)
    assert torch.allclose(first, first[:1].expand_as(first))
    assert not torch.allclose(first, first[:, :1].expand_as(first))
    # second half: the same along each row
    assert torch.allclose(second, second[:, :1].expand_as(second))
    # and the values are the textbook code of the column index: sin(col * omega_0 = col) at channel 0
    cols = torch.arange(gw, dtype=torch.float32)
    torch.testing.assert_close(first[0, :, 0], torch.sin(cols))
    torch.testing.assert_close(first[0, :, dim // 4], torch.cos(cols))
    rows = torch.arange(gh, dtype=torch.float32)
    torch.testing.assert_close(second[:, 0, 0], torch.sin(rows))


def test_sincos_1d_formula():
    pos = torch.tensor([0.0, 1.0, 2.5, 10.0])
    dim = 8
    out = sincos_1d(dim, pos)
    assert out.shape == (4, dim)
    for m, x in enumerate(pos.tolist()):
        for d in range(dim // 2):
            omega = 1.0 / 10000 ** (d / (dim / 2))
            assert math.isclose(out[m, d].item(), math.sin(x * omega), abs_tol=1e-12)
            assert math.isclose(out[m, d + dim // 2].item(), math.cos(x * omega), abs_tol=1e-12)


def test_dim_not_divisible_by_4_raises():
    with pytest.raises(ValueError, match="divisible by 4"):
        get_2d_sincos_pos_embed(30, 4)


@pytest.mark.parametrize("img_size", [32, [24, 32]])
def test_model_tables_are_the_frozen_official_tables(img_size, tiny_dict, reference):
    model = MAE(Config({**tiny_dict, "img_size": img_size, "decoder_embed_dim": 16}))
    grid = model.patch_embed.grid_size
    assert grid == ((8, 8) if img_size == 32 else (6, 8))
    for param, dim in ((model.pos_embed, 32), (model.decoder_pos_embed, 16)):
        expected = torch.from_numpy(reference.sincos_2d(dim, grid, cls_token=True)).float().unsqueeze(0)
        assert param.requires_grad is False
        torch.testing.assert_close(param.data, expected, rtol=0, atol=1e-6)
    # Frozen: not counted and not moved by an optimiser step.
    assert model.count_parameters() == reference.param_count(model.config)
    before = model.pos_embed.detach().clone()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(torch.randn(2, 3, *model.patch_embed.img_size))["loss"].backward()
    opt.step()
    torch.testing.assert_close(model.pos_embed.data, before, rtol=0, atol=0)
    assert model.pos_embed.grad is None and model.decoder_pos_embed.grad is None


def test_numpy_reference_is_discriminating(reference):
    # If the quirk were "fixed" (row first), the reference would disagree: the test above can fail.
    table = reference.sincos_2d(16, (3, 5))
    swapped = np.concatenate([table[:, 8:], table[:, :8]], axis=1)
    assert not np.allclose(table, swapped)
    assert not torch.allclose(get_2d_sincos_pos_embed(16, (3, 5)), torch.from_numpy(swapped).float())
