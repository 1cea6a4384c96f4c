"""mae_lesson.transformer: SDPA attention equals the textbook formula; pre-norm block; eps 1e-6."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mae_lesson import MAE
from mae_lesson.transformer import Attention, Block, DropPath, LayerNorm, Mlp


def manual_attention(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """timm's Attention.forward as in the official MAE: softmax(q k^T * d^-0.5) v, per head."""
    n, t, d = x.shape
    h = attn.num_heads
    hd = d // h
    qkv = x @ attn.qkv.weight.T + attn.qkv.bias  # [N, T, 3D]
    qkv = qkv.reshape(n, t, 3, h, hd).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    scores = (q @ k.transpose(-2, -1)) * hd**-0.5
    out = scores.softmax(dim=-1) @ v  # [N, h, T, hd]
    out = out.transpose(1, 2).reshape(n, t, d)
    return out @ attn.proj.weight.T + attn.proj.bias


@pytest.mark.parametrize("dim, heads, tokens", [(32, 4, 5), (48, 3, 17), (16, 1, 2)])
def test_attention_equals_manual_softmax(dim, heads, tokens):
    attn = Attention(dim, heads).double()
    for p in attn.parameters():  # non-zero biases so they are checked too
        nn.init.normal_(p, std=0.3)
    x = torch.randn(2, tokens, dim, dtype=torch.float64)
    torch.testing.assert_close(attn(x), manual_attention(attn, x), rtol=1e-10, atol=1e-10)


def test_heads_matter():
    # The manual reference depends on the head split, so the comparison above can fail.
    attn = Attention(32, 4).double()
    x = torch.randn(1, 6, 32, dtype=torch.float64)
    one_head = Attention(32, 1).double()
    one_head.load_state_dict(attn.state_dict())
    assert not torch.allclose(attn(x), one_head(x))
    attn.num_heads = 1
    torch.testing.assert_close(attn(x), manual_attention(one_head, x))


