"""mae_lesson.model: parameter counts, official state-dict layout, forward contract, input errors,
multi-scale position tables, gradient checkpointing, training and torch.compile."""

from __future__ import annotations

import copy
import math
import time

import pytest
import torch
import torch.nn.functional as F

from mae_lesson import MAE, Config, set_seed

# ---------------------------------------------------------------- size and layout


@pytest.mark.parametrize(
    "name, expected",
    [("mae_base", 111_655_680), ("mae_large", 329_239_296), ("mae_huge", 656_613_964)],
)
def test_exact_parameter_counts_of_paper_models(name, expected, reference):
    cfg = Config.from_file(name)
    assert reference.param_count(cfg) == expected  # the hand formula agrees with the published counts
    with torch.device("meta"):  # sized without allocating 2.6 GB of weights
        model = MAE(cfg)
    assert model.count_parameters() == expected
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected
    if name == "mae_huge":
        assert model.patch_size == 14 and model.patch_embed.num_patches == 256
    del model


@pytest.mark.parametrize("img_size", [32, [24, 40]])
def test_state_dict_keys_and_shapes_equal_official(img_size, tiny_dict, reference):
    cfg = {**tiny_dict, "img_size": img_size, "decoder_embed_dim": 16, "mlp_ratio": 2.0, "in_chans": 1}
    model = MAE(cfg)
    expected = reference.state_shapes(cfg)
    state = model.state_dict()
    assert set(state) == set(expected), (set(state) ^ set(expected))
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert model.count_parameters() == reference.param_count(cfg)


def test_official_initialisation(tiny_model):
    m = tiny_model
    for name, mod in m.named_modules():
        if isinstance(mod, torch.nn.Linear):
            bound = math.sqrt(6.0 / (mod.in_features + mod.out_features))  # xavier-uniform
            assert mod.weight.abs().max() <= bound + 1e-7, name
            assert mod.weight.abs().max() > 0.8 * bound, name
            assert torch.count_nonzero(mod.bias) == 0, name
        elif isinstance(mod, torch.nn.LayerNorm):
            assert torch.all(mod.weight == 1) and torch.all(mod.bias == 0), name
    w = m.patch_embed.proj.weight
    bound = math.sqrt(6.0 / (w.shape[0] + w[0].numel()))  # xavier on the flattened [D, C*p*p] view
    assert w.abs().max() <= bound + 1e-7 and w.abs().max() > 0.8 * bound
    big = MAE({"embed_dim": 64, "encoder_num_heads": 4, "encoder_depth": 1, "decoder_depth": 1,
               "decoder_embed_dim": 512, "img_size": 32, "patch_size": 4})
    assert 0.015 < big.mask_token.std().item() < 0.025  # N(0, 0.02)


def test_dict_and_config_build_the_same_model(tiny_dict, tiny_config):
    torch.manual_seed(0)
    a = MAE(tiny_dict)
    torch.manual_seed(0)
    b = MAE(tiny_config)
    assert isinstance(a.config, Config) and a.config == b.config
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


# ---------------------------------------------------------------- forward contract


@pytest.mark.parametrize("in_chans, ratio", [(3, 0.75), (1, 0.5), (3, 0.9)])
def test_forward_keys_and_shapes(in_chans, ratio, tiny_dict):
    model = MAE({**tiny_dict, "in_chans": in_chans, "mask_ratio": ratio})
    out = model(torch.randn(2, in_chans, 32, 32))
    assert set(out) == {"loss", "pred", "mask", "latent", "ids_restore"}
    keep = int(64 * (1 - ratio))
    assert out["loss"].shape == () and torch.isfinite(out["loss"])
    assert out["pred"].shape == (2, 64, 16 * in_chans)
    assert out["mask"].shape == (2, 64) and out["mask"].sum().item() == 2 * (64 - keep)
    assert out["latent"].shape == (2, 1 + keep, 32)
    assert out["ids_restore"].shape == (2, 64) and out["ids_restore"].dtype == torch.int64
    for v in out.values():
        assert not torch.isnan(v.float()).any()


def test_mask_ratio_argument_overrides_config(tiny_model, tiny_images):
    assert tiny_model(tiny_images, mask_ratio=0.5)["latent"].shape == (2, 1 + 32, 32)
    for bad in (1.0, -0.2):
        with pytest.raises(ValueError, match="mask_ratio"):
            tiny_model(tiny_images, mask_ratio=bad)


