"""CPU kernel choices of the training step, measured: attention path, patch projection, AdamW.

Three side-by-side measurements (interleaved rounds, medians, one process), forward+backward:

1. Attention, per shape ``(batch x heads, tokens, head width)``: the three plain ops
   (``softmax(q k^T / sqrt(d)) v``) against PyTorch's fused SDPA kernel, both fed the strided
   q, k, v views of the fused qkv projection, as ``transformer.Attention`` feeds them. With
   ``--write-table`` the result becomes ``mae_lesson/configs/cpu_attention.json``, the table
   ``mae_lesson.performance.use_fused_attn`` picks the CPU path from (nearest measured shape).
2. Patch embedding: the ``p x p`` stride-``p`` convolution against the same map as one matrix
   product over the patches (``PatchEmbed.forward``).
3. AdamW's update over a model's parameters: the default per-tensor loop, ``foreach`` and ``fused``.

Usage::

    python -m benchmarks.cpu_kernels --write-table --overwrite  # about 3 minutes on 2 cores; replaces cpu_kernels.md
    python -m benchmarks.cpu_kernels --quick          # a few shapes, a few seconds (smoke test)
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from benchmarks.common import ROOT, claim_results, environment, fmt, md_table, release_lock, time_interleaved
from mae_lesson import MAE, Config
from mae_lesson.optim import param_groups
from mae_lesson.patch_embed import PatchEmbed
from mae_lesson.performance import CPU_ATTENTION_TABLE
from mae_lesson.transformer import plain_attention

# The shapes of the course's and the benchmark's models: encoder tokens (visible + cls) 5, 13,
# 17, 50; decoder and fine-tuning tokens 17, 50, 65, 197; heads of 16, 32 and 64; batch x heads
# from ViT-B/16 at batch 8 (96) to the course models at batch 256 (1024).
TOKENS = (5, 13, 17, 50, 65, 197)
HEAD_DIMS = (16, 32, 64)
BATCH_HEADS = (96, 384, 1024)
QUICK = {"tokens": (5, 50), "head_dims": (32,), "batch_heads": (64,)}
CPU = torch.device("cpu")


def median_seconds(fns: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    """Median seconds per call of each function after one warm-up call, timed side by side
    (``common.time_interleaved``: rotating order round by round)."""
    for fn in fns.values():
        fn()
    return {name: statistics.median(t) for name, t in time_interleaved(fns, rounds, CPU).items()}


def attention_step(path: Callable, batch_heads: int, tokens: int, head_dim: int, heads: int) -> Callable[[], None]:
    """Forward+backward of one attention core from a fused qkv output, as ``Attention.forward``."""
    n = max(1, batch_heads // heads)
    gen = torch.Generator().manual_seed(0)
    qkv = torch.randn(n, tokens, 3 * heads * head_dim, generator=gen, requires_grad=True)
    # A dense gradient, as the output projection sends back (the gradient of .sum() is an
    # expanded view of one number, which some kernels take a shortcut on).
    grad_out = torch.randn(n, tokens, heads * head_dim, generator=gen)

    def step() -> None:
        q, k, v = qkv.reshape(n, tokens, 3, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        out = path(q, k, v).transpose(1, 2).reshape(n, tokens, heads * head_dim)
        qkv.grad = None
        out.backward(grad_out)

    return step


def measure_attention(tokens: tuple[int, ...], head_dims: tuple[int, ...], batch_heads: tuple[int, ...],
                      rounds: int) -> list[dict[str, float | int | str]]:
    rows = []
    for bh, t, d in itertools.product(batch_heads, tokens, head_dims):
        heads = 4
        times = median_seconds({"plain": attention_step(plain_attention, bh, t, d, heads),
                             "sdpa": attention_step(torch.nn.functional.scaled_dot_product_attention, bh, t, d, heads)}, rounds)
        rows.append({"batch_heads": bh, "tokens": t, "head_dim": d, "plain_ms": times["plain"] * 1e3,
                     "sdpa_ms": times["sdpa"] * 1e3, "faster": min(times, key=times.get)})
        print(f"attention bh={bh} T={t} d={d}: plain {rows[-1]['plain_ms']:.2f} ms, sdpa {rows[-1]['sdpa_ms']:.2f} ms",
              file=sys.stderr, flush=True)
    return rows


def measure_patch_embed(rounds: int, quick: bool) -> list[dict[str, float | str]]:
    """Convolution vs matrix product, forward+backward, at the course's sizes and ViT-B/16's."""
    sizes = [("fashion_mnist_p7", 256, 1, 28, 7, 128), ("fashion_mnist_tiny", 256, 1, 28, 4, 128),
             ("cifar_tiny", 128, 3, 32, 4, 192), ("vit_b16", 8, 3, 224, 16, 768)]
    rows = []
    for name, n, c, size, p, d in sizes[:1] if quick else sizes:
        embed = PatchEmbed(size, p, c, d)
        imgs = torch.randn(n, c, size, size)

        grad_out = torch.randn(n, embed.num_patches, d)

        def conv(embed: PatchEmbed = embed, imgs: torch.Tensor = imgs, grad_out: torch.Tensor = grad_out) -> None:
            embed.zero_grad()
            embed.proj(imgs).flatten(2).transpose(1, 2).backward(grad_out)

        def matmul(embed: PatchEmbed = embed, imgs: torch.Tensor = imgs, grad_out: torch.Tensor = grad_out) -> None:
            embed.zero_grad()
            embed(imgs).backward(grad_out)

        times = median_seconds({"conv": conv, "matmul": matmul}, rounds)
        rows.append({"config": name, "batch": n, "conv_ms": times["conv"] * 1e3, "matmul_ms": times["matmul"] * 1e3})
    return rows


def measure_adamw(rounds: int, quick: bool) -> list[dict[str, float | str]]:
    """One AdamW update over every parameter of a model: per-tensor loop, foreach, fused."""
    rows = []
    for name in ["fashion_mnist_p7"] + ([] if quick else ["cifar_tiny", "mae_base"]):
        torch.manual_seed(0)
        model = MAE(Config.from_file(name))
        for param in model.parameters():
            param.grad = torch.randn_like(param) * 1e-3
        optimizers = {kind: torch.optim.AdamW(param_groups(model, 0.05), lr=1e-4, **kw) for kind, kw in
                      (("loop", {"foreach": False}), ("foreach", {"foreach": True}), ("fused", {"fused": True}))}
        times = median_seconds({kind: opt.step for kind, opt in optimizers.items()}, rounds)
        rows.append({"config": name, "params": sum(p.numel() for p in model.parameters()),
                     **{f"{kind}_ms": t * 1e3 for kind, t in times.items()}})
    return rows


def to_markdown(result: dict) -> str:
    env = result["env"]
    out = ["# CPU kernel choices, measured", "", f"Command: `{result['command']}` ({result['started']}).  ",
           f"Machine: {env['cpu']}, {env['threads']} torch threads, torch {env['torch']}. Forward+backward, "
           "interleaved rounds, medians.", "", "## Attention: plain ops vs SDPA (fused kernel)", "",
           "Per shape: q, k, v of `batch x heads` sequences of `tokens` tokens and head width `d`, as strided "
           "views of the fused qkv output; the faster path is what `transformer.attention` uses at the nearest "
           "shape (`mae_lesson/configs/cpu_attention.json`).", ""]
    rows = [[r["batch_heads"], r["tokens"], r["head_dim"], fmt(r["plain_ms"], 4), fmt(r["sdpa_ms"], 4),
             f"{r['sdpa_ms'] / r['plain_ms']:.2f}", r["faster"]] for r in result["attention"]]
    out += [md_table(["batch x heads", "tokens", "head width", "plain ms", "SDPA ms", "SDPA ÷ plain", "faster"], rows), ""]
    rows = [[r["config"], r["batch"], fmt(r["conv_ms"], 4), fmt(r["matmul_ms"], 4), f"{r['conv_ms'] / r['matmul_ms']:.2f}x"]
            for r in result["patch_embed"]]
    out += ["## Patch embedding: convolution vs one matrix product", "",
            md_table(["config", "batch", "conv ms", "matmul ms", "speedup"], rows), ""]
    rows = [[r["config"], f"{r['params']:,}", fmt(r["loop_ms"], 4), fmt(r["foreach_ms"], 4), fmt(r["fused_ms"], 4),
             f"{r['loop_ms'] / r['fused_ms']:.1f}x"] for r in result["adamw"]]
    out += ["## AdamW update: per-tensor loop (the CPU default), foreach, fused", "",
            md_table(["model", "parameters", "loop ms", "foreach ms", "fused ms", "fused speedup over loop"], rows), ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few shapes and rounds (smoke test)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per shape (default 7; quick 2)")
    parser.add_argument("--write-table", action="store_true",
                        help=f"write the attention table the package reads ({CPU_ATTENTION_TABLE.relative_to(ROOT)})")
    parser.add_argument("--out", default=None, help="folder for cpu_kernels.md/.json (default benchmarks/; quick: none)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results already in --out (without it they are refused)")
    args = parser.parse_args(argv)
    out_dir = Path(args.out) if args.out else (None if args.quick else ROOT / "benchmarks")
    lock = claim_results(out_dir, ("cpu_kernels.md", "cpu_kernels.json"), args.overwrite)
    try:
        return measure(args, argv, out_dir)
    finally:
        release_lock(lock)


def measure(args: argparse.Namespace, argv: list[str] | None, out_dir: Path | None) -> int:
    """The kernels timed, the report printed and written to ``out_dir`` (None: printed only)."""
    rounds = args.rounds or (2 if args.quick else 7)
    grid = QUICK if args.quick else {"tokens": TOKENS, "head_dims": HEAD_DIMS, "batch_heads": BATCH_HEADS}
    result = {"command": "python -m benchmarks.cpu_kernels " + " ".join(argv if argv is not None else sys.argv[1:]),
              "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "env": environment(),
              "attention": measure_attention(grid["tokens"], grid["head_dims"], grid["batch_heads"], rounds),
              "patch_embed": measure_patch_embed(rounds, args.quick), "adamw": measure_adamw(rounds, args.quick)}
    text = to_markdown(result)
    print(text)
    if args.write_table:
        table = {"command": result["command"], "started": result["started"], "cpu": result["env"]["cpu"],
                 "threads": result["env"]["threads"], "torch": result["env"]["torch"],
                 "shapes": [{k: r[k] for k in ("batch_heads", "tokens", "head_dim", "faster")} for r in result["attention"]]}
        CPU_ATTENTION_TABLE.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    if out_dir is not None:
        (out_dir / "cpu_kernels.md").write_text(text, encoding="utf-8")
        (out_dir / "cpu_kernels.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
