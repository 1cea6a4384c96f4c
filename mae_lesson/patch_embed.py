"""Images to patch tokens, and the patchify/unpatchify pair the loss and figures use.

Glossary (whole course): N batch, C channels, H/W pixels, p patch size, L = (H/p)*(W/p)
patches, D width. Patch vectors are laid out ``(p, p, C)`` with the channel varying fastest,
as the official code, so ``pred`` and ``patchify(imgs)`` line up element by element.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class PatchEmbed(nn.Module):
    """A ``p x p`` convolution with stride ``p``: one linear map applied to every patch.

    Attribute names follow timm's ``PatchEmbed`` (``proj``, ``patch_size`` as a pair,
    ``num_patches``) so official state dicts load and the guide's code runs.
    """

    def __init__(self, img_size: int | tuple[int, int], patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W]`` -> ``[N, L, D]`` (any H, W divisible by p).

        The same map as ``self.proj(imgs)``, computed as one matrix product over the patches
        (``(C, p, p)`` order, the convolution weight's): forward and backward on the CPU, 3.3x
        (patch 4) and 4.0x (patch 7) faster than the convolution on 28x28 images, 1.4x on 32x32
        RGB (benchmarks/cpu_kernels.md).
        """
        p = self.patch_size[0]
        patches = rearrange(imgs, "n c (h p) (w q) -> n (h w) (c p q)", p=p, q=p)  # [N, L, C*p*p]
        return F.linear(patches, self.proj.weight.flatten(1), self.proj.bias)


def patch_tokens(patch_embed: PatchEmbed, pos_table: torch.Tensor, imgs: torch.Tensor) -> torch.Tensor:
    """The encoder's input tokens: ``[N, C, H, W]`` -> ``[N, L, D]`` patch embeddings plus position.

    ``pos_table`` is ``[1, 1 + L, D]`` with the cls row first (the official layout). The MAE,
    the classifier, the ablations and the benchmark all enter the encoder through this function
    and :func:`prepend_cls`.
    """
    return patch_embed(imgs) + pos_table[:, 1:, :]


def prepend_cls(cls_token: torch.Tensor, pos_table: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``[N, L', D]`` tokens -> ``[N, 1 + L', D]`` with the cls token (plus its position row) first."""
    cls = (cls_token + pos_table[:, :1, :]).expand(x.shape[0], -1, -1)
    return torch.cat([cls, x], dim=1)


def patchify(imgs: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``[N, C, H, W]`` -> ``[N, L, p*p*C]``, channel fastest, patches in row-major order."""
    return rearrange(imgs, "n c (h p) (w q) -> n (h w) (p q c)", p=patch_size, q=patch_size)


def unpatchify(
    patches: torch.Tensor, patch_size: int, channels: int, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """``[N, L, p*p*C]`` -> ``[N, C, H, W]``; the inverse of :func:`patchify`.

    Args:
        size: ``(H, W)`` in pixels; ``None`` infers a square image from L.
    """
    n, length, _ = patches.shape
    if size is None:
        side = int(round(length**0.5))
        if side * side != length:
            raise ValueError(f"{length} patches are not a square grid; pass size=(H, W) in pixels")
        grid_h = grid_w = side
    else:
        grid_h, grid_w = size[0] // patch_size, size[1] // patch_size
        if grid_h * grid_w != length:
            raise ValueError(f"size {tuple(size)} with patch_size {patch_size} gives {grid_h * grid_w} patches, not {length}")
    return rearrange(
        patches, "n (h w) (p q c) -> n c (h p) (w q)", h=grid_h, w=grid_w, p=patch_size, q=patch_size, c=channels
    )
