"""Training-step benchmark on one CUDA GPU: ViT-B/16 MAE, ours against Hugging Face and vit-pytorch.

The same comparison as ``train_step.py`` for ViT-B/16 at 224 with the paper's decoder (512 wide,
8 deep), the way a GPU trains it: bf16 autocast (fp16 where the GPU has no bf16), fused AdamW,
and our model both eager and under ``torch.compile``. Implementations are interleaved over
rounds; a time budget (default 240 s of timing, the whole run under 5 minutes on an H100)
ends the rounds early.

Reported per implementation: median/min/max step time, images/s, the speed ratio of ours to it
(median of per-round ratios), peak memory (``torch.cuda.max_memory_allocated`` over one step
after warm-up), and model FLOP utilisation: analytic train-step FLOPs (``common.FLOP_FORMULA``:
3x the forward's matmul FLOPs) / median step time / the GPU's dense bf16 peak. The peak comes
from a table of datasheet numbers by device name (H100 SXM 989 TFLOP/s, A100 312, L4 121,
T4 65 fp16, ...); a big bf16 matmul is measured as well and used when the name is unknown.

``--dry-run`` runs the same code path on the CPU with toy sizes (bf16 autocast on CPU, fused
AdamW on CPU, peak from a measured bf16 matmul), for tests and machines without a GPU.

Usage::

    python -m benchmarks.gpu_train_step                  # on a GPU machine; writes benchmarks/results_gpu.{md,json}
                                                         # (--overwrite to replace them)
    python -m benchmarks.gpu_train_step --no-compile --batch 64
    python -m benchmarks.gpu_train_step --dry-run        # CPU, toy sizes, about 15 s
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (
    FLOP_FORMULA, FULL_CONFIGS, IMPLEMENTATIONS, LABELS, QUICK_CONFIGS, ROOT, build_impl, claim_results,
    environment, fmt, matmul_rate, md_table, paired_ratio, release_lock, summary, sync, time_interleaved,
    train_step_flops, warm_up,
)
from mae_lesson.utils import log

# Dense (no sparsity) tensor-core peaks in TFLOP/s from NVIDIA datasheets: bf16, or fp16 where the
# GPU has no bf16 (T4, V100). Matched in order against torch.cuda.get_device_name().
PEAK_TFLOPS = [
    ("H200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("GH200", 989.0),
    ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0), ("A10G", 70.0),
    ("A10", 125.0), ("A6000", 155.0), ("RTX 4090", 165.0), ("T4", 65.0), ("V100", 125.0),
]


def datasheet_peak(device_name: str) -> float | None:
    """Dense bf16 (fp16 on pre-Ampere) peak FLOP/s for a device name, or None when unknown."""
    for key, tflops in PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return tflops * 1e12
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="run the same code on the CPU with toy sizes")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="also time mae_lesson under torch.compile (default: on; off with --dry-run)")
    parser.add_argument("--batch", type=int, default=None, help="images per step (default 128; dry run 4)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 30; dry run 2)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per implementation (compiled: +1)")
    parser.add_argument("--time-budget", type=float, default=240.0, help="seconds of timed rounds at most")
    parser.add_argument("--out", default=None, help="folder for results_gpu.md/.json (default benchmarks/; "
                                                    "--dry-run writes nothing unless given)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results already in the output folder (without it they are refused)")
    args = parser.parse_args(argv)

    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        parser.error("no CUDA GPU is visible (torch.cuda.is_available() is False); run train_step.py for the "
                     "CPU benchmark, or --dry-run to check this script's code path on the CPU")
    out_dir = Path(args.out) if args.out else (None if dry else ROOT / "benchmarks")
    lock = claim_results(out_dir, ("results_gpu.md", "results_gpu.json"), args.overwrite)
    try:
        return measure(args, out_dir)
    finally:
        release_lock(lock)


def measure(args: argparse.Namespace, out_dir: Path | None) -> int:
    """The implementations timed on the GPU (or the CPU dry run), the report printed and written to ``out_dir``."""
    dry = args.dry_run
    device = torch.device("cpu" if dry else "cuda")
    cfg, default_batch = (QUICK_CONFIGS if dry else FULL_CONFIGS)["vit_b16"]
    batch = args.batch or (default_batch if dry else 128)
    rounds = args.rounds or (2 if dry else 30)
    use_compile = (not dry) if args.compile is None else args.compile
    amp_dtype = torch.bfloat16 if dry or torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 ops outside autocast (AdamW, norms' params)
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    env = environment()
    device_name = env.get("gpu", env["cpu"]) if not dry else f"CPU dry run ({env['cpu']})"

    t_start = time.perf_counter()
    mm_n = 512 if dry else 8192
    measured_peak = matmul_rate(mm_n, amp_dtype, device, repeats=3 if dry else 10)
    table_peak = None if dry else datasheet_peak(device_name)
    peak = table_peak or measured_peak
    peak_source = (f"datasheet dense {'bf16' if amp_dtype == torch.bfloat16 else 'fp16'} peak for {device_name}"
                   if table_peak else f"measured {amp_dtype} torch.mm {mm_n}x{mm_n}")
    log(f"{device_name}: {amp_dtype} matmul {measured_peak / 1e12:.3f} TFLOP/s measured; MFU against {peak_source}", stderr=True)

    flops = train_step_flops(cfg, batch)
    names = [n for n in IMPLEMENTATIONS if use_compile or n != "mae_lesson_compiled"]
    impls = {}
    for name in names:
        impl = build_impl(name, cfg, batch, device, amp_dtype=amp_dtype, fused_adamw=True)
        warm_up(impl, args.warmup + (1 if name.endswith("compiled") else 0), device)
        impls[name] = impl
        log(f"  {name}: " + (f"error {impl.error}" if impl.error else f"ready ({impl.extra.get('warmup_s', 0):.1f} s warm-up)"), stderr=True)
        if impl.error and impl.model is not None:
            impl.model = None
        if device.type == "cuda":
            torch.cuda.empty_cache()

    fns = {n: i.step for n, i in impls.items() if not i.error}
    deadline = time.perf_counter() + args.time_budget
    log(f"timing up to {rounds} interleaved rounds of {', '.join(fns)} (budget {args.time_budget:.0f} s)", stderr=True)
    times = time_interleaved(fns, rounds, device, deadline=deadline)

    rows, report = [], {}
    for name, impl in impls.items():
        r: dict[str, Any] = {"label": LABELS[name], "notes": impl.notes, "warmup_s": impl.extra.get("warmup_s")}
        if impl.error:
            r["error"] = impl.error
        else:
            r.update(summary(times[name], batch))
            r["mfu"] = flops / r["median_s"] / peak
            if name != "mae_lesson" and "mae_lesson" in times:
                r["ours_speedup_paired"] = paired_ratio(times[name], times["mae_lesson"])
            if device.type == "cuda":
                impl.model.zero_grad(set_to_none=True)
                sync(device)
                base = torch.cuda.memory_allocated(device)
                torch.cuda.reset_peak_memory_stats(device)
                impl.step()
                sync(device)
                r["peak_mem_delta_gib"] = (torch.cuda.max_memory_allocated(device) - base) / 2**30
                r["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        report[name] = r
        if "error" in r:
            rows.append([r["label"], "failed", "-", "-", "-", "-", "-", "-", r["error"]])
            continue
        mem = f"{r['peak_mem_gib']:.2f} (+{r['peak_mem_delta_gib']:.2f})" if "peak_mem_gib" in r else "n/a (CPU)"
        ratio = "1 (reference)" if name == "mae_lesson" else fmt(r.get("ours_speedup_paired"))
        notes = "; ".join(filter(None, [r["notes"], f"compile+warm-up {r['warmup_s']:.0f} s" if name.endswith("compiled") else ""]))
        rows.append([r["label"], fmt(r["median_s"] * 1e3, 4), fmt(r["min_s"] * 1e3, 4), fmt(r["max_s"] * 1e3, 4),
                     fmt(r["images_per_s"], 4), ratio, f"{r['mfu']:.1%}", mem, notes])
    wall = time.perf_counter() - t_start

    title = "dry run on CPU, toy sizes" if dry else device_name
    text = "\n".join([
        f"# Training-step benchmark, ViT-B/16 MAE ({title})", "",
        f"Config: {cfg.img_size}px p{cfg.patch_size}, encoder {cfg.embed_dim}x{cfg.encoder_depth}, decoder "
        f"{cfg.decoder_embed_dim}x{cfg.decoder_depth}, batch {batch}; {amp_dtype} autocast, fused AdamW; "
        f"{len(next(iter(times.values()), []))} interleaved rounds. torch {env['torch']}, transformers "
        f"{env['transformers']}, vit-pytorch {env['vit_pytorch']}.", "",
        f"Model FLOPs per step: {fmt(flops / 1e9, 4)} GFLOP. Peak for MFU: {peak / 1e12:.4g} TFLOP/s ({peak_source}); "
        f"measured {amp_dtype} matmul: {measured_peak / 1e12:.4g} TFLOP/s.", "",
        md_table(["implementation", "median ms/step", "min", "max", "images/s", "ours eager ÷ this (speed)",
                  "MFU", "peak mem GiB (+ step)", "notes"], rows), "",
        f"FLOP count: {FLOP_FORMULA}", "", f"Wall time: {wall:.0f} s.", ""])
    print(text)
    if out_dir is not None:
        (out_dir / "results_gpu.md").write_text(text, encoding="utf-8")
        payload = {"device": device_name, "dry_run": dry, "batch": batch, "amp_dtype": str(amp_dtype),
                   "config": cfg.to_dict(), "train_step_flops": flops, "peak_flops": peak, "peak_source": peak_source,
                   "measured_matmul_flops": measured_peak, "implementations": report, "times_s": times,
                   "env": env, "wall_s": wall}
        (out_dir / "results_gpu.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
        log(f"wrote {out_dir / 'results_gpu.md'} and results_gpu.json", stderr=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
