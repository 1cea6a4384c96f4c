"""Convert between ``mae_lesson.MAE`` and Hugging Face ``ViTMAEForPreTraining``.

Both follow the official model, so conversion is renaming plus one split: our fused ``qkv``
projection is Hugging Face's separate query, key and value. Two key layouts are handled:
transformers 5 (``vit.layers.i.attention.q_proj``) and transformers 4
(``vit.encoder.layer.i.attention.attention.query``). ``transformers`` is imported lazily:
learners who never convert never need it.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from .config import Config
from .model import MAE

# Our block's sub-module -> Hugging Face's, per release.
_LAYOUTS = {
    "v5": {"encoder": "vit.layers.{i}.", "q": "attention.q_proj", "k": "attention.k_proj",
           "v": "attention.v_proj", "proj": "attention.o_proj", "fc1": "mlp.fc1", "fc2": "mlp.fc2"},
    "v4": {"encoder": "vit.encoder.layer.{i}.", "q": "attention.attention.query", "k": "attention.attention.key",
           "v": "attention.attention.value", "proj": "attention.output.dense", "fc1": "intermediate.dense",
           "fc2": "output.dense"},
}
_TOP_LEVEL = {
    "cls_token": "vit.embeddings.cls_token",
    "pos_embed": "vit.embeddings.position_embeddings",
    "patch_embed.proj.weight": "vit.embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "vit.embeddings.patch_embeddings.projection.bias",
    "norm.weight": "vit.layernorm.weight",
    "norm.bias": "vit.layernorm.bias",
    "decoder_embed.weight": "decoder.decoder_embed.weight",
    "decoder_embed.bias": "decoder.decoder_embed.bias",
    "mask_token": "decoder.mask_token",
    "decoder_pos_embed": "decoder.decoder_pos_embed",
    "decoder_norm.weight": "decoder.decoder_norm.weight",
    "decoder_norm.bias": "decoder.decoder_norm.bias",
    "decoder_pred.weight": "decoder.decoder_pred.weight",
    "decoder_pred.bias": "decoder.decoder_pred.bias",
}


def _layout_of(hf_state: dict[str, torch.Tensor]) -> dict[str, str]:
    return _LAYOUTS["v5" if any(".attention.q_proj." in k for k in hf_state) else "v4"]


def _block_pairs(ours: str, theirs: str, names: dict[str, str]) -> list[tuple[str, str]]:
    """(our key, their key) for everything in a block except the fused qkv."""
    pairs = [("norm1", "layernorm_before"), ("norm2", "layernorm_after"), ("attn.proj", names["proj"]),
             ("mlp.fc1", names["fc1"]), ("mlp.fc2", names["fc2"])]
    return [(f"{ours}{a}.{t}", f"{theirs}{b}.{t}") for a, b in pairs for t in ("weight", "bias")]


def _blocks(cfg: Config, names: dict[str, str]) -> list[tuple[str, str]]:
    """(our block prefix, their block prefix) for encoder and decoder blocks."""
    enc = [(f"blocks.{i}.", names["encoder"].format(i=i)) for i in range(cfg.encoder_depth)]
    dec = [(f"decoder_blocks.{i}.", f"decoder.decoder_layers.{i}.") for i in range(cfg.decoder_depth)]
    return enc + dec


def config_from_hf(hf_config: Any) -> Config:
    """Our ``Config`` for a Hugging Face ``ViTMAEConfig``."""
    ratio = hf_config.intermediate_size / hf_config.hidden_size
    if abs(hf_config.decoder_intermediate_size / hf_config.decoder_hidden_size - ratio) > 1e-9:
        raise ValueError("encoder and decoder MLP ratios differ; mae_lesson uses one mlp_ratio for both")
    if hf_config.hidden_act != "gelu" or not hf_config.qkv_bias:
        raise ValueError("only hidden_act='gelu' with qkv_bias=True matches the official MAE")
    if abs(hf_config.layer_norm_eps - 1e-6) > 1e-12:
        warnings.warn(f"Hugging Face layer_norm_eps is {hf_config.layer_norm_eps}; MAE uses 1e-6, outputs differ slightly")
    image_size = hf_config.image_size
    return Config(
        img_size=list(image_size) if isinstance(image_size, (list, tuple)) else image_size,
        patch_size=hf_config.patch_size if isinstance(hf_config.patch_size, int) else hf_config.patch_size[0],
        in_chans=hf_config.num_channels, embed_dim=hf_config.hidden_size,
        encoder_depth=hf_config.num_hidden_layers, encoder_num_heads=hf_config.num_attention_heads,
        decoder_embed_dim=hf_config.decoder_hidden_size, decoder_depth=hf_config.decoder_num_hidden_layers,
        decoder_num_heads=hf_config.decoder_num_attention_heads, mlp_ratio=ratio,
        mask_ratio=hf_config.mask_ratio, norm_pix_loss=bool(hf_config.norm_pix_loss),
    )


def from_hf(hf_model: Any) -> MAE:
    """Build an ``MAE`` with the weights of a Hugging Face ``ViTMAEForPreTraining``."""
    cfg = config_from_hf(hf_model.config)
    theirs = hf_model.state_dict()
    if not any(key.startswith("decoder.") for key in theirs):
        raise ValueError(f"{type(hf_model).__name__} has no decoder (an encoder-only ViTMAEModel?): from_hf needs "
                         f"ViTMAEForPreTraining, e.g. ViTMAEForPreTraining.from_pretrained('facebook/vit-mae-base')")
    names = _layout_of(theirs)
    ours: dict[str, torch.Tensor] = {a: theirs[b] for a, b in _TOP_LEVEL.items()}
    for mine, hf in _blocks(cfg, names):
        ours.update({a: theirs[b] for a, b in _block_pairs(mine, hf, names)})
        for t in ("weight", "bias"):
            ours[f"{mine}attn.qkv.{t}"] = torch.cat([theirs[f"{hf}{names[x]}.{t}"] for x in "qkv"], dim=0)
    model = MAE(cfg)
    model.load_state_dict(ours, strict=True)
    return model


def to_hf(model: MAE) -> Any:
    """A Hugging Face ``ViTMAEForPreTraining`` with this model's weights (``layer_norm_eps`` 1e-6)."""
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    cfg = model.config
    if cfg.mask_type != "random":
        raise ValueError(f"Hugging Face ViTMAE masks patches only at random; this model's mask_type is "
                         f"{cfg.mask_type!r}, which it would silently replace: convert a random-mask model")
    if cfg.grid_size[0] != cfg.grid_size[1]:
        raise ValueError(f"Hugging Face ViTMAE needs a square img_size; this model has img_size {cfg.img_size}")
    hidden = int(cfg.embed_dim * cfg.mlp_ratio)
    hf_config = ViTMAEConfig(
        image_size=cfg.img_size, patch_size=cfg.patch_size, num_channels=cfg.in_chans,
        hidden_size=cfg.embed_dim, num_hidden_layers=cfg.encoder_depth, num_attention_heads=cfg.encoder_num_heads,
        intermediate_size=hidden, decoder_hidden_size=cfg.decoder_embed_dim,
        decoder_num_hidden_layers=cfg.decoder_depth, decoder_num_attention_heads=cfg.decoder_num_heads,
        decoder_intermediate_size=int(cfg.decoder_embed_dim * cfg.mlp_ratio), mask_ratio=cfg.mask_ratio,
        norm_pix_loss=cfg.norm_pix_loss, layer_norm_eps=1e-6, hidden_act="gelu", qkv_bias=True,
    )
    hf_model = ViTMAEForPreTraining(hf_config)
    names = _layout_of(hf_model.state_dict())
    mine = model.state_dict()
    theirs = {b: mine[a] for a, b in _TOP_LEVEL.items()}
    for ours_prefix, hf in _blocks(cfg, names):
        theirs.update({b: mine[a] for a, b in _block_pairs(ours_prefix, hf, names)})
        for t in ("weight", "bias"):
            for x, part in zip("qkv", mine[f"{ours_prefix}attn.qkv.{t}"].chunk(3, dim=0)):
                theirs[f"{hf}{names[x]}.{t}"] = part
    hf_model.load_state_dict(theirs, strict=True)
    return hf_model.eval() if not model.training else hf_model
