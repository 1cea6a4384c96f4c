"""The masked autoencoder: encoder on visible patches, light decoder, loss on removed patches.

Mirrors facebookresearch/mae ``models_mae.py``: same method names, same parameter names and
shapes (an official checkpoint loads with ``strict=True``), same initialisation.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint as activation_checkpoint

from .config import Config
from .loss import mae_loss
from .masking import masking_noise, random_masking
from .patch_embed import PatchEmbed, patch_tokens, patchify, prepend_cls, unpatchify
from .pos_embed import get_2d_sincos_pos_embed
from .transformer import Block, LayerNorm
from .utils import autocast_enabled


@lru_cache(maxsize=32)
def sincos_table(dim: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """``[1, 1 + L, D]`` exact table for a grid (cached on the CPU, moved where it is needed)."""
    with torch.device("cpu"):  # never cache a table made under a meta or cuda default device
        return get_2d_sincos_pos_embed(dim, (grid_h, grid_w), cls_token=True).unsqueeze(0)


def init_patch_projection(patch_embed: PatchEmbed) -> None:
    """Xavier-uniform on the patch projection seen as a linear layer on flattened patches (official)."""
    weight = patch_embed.proj.weight.data
    nn.init.xavier_uniform_(weight.view([weight.shape[0], -1]))


def init_linear_and_norm(module: nn.Module) -> None:
    """Official init, applied to every sub-module: xavier-uniform linears with zero bias, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class MAE(nn.Module):
    """Masked autoencoder with a ViT encoder and decoder.

    Args:
        config: a ``Config`` or a plain dict of its keys (missing keys take the guide's defaults).

    ``model(imgs)`` returns ``{"loss", "pred" [N, L, p*p*C], "mask" [N, L], "latent"
    [N, 1 + L_keep, D], "ids_restore" [N, L]}``. The checkpoint methods (``save_checkpoint``,
    ``load_checkpoint``, ``MAE.from_checkpoint``) are :mod:`mae_lesson.checkpoint`'s.
    """

    def __init__(self, config: Mapping[str, Any] | Config | None = None) -> None:
        super().__init__()
        self.config = Config(config or {})  # a copy: set_grad_checkpointing must not edit the caller's
        cfg = self.config
        self.embed_dim = cfg.embed_dim
        self.decoder_embed_dim = cfg.decoder_embed_dim
        self.in_chans = cfg.in_chans
        self.mask_ratio = cfg.mask_ratio
        self.norm_pix_loss = cfg.norm_pix_loss

        # Encoder: patch tokens + fixed position table + cls token, then ViT blocks.
        self.patch_embed = PatchEmbed(cfg.img_size, cfg.patch_size, cfg.in_chans, cfg.embed_dim)
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, cfg.embed_dim), requires_grad=False)
        self.blocks = nn.ModuleList(
            [Block(cfg.embed_dim, cfg.encoder_num_heads, cfg.mlp_ratio) for _ in range(cfg.encoder_depth)]
        )
        self.norm = LayerNorm(cfg.embed_dim)

        # Decoder: narrower, sees every position (visible latents + shared mask token).
        self.decoder_embed = nn.Linear(cfg.embed_dim, cfg.decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(
            torch.zeros(1, num_patches + 1, cfg.decoder_embed_dim), requires_grad=False
        )
        self.decoder_blocks = nn.ModuleList(
            [Block(cfg.decoder_embed_dim, cfg.decoder_num_heads, cfg.mlp_ratio) for _ in range(cfg.decoder_depth)]
        )
        self.decoder_norm = LayerNorm(cfg.decoder_embed_dim)
        self.decoder_pred = nn.Linear(cfg.decoder_embed_dim, cfg.patch_size**2 * cfg.in_chans)

        self.grad_checkpointing = bool(cfg.grad_checkpointing)
        self.initialize_weights()

    # ------------------------------------------------------------------ set-up
    def initialize_weights(self) -> None:
        """Official init: sin-cos tables, xavier-uniform linears and patch projection, N(0, 0.02) tokens."""
        grid = self.patch_embed.grid_size
        self.pos_embed.data.copy_(sincos_table(self.embed_dim, *grid))
        self.decoder_pos_embed.data.copy_(sincos_table(self.decoder_embed_dim, *grid))
        init_patch_projection(self.patch_embed)
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        self.apply(init_linear_and_norm)

    def count_parameters(self) -> int:
        """Trainable parameters (the fixed position tables are not counted)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in backward: less memory, about 30% more compute."""
        self.grad_checkpointing = bool(enable)
        self.config["grad_checkpointing"] = bool(enable)

    @property
    def patch_size(self) -> int:
        return self.patch_embed.patch_size[0]

    # ------------------------------------------------------------- patches
    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W]`` -> ``[N, L, p*p*C]`` (channel fastest, as the official code)."""
        return patchify(imgs, self.patch_size)

    def unpatchify(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """``[N, L, p*p*C]`` -> ``[N, C, H, W]``; ``size=(H, W)`` in pixels for non-square images."""
        return unpatchify(x, self.patch_size, self.in_chans, size)

    def check_images(self, imgs: torch.Tensor) -> tuple[int, int]:
        """Raise a clear error for input the model cannot take; return the patch grid ``(h, w)``."""
        if not isinstance(imgs, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor [N, C, H, W], got {type(imgs).__name__}")
        if imgs.dim() != 4:
            hint = "; add a batch dimension with imgs.unsqueeze(0)" if imgs.dim() == 3 else ""
            raise ValueError(f"images must be 4-D [N, C, H, W], got shape {list(imgs.shape)}{hint}")
        if not imgs.is_floating_point():
            raise TypeError(
                f"images have dtype {imgs.dtype}; convert to float first, e.g. imgs.float() / 255 "
                f"followed by the dataset's mean/std normalisation"
            )
        weight_dtype = self.patch_embed.proj.weight.dtype
        if imgs.dtype != weight_dtype and not autocast_enabled(imgs.device.type):
            raise TypeError(
                f"images have dtype {imgs.dtype} but the model's weights are {weight_dtype}; convert the "
                f"images with imgs.to({weight_dtype}), or the model with model.to({imgs.dtype})"
            )
        n, c, h, w = imgs.shape
        if c != self.in_chans:
            raise ValueError(f"images have {c} channels but the model expects in_chans={self.in_chans} (shape {list(imgs.shape)})")
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(
                f"image size {h}x{w} is not divisible by patch_size {p}; resize or crop to a multiple "
                f"of {p} (e.g. {h - h % p or p}x{w - w % p or p})"
            )
        return h // p, w // p

    def position_tables(self, grid_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder and decoder position tables for a grid: stored at the configured size, else exact."""
        if tuple(grid_hw) == tuple(self.patch_embed.grid_size):
            return self.pos_embed, self.decoder_pos_embed
        device, dtype = self.pos_embed.device, self.pos_embed.dtype
        return (
            sincos_table(self.embed_dim, *grid_hw).to(device, dtype),
            sincos_table(self.decoder_embed_dim, *grid_hw).to(device, dtype),
        )

    def run_blocks(self, blocks: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        """Apply ``blocks`` in order, recomputing activations in backward when grad checkpointing is on."""
        for blk in blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = activation_checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return x

    # ------------------------------------------------------------- masking
    def mask_noise(
        self,
        batch: int,
        grid_hw: tuple[int, int] | None = None,
        mask_ratio: float | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """The noise ``[N, L]`` that decides a batch's mask, for ``config.mask_type``.

        The one place the model's masks come from: the forward pass, the engine, the evaluation
        and the figures all ask here, so a subclass that overrides it changes every one of them.
        ``grid_hw`` defaults to the configured patch grid, ``mask_ratio`` to the configured one;
        ``generator`` makes the draw reproducible.
        """
        grid_hw = tuple(grid_hw or self.patch_embed.grid_size)
        mask_ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        return masking_noise(self.config.mask_type, batch, grid_hw, mask_ratio, device, generator)

    def random_masking(
        self, x: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keep ``int(L * (1 - mask_ratio))`` tokens per image: the official method, as an adapter.

        :func:`masking.random_masking` with the noise of :meth:`mask_noise`. It is also the hook of
        the guide's ``CustomMAE``: a subclass that overrides ``random_masking(x, mask_ratio)`` owns
        the masks of every forward pass that is given no ``noise``. A forward pass given ``noise``
        (the engine, ``evaluate_loss``) keeps exactly that noise's mask; to change those masks too,
        override :meth:`mask_noise`.

        Args:
            x: ``[N, L, D]``. noise: ``[N, L]`` fixes the mask (smallest noise kept); ``None``
                draws it with :meth:`mask_noise` for the configured grid.
        Returns:
            x_masked ``[N, L_keep, D]``, mask ``[N, L]`` (0 keep, 1 removed), ids_restore ``[N, L]``.
        """
        if noise is None:
            grid_h, grid_w = self.patch_embed.grid_size
            if x.shape[1] != grid_h * grid_w:
                raise ValueError(
                    f"{x.shape[1]} tokens are not the configured {grid_h}x{grid_w} patch grid; pass "
                    f"noise=model.mask_noise(N, grid_hw=(h, w)) for this image size"
                )
            noise = self.mask_noise(x.shape[0], mask_ratio=mask_ratio, device=x.device)
        return random_masking(x, mask_ratio, noise)

    # ------------------------------------------------------------- forward
    def forward_encoder(
        self, imgs: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode only the visible patches.

        Returns:
            latent ``[N, 1 + L_keep, D]`` (cls first), mask ``[N, L]``, ids_restore ``[N, L]``.
        """
        grid_hw = self.check_images(imgs)
        pos_embed, _ = self.position_tables(grid_hw)
        x = patch_tokens(self.patch_embed, pos_embed, imgs)  # [N, L, D]
        if noise is None and grid_hw != tuple(self.patch_embed.grid_size):
            # random_masking(x, mask_ratio) knows only the configured grid: this grid's noise is drawn here.
            noise = self.mask_noise(x.shape[0], grid_hw, mask_ratio, device=x.device)
        if noise is None:
            x, mask, ids_restore = self.random_masking(x, mask_ratio)  # the overridable hook (see its docstring)
        else:
            x, mask, ids_restore = random_masking(x, mask_ratio, noise)  # given noise is the mask, as in HF
        x = prepend_cls(self.cls_token, pos_embed, x)  # [N, 1 + L_keep, D]
        return self.norm(self.run_blocks(self.blocks, x)), mask, ids_restore

    def forward_decoder(
        self, latent: torch.Tensor, ids_restore: torch.Tensor, grid_hw: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """Predict every patch's pixels from the visible latents.

        Args:
            latent: ``[N, 1 + L_keep, D]``. ids_restore: ``[N, L]``.
            grid_hw: the images' patch grid; ``None`` means the configured one.
        Returns:
            pred ``[N, L, p*p*C]``.
        """
        length = ids_restore.shape[1]
        grid_hw = tuple(grid_hw or self.patch_embed.grid_size)
        if grid_hw[0] * grid_hw[1] != length:
            raise ValueError(
                f"ids_restore has {length} patches but the grid {grid_hw[0]}x{grid_hw[1]} has "
                f"{grid_hw[0] * grid_hw[1]}; pass grid_hw=(H // p, W // p) of the images"
            )
        _, decoder_pos_embed = self.position_tables(grid_hw)
        x = self.decoder_embed(latent)  # [N, 1 + L_keep, Dd]
        n, t, dim = x.shape
        mask_tokens = self.mask_token.expand(n, length + 1 - t, -1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)  # shuffled order [N, L, Dd]
        x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).expand(-1, -1, dim))  # un-shuffle
        x = torch.cat([x[:, :1, :], x_], dim=1) + decoder_pos_embed
        x = self.decoder_norm(self.run_blocks(self.decoder_blocks, x))
        return self.decoder_pred(x[:, 1:, :])  # drop cls: [N, L, p*p*C]

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """MSE on removed patches, against per-patch normalised pixels when ``norm_pix_loss``."""
        return mae_loss(self.patchify(imgs), pred, mask, self.norm_pix_loss)

    def forward(
        self, imgs: torch.Tensor, mask_ratio: float | None = None, noise: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Mask, encode, decode, score.

        Args:
            imgs: ``[N, C, H, W]`` float, H and W divisible by the patch size.
            mask_ratio: defaults to ``config.mask_ratio``; 0 returns the full latent.
            noise: ``[N, L]`` fixes the mask, as Hugging Face's ``noise`` argument.
        """
        mask_ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        if not 0 <= mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, noise)  # checks imgs
        grid_hw = (imgs.shape[-2] // self.patch_size, imgs.shape[-1] // self.patch_size)
        pred = self.forward_decoder(latent, ids_restore, grid_hw)
        loss = self.forward_loss(imgs, pred, mask)
        return {"loss": loss, "pred": pred, "mask": mask, "latent": latent, "ids_restore": ids_restore}
