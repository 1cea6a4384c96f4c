"""Which patches the encoder sees: random (the paper), block and grid masking.

Every type works the same way: it draws a noise value per patch and keeps the
``len_keep = int(L * (1 - mask_ratio))`` patches with the *smallest* noise (argsort). The types
differ only in how the noise is drawn, so every image keeps exactly ``len_keep`` patches and a
batch stays one rectangular tensor. Mask convention (official code): 0 = keep, 1 = removed.

One path: :func:`masking_noise` draws the noise (the only place that does, through the type's
function in :data:`MASK_TYPES`, each starting from :func:`uniform_noise`), :func:`random_masking`
turns noise into the kept tokens, the mask and ``ids_restore``. ``MAE.mask_noise`` asks
:func:`masking_noise` for the model's configured type; training, evaluation and the figures ask it.
"""

from __future__ import annotations

import torch


def num_kept(num_patches: int, mask_ratio: float) -> int:
    """Patches the encoder sees: ``int(L * (1 - mask_ratio))``, as the official code."""
    return int(num_patches * (1 - mask_ratio))


def block_side(grid_h: int, grid_w: int) -> int:
    """Side, in patches, of the square blocks that block masking removes: ``max(2, min(h, w) // 4)``.

    7x7 grid (Fashion-MNIST, p=4): 2x2 blocks; 14x14 (224, p=16): 3x3; 16x16: 4x4.
    """
    return max(2, min(grid_h, grid_w) // 4)


def uniform_noise(
    batch: int, length: int, device: torch.device | str | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``[N, L]`` uniform noise: the paper's random masking (any subset of patches equally likely)."""
    return torch.rand(batch, length, device=device, generator=generator)


def random_noise(batch: int, grid_hw: tuple[int, int], mask_ratio: float, device: torch.device | str | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """``random``: :func:`uniform_noise` ``[N, L]``; any subset is equally likely (the paper's default)."""
    return uniform_noise(batch, grid_hw[0] * grid_hw[1], device, generator)


def _rows_cols(grid_hw: tuple[int, int], device: torch.device | str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column of every patch, ``[L]`` each, in patch order."""
    grid_h, grid_w = grid_hw
    rows = torch.arange(grid_h, device=device)[:, None].expand(grid_h, grid_w).reshape(-1)
    cols = torch.arange(grid_w, device=device)[None, :].expand(grid_h, grid_w).reshape(-1)
    return rows, cols


def grid_noise(batch: int, grid_hw: tuple[int, int], mask_ratio: float, device: torch.device | str | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """``grid``: keeps the top-left patch of every 2x2 cell (the paper's grid sampling); needs an even
    grid and ``mask_ratio`` 0.75."""
    grid_h, grid_w = grid_hw
    uniform = uniform_noise(batch, grid_h * grid_w, device, generator)
    if grid_h % 2 or grid_w % 2 or abs(mask_ratio - 0.75) > 1e-9:
        raise ValueError(
            f"grid masking keeps one patch per 2x2 cell: it needs an even patch grid and "
            f"mask_ratio 0.75, got a {grid_h}x{grid_w} grid and mask_ratio {mask_ratio}; "
            f"use mask_type 'random' or 'block' otherwise"
        )
    rows, cols = _rows_cols(grid_hw, device)
    removed = ((rows % 2) + (cols % 2) > 0).float()  # [L], 0 at each cell's top-left patch
    return removed + 0.5 * uniform


def block_noise(batch: int, grid_hw: tuple[int, int], mask_ratio: float, device: torch.device | str | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """``block``: the grid is tiled, at a random offset, into squares of :func:`block_side` patches;
    whole squares are removed in random order (one square only partly, to hit the exact count), so
    removed patches form contiguous regions."""
    grid_h, grid_w = grid_hw
    uniform = uniform_noise(batch, grid_h * grid_w, device, generator)
    rows, cols = _rows_cols(grid_hw, device)
    side = block_side(grid_h, grid_w)
    tiles_h, tiles_w = (grid_h + side - 1) // side + 1, (grid_w + side - 1) // side + 1
    offset = torch.randint(0, side, (batch, 2), device=device, generator=generator)
    tile = ((rows + offset[:, :1]) // side) * tiles_w + (cols + offset[:, 1:]) // side  # [N, L]
    tile_rank = torch.argsort(torch.rand(batch, tiles_h * tiles_w, device=device, generator=generator), dim=1)
    # Integer rank per tile plus a jitter below 1: tiles never interleave in the sort.
    return torch.gather(tile_rank, 1, tile).float() + 0.5 * uniform


# The mask types: one entry each, name -> noise(batch, grid_hw, mask_ratio, device, generator) -> [N, L].
# A config's ``mask_type`` must be a key (Config checks it); a new type is one more entry.
MASK_TYPES = {"random": random_noise, "block": block_noise, "grid": grid_noise}


def masking_noise(
    mask_type: str,
    batch: int,
    grid_hw: tuple[int, int],
    mask_ratio: float,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-patch noise ``[N, L]`` whose argsort yields the requested mask type: the function that
    :data:`MASK_TYPES` holds for it (:func:`random_noise`, :func:`block_noise`, :func:`grid_noise`).

    With ``mask_ratio == 0`` nothing is removed and the noise keeps patch order, so ``latent``
    lists patches in image order (handy for feature extraction).
    """
    length = grid_hw[0] * grid_hw[1]
    if mask_ratio == 0:
        return torch.arange(length, device=device, dtype=torch.float32).expand(batch, length)
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask_type {mask_type!r} is unknown; choose one of {', '.join(MASK_TYPES)}")
    return MASK_TYPES[mask_type](batch, grid_hw, mask_ratio, device, generator)


def random_masking(
    x: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep the ``len_keep`` tokens with the smallest noise.

    Args:
        x: ``[N, L, D]`` patch tokens (position embeddings already added).
        mask_ratio: fraction of tokens to remove, in [0, 1).
        noise: ``[N, L]`` (for instance from :func:`masking_noise`); ``None`` draws uniform noise
            (random masking).
    Returns:
        x_masked ``[N, len_keep, D]``, mask ``[N, L]`` (0 keep, 1 removed, float),
        ids_restore ``[N, L]`` (where each patch went in the shuffled order).
    """
    n, length, dim = x.shape
    len_keep = num_kept(length, mask_ratio)
    if noise is None:
        noise = uniform_noise(n, length, x.device)
    elif noise.shape != (n, length):
        raise ValueError(f"noise must have shape [N, L] = {[n, length]}, got {list(noise.shape)}")
    ids_shuffle = torch.argsort(noise, dim=1)  # ascend: small is keep, large is remove
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    x_masked = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))
    # A patch is removed when its rank in the shuffle is past len_keep (official: ones, zero, gather).
    mask = (ids_restore >= len_keep).to(x.dtype)
    return x_masked, mask, ids_restore
