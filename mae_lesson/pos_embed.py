"""Fixed 2-D sin-cos position embeddings, laid out exactly as facebookresearch/mae.

The official code builds its grid with ``np.meshgrid(grid_w, grid_h)``, so the *first* half of
the channels encodes the column (x) and the second half the row (y), although its variables
are named the other way round. Pretrained weights rely on that order, so we keep it.
"""

from __future__ import annotations

import torch


def sincos_1d(embed_dim: int, positions: torch.Tensor) -> torch.Tensor:
    """Transformer sin-cos code of scalar positions.

    Args:
        embed_dim: output width, even.
        positions: any shape, flattened to ``[M]``.
    Returns:
        ``[M, embed_dim]``: ``sin(pos * omega)`` then ``cos(pos * omega)``,
        ``omega_d = 1 / 10000 ** (d / (embed_dim / 2))``.
    """
    omega = torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000**omega  # [D/2]
    angles = positions.reshape(-1).to(torch.float64)[:, None] * omega[None, :]  # [M, D/2]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def get_2d_sincos_pos_embed(
    embed_dim: int, grid_size: int | tuple[int, int], cls_token: bool = False
) -> torch.Tensor:
    """The official 2-D table for a ``grid_h x grid_w`` patch grid (row-major patch order).

    Args:
        embed_dim: width D, divisible by 4.
        grid_size: ``g`` for a square grid or ``(grid_h, grid_w)``.
        cls_token: prepend an all-zero row for the cls token.
    Returns:
        ``[grid_h * grid_w (+1), D]`` float32.
    """
    if embed_dim % 4:
        raise ValueError(f"embed_dim {embed_dim} must be divisible by 4 for a 2-D sin-cos table")
    grid_h, grid_w = (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
    rows, cols = torch.meshgrid(
        torch.arange(grid_h, dtype=torch.float64), torch.arange(grid_w, dtype=torch.float64), indexing="ij"
    )
    # Official layout quirk: column code first, row code second.
    table = torch.cat([sincos_1d(embed_dim // 2, cols), sincos_1d(embed_dim // 2, rows)], dim=1)
    if cls_token:
        table = torch.cat([torch.zeros(1, embed_dim, dtype=table.dtype), table], dim=0)
    return table.float()
