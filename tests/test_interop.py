"""mae_lesson.interop: numerical parity with Hugging Face ``ViTMAEForPreTraining``."""

from __future__ import annotations

import warnings

import pytest
import torch

transformers = pytest.importorskip("transformers")

from mae_lesson import MAE, Config  # noqa: E402
from mae_lesson.interop import config_from_hf, from_hf, to_hf  # noqa: E402

TOL = 1e-5
MAX_ERRORS: dict[str, float] = {}


def _compare(ours: MAE, hf, imgs: torch.Tensor, label: str, record_property) -> float:
    ours.eval()
    hf.eval()
    length = ours.patch_embed.num_patches
    noise = torch.rand(imgs.shape[0], length, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        a = ours(imgs, noise=noise)
        b = hf(pixel_values=imgs, noise=noise)
        latent = hf.vit(pixel_values=imgs, noise=noise).last_hidden_state
    errors = {
        "loss": (a["loss"] - b.loss).abs().item(),
        "pred": (a["pred"] - b.logits).abs().max().item(),
        "mask": (a["mask"] - b.mask).abs().max().item(),
        "latent": (a["latent"] - latent).abs().max().item(),
    }
    assert torch.equal(a["ids_restore"], b.ids_restore)
    assert a["pred"].shape == b.logits.shape and a["mask"].shape == b.mask.shape
    worst = max(errors.values())
    MAX_ERRORS[label] = worst
    record_property("max_abs_error", worst)
    print(f"\nHF parity [{label}]: " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    for key, err in errors.items():
        assert err <= TOL, f"{key}: max abs error {err:.3e} > {TOL}"
    # The parity check is able to fail: a different mask gives a different loss.
    with torch.no_grad():
        c = ours(imgs, noise=torch.rand(imgs.shape[0], length))
    assert (c["loss"] - b.loss).abs().item() > TOL
    return worst


@pytest.mark.parametrize("norm_pix_loss", [True, False])
@pytest.mark.parametrize("in_chans", [3, 1])
def test_parity_via_to_hf(in_chans, norm_pix_loss, tiny_dict, record_property):
    torch.manual_seed(0)
    model = MAE({**tiny_dict, "in_chans": in_chans, "norm_pix_loss": norm_pix_loss, "decoder_embed_dim": 16})
    # Non-trivial tokens and norms so every weight matters.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad and ("norm" in name or name.endswith("bias")):
                p.add_(0.1 * torch.randn_like(p))
    hf = to_hf(model)
    assert isinstance(hf, transformers.ViTMAEForPreTraining)
    assert hf.config.layer_norm_eps == 1e-6 and hf.config.norm_pix_loss == norm_pix_loss
    imgs = torch.randn(3, in_chans, 32, 32)
    _compare(model, hf, imgs, f"to_hf C={in_chans} norm_pix={norm_pix_loss}", record_property)
    back = from_hf(hf)
    for key, value in model.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


@pytest.mark.parametrize(
    "in_chans, norm_pix_loss, attn",
    [(3, True, "sdpa"), (1, False, "sdpa"), (3, False, "eager"), (1, True, "eager")],
)
def test_parity_from_random_hf_model(in_chans, norm_pix_loss, attn, reference, record_property):
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    torch.manual_seed(1)
    hf_config = ViTMAEConfig(
        image_size=32, patch_size=4, num_channels=in_chans, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64, decoder_hidden_size=16, decoder_num_hidden_layers=2,
        decoder_num_attention_heads=2, decoder_intermediate_size=32, mask_ratio=0.6,
        norm_pix_loss=norm_pix_loss, layer_norm_eps=1e-6, hidden_act="gelu", qkv_bias=True,
        attn_implementation=attn,  # eager: a softmax(QK^T)V written differently from our SDPA call
    )
    hf = ViTMAEForPreTraining(hf_config).eval()
    with torch.no_grad():
        # HF initialises biases, LayerNorms and the mask token to constants (and transformers 5.24 leaves
        # the sin-cos tables at zero when built directly): give every tensor a value that matters.
        for name, p in hf.named_parameters():
            if name.endswith("bias") or "norm" in name or name.endswith(("mask_token", "cls_token")):
                p.add_(0.1 * torch.randn_like(p))
        hf.vit.embeddings.position_embeddings.copy_(torch.from_numpy(reference.sincos_2d(32, 8, True)).float()[None])
        hf.decoder.decoder_pos_embed.copy_(torch.from_numpy(reference.sincos_2d(16, 8, True)).float()[None])
    ours = from_hf(hf)
    cfg = ours.config
    assert (cfg.embed_dim, cfg.encoder_depth, cfg.encoder_num_heads) == (32, 2, 4)
    assert (cfg.decoder_embed_dim, cfg.decoder_depth, cfg.decoder_num_heads) == (16, 2, 2)
    assert cfg.mlp_ratio == 2.0 and cfg.mask_ratio == 0.6 and cfg.in_chans == in_chans
    imgs = torch.randn(2, in_chans, 32, 32)
    _compare(ours, hf, imgs, f"from_hf C={in_chans} norm_pix={norm_pix_loss} attn={attn}", record_property)


def test_config_from_hf_checks():
    from transformers import ViTMAEConfig

    base = dict(image_size=32, patch_size=4, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                intermediate_size=128, decoder_hidden_size=16, decoder_num_hidden_layers=1,
                decoder_num_attention_heads=2, decoder_intermediate_size=64)
    with pytest.warns(UserWarning, match="layer_norm_eps"):
        config_from_hf(ViTMAEConfig(**base, layer_norm_eps=1e-12))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = config_from_hf(ViTMAEConfig(**base, layer_norm_eps=1e-6))
    assert isinstance(cfg, Config) and cfg.mlp_ratio == 4.0
    with pytest.raises(ValueError, match="mlp_ratio"):
        config_from_hf(ViTMAEConfig(**{**base, "decoder_intermediate_size": 32}, layer_norm_eps=1e-6))
    with pytest.raises(ValueError, match="gelu"):
        config_from_hf(ViTMAEConfig(**base, layer_norm_eps=1e-6, hidden_act="relu"))


def test_report_max_error():
    """Runs last in this module: prints the worst parity error over every comparison above."""
    if not MAX_ERRORS:
        pytest.skip("run together with the parity tests")
    worst = max(MAX_ERRORS.values())
    print(f"\nmax abs parity error vs Hugging Face over {len(MAX_ERRORS)} runs: {worst:.3e}")
    assert worst <= TOL
