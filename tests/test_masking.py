"""mae_lesson.masking: exact kept counts, the official random masking, block and grid masks."""

from __future__ import annotations

import pytest
import torch

from mae_lesson import MAE, Config
from mae_lesson.masking import block_side, masking_noise, num_kept, random_masking

RATIOS = [0.1, 0.25, 0.5, 0.6, 0.75, 0.9, 0.95]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _check_mask_consistency(x, x_masked, mask, ids_restore, len_keep):
    n, length, dim = x.shape
    assert mask.dtype == x.dtype and mask.is_floating_point()
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(mask.sum(dim=1), torch.full((n,), float(length - len_keep)))
    # ids_restore is a permutation, and a patch is kept iff its shuffled rank is < len_keep.
    assert torch.equal(ids_restore.sort(dim=1).values, torch.arange(length).expand(n, length))
    assert torch.equal(mask, (ids_restore >= len_keep).float())
    # The kept tokens are the visible patches, in shuffled order: un-shuffling puts them back.
    restored = torch.gather(
        torch.cat([x_masked, torch.zeros(n, length - len_keep, dim)], dim=1), 1,
        ids_restore.unsqueeze(-1).expand(-1, -1, dim),
    )
    keep = (mask == 0).unsqueeze(-1)
    torch.testing.assert_close(restored * keep, x * keep, rtol=0, atol=0)


@pytest.mark.parametrize("length", [49, 64, 196])
@pytest.mark.parametrize("ratio", RATIOS)
def test_random_masking_kept_count_and_consistency(length, ratio):
    x = torch.randn(3, length, 8)
    len_keep = int(length * (1 - ratio))  # the official formula
    assert num_kept(length, ratio) == len_keep
    x_masked, mask, ids_restore = random_masking(x, ratio)
    assert x_masked.shape == (3, len_keep, 8)
    _check_mask_consistency(x, x_masked, mask, ids_restore, len_keep)


@pytest.mark.parametrize("mask_type, grid, ratios", [
    ("random", (7, 7), RATIOS),
    ("block", (7, 7), RATIOS),
    ("block", (14, 14), RATIOS),
    ("block", (6, 10), RATIOS),
    ("grid", (8, 8), [0.75]),
    ("grid", (14, 14), [0.75]),
    ("grid", (4, 6), [0.75]),
])
def test_every_mask_type_keeps_exact_count(mask_type, grid, ratios):
    length = grid[0] * grid[1]
    x = torch.randn(4, length, 4)
    for ratio in ratios:
        noise = masking_noise(mask_type, 4, grid, ratio, generator=_gen())
        assert noise.shape == (4, length)
        x_masked, mask, ids_restore = random_masking(x, ratio, noise)
        len_keep = int(length * (1 - ratio))
        assert x_masked.shape[1] == len_keep
        _check_mask_consistency(x, x_masked, mask, ids_restore, len_keep)


@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.9])
def test_equals_official_random_masking(ratio, reference):
    x = torch.randn(3, 49, 16)
    noise = torch.rand(3, 49)
    ours = random_masking(x, ratio, noise)
    official = reference.random_masking(x, ratio, noise)
    for a, b in zip(ours, official):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_noise_reproduces_mask_and_smallest_noise_is_kept():
    x = torch.randn(2, 64, 4)
    noise = torch.rand(2, 64)
    a = random_masking(x, 0.75, noise)
    b = random_masking(x, 0.75, noise.clone())
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    kept = noise.topk(16, dim=1, largest=False).indices
    expected = torch.ones(2, 64)
    expected.scatter_(1, kept, 0.0)
    assert torch.equal(a[1], expected)
    with pytest.raises(ValueError, match="noise"):
        random_masking(x, 0.75, torch.rand(2, 63))


def test_model_noise_reproduces_mask_exactly(tiny_model, tiny_images, reference):
    noise = torch.rand(2, 64)
    out1 = tiny_model(tiny_images, noise=noise)
    out2 = tiny_model(tiny_images, noise=noise)
    assert torch.equal(out1["mask"], out2["mask"])
    _, official_mask, official_restore = reference.random_masking(torch.zeros(2, 64, 1), 0.75, noise)
    assert torch.equal(out1["mask"], official_mask)
    assert torch.equal(out1["ids_restore"], official_restore)


def test_noise_generator_is_reproducible():
    for mask_type in ("random", "block", "grid"):
        a = masking_noise(mask_type, 2, (8, 8), 0.75, generator=_gen(3))
        b = masking_noise(mask_type, 2, (8, 8), 0.75, generator=_gen(3))
        assert torch.equal(a, b)


