"""The pretrained encoder as a classifier, and layer-wise learning-rate decay (official ``models_vit``)."""

from __future__ import annotations

import torch
from torch import nn

from .config import Config
from .model import MAE, init_linear_and_norm, init_patch_projection, sincos_table
from .patch_embed import PatchEmbed, patch_tokens, prepend_cls
from .transformer import Block, LayerNorm


class ViTClassifier(nn.Module):
    """The MAE encoder as a classifier (official ``models_vit.VisionTransformer``, global pool).

    ``[N, C, H, W]`` -> logits ``[N, num_classes]``: patches + table + cls, blocks (with drop
    path), mean over patch tokens, ``fc_norm``, ``head``.
    """

    def __init__(self, config: Config, num_classes: int, drop_path: float = 0.1) -> None:
        super().__init__()
        config = Config(config)
        self.patch_embed = PatchEmbed(config.img_size, config.patch_size, config.in_chans, config.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        self.pos_embed = nn.Parameter(sincos_table(config.embed_dim, *self.patch_embed.grid_size).clone(),
                                      requires_grad=False)
        rates = torch.linspace(0, drop_path, config.encoder_depth).tolist()  # deeper blocks drop more
        self.blocks = nn.ModuleList(
            [Block(config.embed_dim, config.encoder_num_heads, config.mlp_ratio, r) for r in rates])
        self.fc_norm = LayerNorm(config.embed_dim)
        self.head = nn.Linear(config.embed_dim, num_classes)
        # The MAE encoder's own initialisation, then the official tiny head.
        init_patch_projection(self.patch_embed)
        nn.init.normal_(self.cls_token, std=0.02)
        self.apply(init_linear_and_norm)
        nn.init.trunc_normal_(self.head.weight, std=2e-5)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_mae(cls, mae: MAE, num_classes: int, drop_path: float = 0.1) -> "ViTClassifier":
        """Copy the pretrained encoder (patch_embed, cls_token, pos_embed, blocks) into a classifier."""
        model = cls(mae.config, num_classes, drop_path)
        own = model.state_dict()
        own.update({k: v for k, v in mae.state_dict().items() if k in own and not k.startswith(("head", "fc_norm"))})
        model.load_state_dict(own)
        return model

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W]`` -> logits ``[N, num_classes]``."""
        x = prepend_cls(self.cls_token, self.pos_embed, patch_tokens(self.patch_embed, self.pos_embed, imgs))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.fc_norm(x[:, 1:, :].mean(dim=1)))


def layer_decay_scales(model: ViTClassifier, decay: float) -> dict[str, float]:
    """lr multiplier per parameter: ``decay ** (depth + 1 - layer_id)``; embeddings are layer 0."""
    depth = len(model.blocks)
    scales = {}
    for name, _ in model.named_parameters():
        if name.startswith(("cls_token", "pos_embed", "patch_embed")):
            layer = 0
        elif name.startswith("blocks."):
            layer = int(name.split(".")[1]) + 1
        else:
            layer = depth + 1
        scales[name] = decay ** (depth + 1 - layer)
    return scales
