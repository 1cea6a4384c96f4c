"""The pretrained encoder as a classifier, and layer-wise learning-rate decay (official ``models_vit``)."""

from __future__ import annotations

import torch
from torch import nn

from .config import Config
from .model import MAE
from .transformer import Block, LayerNorm


class ViTClassifier(nn.Module):
    """The MAE encoder as a classifier (official ``models_vit.VisionTransformer``, global pool).

    ``[N, C, H, W]`` -> logits ``[N, num_classes]``: patches + table + cls, blocks (with drop
    path), mean over patch tokens, ``fc_norm``, ``head``.
    """

    def __init__(self, config: Config, num_classes: int, drop_path: float = 0.1) -> None:
        super().__init__()
        encoder = MAE(config)  # build with the official init, then keep the encoder half
        self.patch_embed, self.cls_token, self.pos_embed = encoder.patch_embed, encoder.cls_token, encoder.pos_embed
        rates = torch.linspace(0, drop_path, config.encoder_depth).tolist()
        self.blocks = nn.ModuleList(
            [Block(config.embed_dim, config.encoder_num_heads, config.mlp_ratio, r) for r in rates])
        self.blocks.load_state_dict(encoder.blocks.state_dict())
        self.fc_norm = LayerNorm(config.embed_dim)
        self.head = nn.Linear(config.embed_dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=2e-5)  # official: tiny head init
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
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:, :]
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
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