def _removed_neighbour_mean(mask: torch.Tensor, grid: tuple[int, int]) -> float:
    """Average number of removed 4-neighbours of a removed patch."""
    m = mask.reshape(-1, *grid)
    padded = torch.nn.functional.pad(m, (1, 1, 1, 1))
    neighbours = padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:]
    return ((neighbours * m).sum() / m.sum()).item()


@pytest.mark.parametrize("grid, ratio", [((14, 14), 0.75), ((7, 7), 0.5), ((16, 16), 0.6)])
def test_block_masks_are_contiguous(grid, ratio):
    length = grid[0] * grid[1]
    x = torch.zeros(64, length, 1)
    results = {}
    for mask_type in ("random", "block"):
        noise = masking_noise(mask_type, 64, grid, ratio, generator=_gen(0))
        results[mask_type] = _removed_neighbour_mean(random_masking(x, ratio, noise)[1], grid)
    assert results["block"] > results["random"] + 0.4, results


def test_block_side():
    assert block_side(7, 7) == 2
    assert block_side(14, 14) == 3
    assert block_side(16, 16) == 4
    assert block_side(4, 20) == 2


@pytest.mark.parametrize("grid", [(8, 8), (4, 6), (14, 14)])
def test_grid_keeps_one_patch_per_2x2_cell(grid):
    gh, gw = grid
    noise = masking_noise("grid", 5, grid, 0.75, generator=_gen(1))
    _, mask, _ = random_masking(torch.zeros(5, gh * gw, 1), 0.75, noise)
    keep = (mask == 0).reshape(5, gh, gw)
    expected = torch.zeros(gh, gw, dtype=torch.bool)
    expected[::2, ::2] = True
    assert torch.equal(keep, expected.expand(5, gh, gw))
    # exactly one kept patch in every 2x2 cell
    cells = keep.reshape(5, gh // 2, 2, gw // 2, 2).sum(dim=(2, 4))
    assert torch.equal(cells, torch.ones_like(cells))


@pytest.mark.parametrize("grid, ratio", [((8, 8), 0.5), ((7, 7), 0.75), ((8, 7), 0.75)])
def test_grid_rejects_bad_ratio_or_odd_grid(grid, ratio):
    with pytest.raises(ValueError, match="grid"):
        masking_noise("grid", 1, grid, ratio)


def test_unknown_mask_type_raises():
    with pytest.raises(ValueError, match="random"):
        masking_noise("checkerboard", 1, (4, 4), 0.5)


def test_model_uses_configured_mask_type(tiny_dict):
    grid_model = MAE(Config({**tiny_dict, "mask_type": "grid"}))
    mask = grid_model(torch.randn(2, 3, 32, 32))["mask"].reshape(2, 8, 8)
    expected = torch.ones(8, 8)
    expected[::2, ::2] = 0
    assert torch.equal(mask, expected.expand(2, 8, 8))

    odd = MAE(Config({**tiny_dict, "img_size": 28, "mask_type": "grid"}))  # 7x7 grid
    with pytest.raises(ValueError, match="even"):
        odd(torch.randn(1, 3, 28, 28))

    torch.manual_seed(0)
    block_model = MAE(Config({**tiny_dict, "mask_type": "block"}))
    masks = torch.cat([block_model(torch.randn(8, 3, 32, 32))["mask"] for _ in range(4)])
    random_masks = torch.cat([MAE(Config(tiny_dict))(torch.randn(8, 3, 32, 32))["mask"] for _ in range(4)])
    assert _removed_neighbour_mean(masks, (8, 8)) > _removed_neighbour_mean(random_masks, (8, 8))


def test_mask_ratio_zero_gives_full_latent_and_mean_loss(tiny_model, tiny_images, reference):
    out = tiny_model(tiny_images, mask_ratio=0.0)
    assert out["latent"].shape == (2, 1 + 64, 32)
    assert torch.count_nonzero(out["mask"]) == 0
    assert torch.equal(out["ids_restore"], torch.arange(64).expand(2, 64))  # image order
    assert torch.isfinite(out["loss"])
    target = reference.patchify(tiny_images, 4)
    target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    expected = ((out["pred"] - target) ** 2).mean()
    torch.testing.assert_close(out["loss"], expected)


def test_mask_ratio_zero_latent_is_in_image_order(tiny_model, tiny_images):
    # Feature extraction: with nothing removed the latent equals running the encoder on all patches in order.
    tiny_model.eval()
    latent = tiny_model(tiny_images, mask_ratio=0.0)["latent"]
    x = tiny_model.patch_embed(tiny_images) + tiny_model.pos_embed[:, 1:]
    cls = (tiny_model.cls_token + tiny_model.pos_embed[:, :1]).expand(2, -1, -1)
    x = torch.cat([cls, x], dim=1)
    for blk in tiny_model.blocks:
        x = blk(x)
    torch.testing.assert_close(latent, tiny_model.norm(x))