def test_seeded_determinism(tiny_config, tiny_images):
    runs = []
    for _ in range(2):
        set_seed(123)
        model = MAE(tiny_config)
        runs.append(model(tiny_images))
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[1][key]), key
    set_seed(124)
    assert not torch.equal(MAE(tiny_config)(tiny_images)["mask"], runs[0]["mask"])


def test_same_noise_same_output_in_eval(tiny_model, tiny_images):
    tiny_model.eval()
    noise = torch.rand(2, 64)
    with torch.no_grad():
        a, b = tiny_model(tiny_images, noise=noise), tiny_model(tiny_images, noise=noise)
    for key in a:
        assert torch.equal(a[key], b[key])


# ---------------------------------------------------------------- input errors


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])
def test_integer_images_raise_type_error(tiny_model, dtype):
    with pytest.raises(TypeError, match="float"):
        tiny_model(torch.randint(0, 255, (2, 3, 32, 32), dtype=dtype))


def test_three_d_input_mentions_batch_dimension(tiny_model):
    with pytest.raises(ValueError, match="batch dimension"):
        tiny_model(torch.randn(3, 32, 32))


def test_wrong_channels(tiny_model):
    with pytest.raises(ValueError, match=r"1 channels.*in_chans=3"):
        tiny_model(torch.randn(2, 1, 32, 32))


@pytest.mark.parametrize("size", [(30, 32), (32, 34)])
def test_size_not_divisible(tiny_model, size):
    with pytest.raises(ValueError, match="not divisible by patch_size 4"):
        tiny_model(torch.randn(1, 3, *size))


def test_non_tensor_input(tiny_model):
    with pytest.raises(TypeError, match="torch.Tensor"):
        tiny_model(torch.randn(1, 3, 32, 32).numpy())


# ---------------------------------------------------------------- other sizes


@pytest.mark.parametrize("size", [(28, 28), (32, 32), (36, 28), (20, 44)])
def test_non_square_and_multi_scale_sizes(size, tiny_dict):
    model = MAE({**tiny_dict, "img_size": 28})  # configured 7x7 grid
    h, w = size[0] // 4, size[1] // 4
    length = h * w
    out = model(torch.randn(2, 3, *size))
    assert out["pred"].shape == (2, length, 48)
    assert out["mask"].shape == (2, length)
    assert out["latent"].shape == (2, 1 + int(length * 0.25), 32)
    assert torch.isfinite(out["loss"])
    assert model.unpatchify(out["pred"], size=size).shape == (2, 3, *size)
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


def _capture_block_inputs(model: MAE) -> dict:
    seen = {}
    model.blocks[0].register_forward_pre_hook(lambda m, args: seen.__setitem__("encoder", args[0].detach().clone()))
    model.decoder_blocks[0].register_forward_pre_hook(lambda m, args: seen.__setitem__("decoder", args[0].detach().clone()))
    return seen


@pytest.mark.parametrize("size", [(28, 28), (32, 32), (36, 28)])
def test_position_table_at_any_size_is_exact_sincos(size, tiny_dict, reference):
    """With patch embedding, cls token, decoder embedding and mask token zeroed, the tokens entering
    the first encoder and decoder blocks *are* the position tables the model used."""
    model = MAE({**tiny_dict, "img_size": 28, "decoder_embed_dim": 16})
    with torch.no_grad():
        for p in (model.patch_embed.proj.weight, model.patch_embed.proj.bias, model.cls_token,
                  model.decoder_embed.weight, model.decoder_embed.bias, model.mask_token):
            p.zero_()
    seen = _capture_block_inputs(model)
    grid = (size[0] // 4, size[1] // 4)
    with torch.no_grad():
        model(torch.randn(1, 3, *size), mask_ratio=0.0)
    enc = torch.from_numpy(reference.sincos_2d(32, grid, cls_token=True)).float().unsqueeze(0)
    dec = torch.from_numpy(reference.sincos_2d(16, grid, cls_token=True)).float().unsqueeze(0)
    torch.testing.assert_close(seen["encoder"], enc, rtol=0, atol=1e-6)
    torch.testing.assert_close(seen["decoder"], dec, rtol=0, atol=1e-6)
    if size == (28, 28):
        torch.testing.assert_close(seen["encoder"], model.pos_embed.data, rtol=0, atol=0)
    # The decoder sees every position whatever the mask.
    with torch.no_grad():
        model(torch.randn(1, 3, *size))
    torch.testing.assert_close(seen["decoder"], dec, rtol=0, atol=1e-6)


def test_exact_table_differs_from_interpolated_one(reference):
    # Makes the test above able to fail: a bicubic resize of the 7x7 table is not the 9x7 table.
    table = torch.from_numpy(reference.sincos_2d(32, 7)).float().reshape(1, 7, 7, 32).permute(0, 3, 1, 2)
    resized = F.interpolate(table, size=(9, 7), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(63, 32)
    exact = torch.from_numpy(reference.sincos_2d(32, (9, 7))).float()
    assert (resized - exact).abs().max() > 0.05


# ---------------------------------------------------------------- training


def test_grad_checkpointing_gives_same_gradients(tiny_model, tiny_images):
    plain = tiny_model
    ckpt = copy.deepcopy(plain)
    ckpt.set_grad_checkpointing(True)
    assert ckpt.grad_checkpointing and ckpt.config.grad_checkpointing
    calls = {"plain": 0, "ckpt": 0}
    # pre-hooks: non-reentrant checkpointing stops the recomputation early, so post-hooks may not run
    plain.blocks[0].register_forward_pre_hook(lambda *a: calls.__setitem__("plain", calls["plain"] + 1))
    ckpt.blocks[0].register_forward_pre_hook(lambda *a: calls.__setitem__("ckpt", calls["ckpt"] + 1))
    noise = torch.rand(2, 64)
    losses = []
    for model in (plain, ckpt):
        out = model(tiny_images, noise=noise)
        out["loss"].backward()
        losses.append(out["loss"].detach())
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=0)
    assert calls == {"plain": 1, "ckpt": 2}  # the block was recomputed in backward: checkpointing ran
    grads_plain = dict(plain.named_parameters())
    for name, p in ckpt.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, grads_plain[name].grad, rtol=1e-5, atol=1e-7, msg=name)