def test_layer_norm_eps_everywhere(tiny_model):
    assert LayerNorm(8).eps == 1e-6
    norms = [m for m in tiny_model.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 2 * 2 + 1 + 2 * 1 + 1  # two per block, encoder norm, decoder norm
    assert all(m.eps == 1e-6 for m in norms)


def test_block_forward_shape_and_prenorm_formula():
    torch.manual_seed(0)
    blk = Block(32, 4, mlp_ratio=4.0).double().eval()
    for p in blk.parameters():
        nn.init.normal_(p, std=0.2)
    x = torch.randn(3, 7, 32, dtype=torch.float64)
    out = blk(x)
    assert out.shape == (3, 7, 32)
    assert torch.isfinite(out).all()

    def ln(mod, z):
        mu, var = z.mean(-1, keepdim=True), z.var(-1, unbiased=False, keepdim=True)
        return (z - mu) / torch.sqrt(var + 1e-6) * mod.weight + mod.bias

    y = x + manual_attention(blk.attn, ln(blk.norm1, x))
    hidden = F.gelu(ln(blk.norm2, y) @ blk.mlp.fc1.weight.T + blk.mlp.fc1.bias)  # exact (erf) GELU
    expected = y + hidden @ blk.mlp.fc2.weight.T + blk.mlp.fc2.bias
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def test_block_parameter_names_follow_timm():
    names = {n for n, _ in Block(8, 2).named_parameters()}
    expected = {f"{m}.{t}" for m in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2") for t in ("weight", "bias")}
    assert names == expected
    assert Block(8, 2, mlp_ratio=4.0).mlp.fc1.out_features == 32
    assert Block(12, 2, mlp_ratio=2.5).mlp.fc1.out_features == 30
    assert isinstance(Mlp(4, 8).act, nn.GELU)


def test_drop_path():
    x = torch.ones(1000, 3, 4)
    dp = DropPath(0.5)
    dp.eval()
    assert torch.equal(dp(x), x)
    dp.train()
    out = dp(x)
    per_sample = out.flatten(1)
    # each sample is dropped entirely or scaled by 1/keep
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert torch.all(per_sample.min(1).values == per_sample.max(1).values)
    assert 0.4 < (per_sample[:, 0] == 0).float().mean().item() < 0.6
    assert isinstance(Block(8, 2).drop_path, nn.Identity)


def test_model_blocks_are_blocks(tiny_model):
    assert isinstance(tiny_model, MAE)
    assert len(tiny_model.blocks) == 2 and len(tiny_model.decoder_blocks) == 1
    assert all(isinstance(b, Block) for b in [*tiny_model.blocks, *tiny_model.decoder_blocks])


@pytest.fixture
def sdpa_calls(monkeypatch) -> list:
    """A list that gets one entry per call of SDPA inside ``mae_lesson.transformer``."""
    import mae_lesson.transformer as transformer

    calls = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(transformer.F, "scaled_dot_product_attention", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    return calls


@pytest.mark.parametrize("path", ["plain", "sdpa", "auto"])
@pytest.mark.parametrize("tokens, head_dim", [(5, 32), (13, 32), (50, 16), (65, 64), (197, 64)])
def test_every_attention_path_gives_the_formula(monkeypatch, path, tokens, head_dim):
    """Each path (forced, or chosen from the measured table) gives softmax(q k^T / sqrt(d)) v and its gradients."""
    import mae_lesson.transformer as transformer

    monkeypatch.setenv("MAE_LESSON_ATTENTION", path)
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 2, tokens, head_dim, requires_grad=True) for _ in range(3))
    expected = ((q.double() @ k.double().transpose(-2, -1)) * head_dim**-0.5).softmax(-1) @ v.double()
    grads_expected = torch.autograd.grad(expected.square().sum(), (q, k, v))
    got = transformer.attention(q, k, v)
    torch.testing.assert_close(got, expected.float(), atol=1e-5, rtol=1e-5)
    for g, e in zip(torch.autograd.grad(got.square().sum(), (q, k, v)), grads_expected):
        torch.testing.assert_close(g, e, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("path, fused", [("plain", False), ("sdpa", True)])
def test_a_forced_path_is_taken(monkeypatch, sdpa_calls, path, fused):
    import mae_lesson.transformer as transformer

    monkeypatch.setenv("MAE_LESSON_ATTENTION", path)
    calls = sdpa_calls
    transformer.attention(*(torch.randn(2, 2, 5, 8) for _ in range(3)))
    assert bool(calls) == fused


def test_auto_takes_the_faster_measured_path_on_the_cpu(monkeypatch, sdpa_calls):
    """At every measured shape, auto takes the path the table says was faster there."""
    import json

    import mae_lesson.performance as performance
    import mae_lesson.transformer as transformer

    monkeypatch.delenv("MAE_LESSON_ATTENTION", raising=False)
    table = json.loads(performance.CPU_ATTENTION_TABLE.read_text(encoding="utf-8"))
    assert {row["faster"] for row in table["shapes"]} <= {"plain", "sdpa"}
    calls = sdpa_calls
    for row in table["shapes"]:
        heads = 4
        q = torch.zeros(row["batch_heads"] // heads, heads, row["tokens"], row["head_dim"])
        calls.clear()
        transformer.attention(q, q, q)
        assert bool(calls) == (row["faster"] == "sdpa"), row
        # a shape between measured ones follows its nearest neighbour
        assert performance.cpu_plain_is_faster(row["batch_heads"] + 1, row["tokens"], row["head_dim"]) == (row["faster"] == "plain")
    # float64 is not in the table: SDPA
    calls.clear()
    transformer.attention(*(torch.randn(4, 4, 5, 32, dtype=torch.float64) for _ in range(3)))
    assert calls


def test_the_attention_table_covers_the_course_models():
    """Every bundled config's attention shapes lie within one octave of a measured shape."""
    import json
    import math

    import mae_lesson.performance as performance
    from mae_lesson.bundled import bundled_config_names
    from mae_lesson.config import Config

    shapes = json.loads(performance.CPU_ATTENTION_TABLE.read_text(encoding="utf-8"))["shapes"]
    for name in bundled_config_names():
        cfg = Config.from_file(name)
        length = cfg.grid_size[0] * cfg.grid_size[1]
        keep = int(length * (1 - cfg.mask_ratio))
        for tokens, width, heads in ((1 + keep, cfg.embed_dim, cfg.encoder_num_heads), (1 + length, cfg.embed_dim, cfg.encoder_num_heads),
                                     (1 + length, cfg.decoder_embed_dim, cfg.decoder_num_heads)):
            nearest = min(abs(math.log2(tokens / s["tokens"])) + abs(math.log2(width // heads / s["head_dim"])) for s in shapes)
            assert nearest <= 1.0, (name, tokens, width // heads)


def test_a_wrong_attention_setting_is_refused(monkeypatch):
    import mae_lesson.transformer as transformer

    monkeypatch.setenv("MAE_LESSON_ATTENTION", "flash")
    with pytest.raises(ValueError, match="MAE_LESSON_ATTENTION='flash': choose one of auto, plain, sdpa"):
        transformer.attention(*(torch.randn(1, 1, 2, 4) for _ in range(3)))

@pytest.fixture
def attention_flag():
    """``performance.set_attention_path``, undone after the test."""
    from mae_lesson import performance

    yield performance.set_attention_path
    performance.set_attention_path(None)


def test_the_attention_flag_switches_kernels_with_the_same_output(monkeypatch, sdpa_calls, attention_flag):
    """The flag (timm's ``use_fused_attn`` idea) picks the kernel; a block gives the same numbers either way."""
    monkeypatch.setenv("MAE_LESSON_ATTENTION", "sdpa")  # the call below wins over the variable
    torch.manual_seed(0)
    block = Block(32, 4).eval()
    x = torch.randn(2, 17, 32)
    outputs = {}
    for path in ("plain", "sdpa"):
        attention_flag(path)
        sdpa_calls.clear()
        with torch.no_grad():
            outputs[path] = block(x)
        assert bool(sdpa_calls) == (path == "sdpa"), path
    torch.testing.assert_close(outputs["plain"], outputs["sdpa"], atol=1e-5, rtol=1e-5)
    attention_flag(None)  # back to the environment variable
    sdpa_calls.clear()
    block(x)
    assert sdpa_calls
    with pytest.raises(ValueError, match="'flash': choose one of auto, plain, sdpa"):
        attention_flag("flash")


def test_q_k_v_are_split_in_one_place(monkeypatch):
    """``Attention.split_qkv`` is the one split: the block and the recomputed attention maps both follow it."""
    from mae_lesson.attention import attention_output, attention_weights

    torch.manual_seed(0)
    attn = Attention(32, 4).eval()
    x = torch.randn(2, 9, 32)
    with torch.no_grad():
        before = attn(x)
        real = Attention.split_qkv
        monkeypatch.setattr(Attention, "split_qkv", lambda self, x: tuple(reversed(real(self, x))))  # v, k, q
        after = attn(x)
        recomputed = attention_output(attn, x, attention_weights(attn, x))
    assert not torch.allclose(before, after, atol=1e-4)
    torch.testing.assert_close(recomputed, after, atol=1e-5, rtol=1e-5)