def test_grad_checkpointing_from_config(tiny_dict):
    model = MAE({**tiny_dict, "grad_checkpointing": True})
    assert model.grad_checkpointing
    with torch.no_grad():  # no recompute (and no warning) without grad
        assert torch.isfinite(model(torch.randn(1, 3, 32, 32))["loss"])


@pytest.mark.slow
def test_adamw_steps_lower_the_loss(tiny_model, tiny_images):
    imgs = torch.cat([tiny_images, torch.randn(6, 3, 32, 32)])
    noise = torch.rand(8, 64)
    opt = torch.optim.AdamW(tiny_model.parameters(), lr=1e-3, weight_decay=0.05)
    losses = []
    for _ in range(25):
        loss = tiny_model(imgs, noise=noise)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.slow
def test_torch_compile_aot_eager_forward_backward(tiny_model, tiny_images):
    noise = torch.rand(2, 64)
    eager = tiny_model(tiny_images, noise=noise)
    compiled = torch.compile(tiny_model, backend="aot_eager", fullgraph=False)
    out = compiled(tiny_images, noise=noise)
    torch.testing.assert_close(out["pred"], eager["pred"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out["loss"], eager["loss"], rtol=1e-4, atol=1e-5)
    out["loss"].backward()
    assert tiny_model.decoder_pred.weight.grad is not None


@pytest.mark.slow  # inductor codegen: about 40 s on a 2-core CPU
def test_torch_compile_inductor(tiny_model, tiny_images):
    tiny_model.eval()
    noise = torch.rand(2, 64)
    with torch.no_grad():
        eager = tiny_model(tiny_images, noise=noise)
        start = time.perf_counter()
        out = torch.compile(tiny_model)(tiny_images, noise=noise)
        print(f"inductor compile + first call: {time.perf_counter() - start:.1f} s")
    torch.testing.assert_close(out["pred"], eager["pred"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out["loss"], eager["loss"], rtol=1e-4, atol=1e-5)
    assert torch.equal(out["mask"], eager["mask"])


# ---------------------------------------------------------------- meta device


def test_building_on_meta_device_does_not_break_later_models(reference):
    # Widths and grid used by no other test, so the poisoned cache entries cannot leak.
    cfg = {"img_size": 20, "patch_size": 4, "in_chans": 3, "embed_dim": 20, "encoder_num_heads": 5,
           "encoder_depth": 1, "decoder_embed_dim": 28, "decoder_num_heads": 7, "decoder_depth": 1}
    with torch.device("meta"):
        meta_model = MAE(cfg)  # the usual way to size a huge model without allocating it
    assert meta_model.count_parameters() == reference.param_count(cfg)
    real = MAE(cfg)
    torch.testing.assert_close(
        real.pos_embed.data,
        torch.from_numpy(reference.sincos_2d(20, 5, cls_token=True)).float().unsqueeze(0),
        rtol=0, atol=1e-6,
    )
