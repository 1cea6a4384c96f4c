"""Training-step benchmark on CPU: mae_lesson.MAE against Hugging Face and vit-pytorch.

One training step = ``zero_grad``, forward (loss), backward, ``AdamW.step()``, on fixed inputs.
Implementations, built at the same dimensions:

- ``mae_lesson.MAE``, eager and under ``torch.compile`` (``--compile``, default on for full runs);
- Hugging Face ``ViTMAEForPreTraining`` (``attn_implementation="sdpa"``), made by
  ``mae_lesson.interop.to_hf`` so it has the same weights, and fed the same mask noise;
- ``vit_pytorch.mae.MAE`` with a ``ViT(pool='cls')`` encoder (vit-pytorch 1.26 raises a shape
  error at forward: reported with its error) and with ``pool='mean'`` (runs; its own design:
  no cls token, patch LayerNorms, explicit softmax attention, pixels predicted for masked
  patches only, and its own mask draw).

Configurations (``common.FULL_CONFIGS``; all mlp_ratio 4, mask ratio 0.75):

- ``fashion_mnist_p7``: the course's default CPU model (28x28x1, p=7, 128x6 encoder with 4 heads
  of 32, 64x2 decoder), batch 256;
- ``fashion_mnist_tiny``: the patch-4 teaching model (same widths, p=4), batch 256;
- ``vit_tiny_28`` / ``vit_small_28``: ViT-Tiny / ViT-Small-shaped encoders (192 wide with 3 heads,
  384 wide with 6 heads: heads of 64, as every standard ViT; 6 blocks) on 28x28x1 at p=4, decoder
  128x2 with 4 heads, batch 128;
- ``vit_tiny_32`` (the course's ``cifar_tiny``) / ``vit_small_32``: the same two on 32x32 RGB;
- ``vit_b16``: ViT-B/16 at 224 with the paper's decoder (512 wide, 8 deep), batch 8.

``--quick`` shrinks each (batch 4 to 32, 2+1 blocks, a 64x64 ViT-B/16-shaped toy) for a smoke test.

Cost: ``fashion_mnist_tiny`` and ``vit_b16`` get every measurement below. The other five time
ours (eager) and Hugging Face only, over ``--rounds-medium`` rounds, with no torch.compile, no
vit-pytorch, no memory probe and no mask-token experiment; ``--all-impls`` gives them the full
treatment too.

Timing: implementations are interleaved over rounds (each round runs every one once, in a
rotated order), so changes in machine load hit them alike; a ratio is the median over rounds of
the per-round ratio (side by side), reported with its min and max over rounds. Reported: median,
min, max seconds per step, images/s = batch / median. Ours against Hugging Face gets a verdict
from that spread (``verdict``): lead if the smallest per-round ratio is above 1.02, behind if the
largest is below 0.98, level if the range holds 1.0 or the median is within 3% of it, otherwise
a narrow lead (or deficit): every round on one side, some by under 2%.

The same run measures:

- the machine's fp32 matmul peak: best FLOP/s of ``torch.mm`` on two n x n matrices
  (2*n^3 FLOPs; n = 2048 and 4096), timed inside every round of every configuration;
- achieved model FLOP/s = analytic train-step FLOPs / median step time, as a fraction of that
  peak, and (robust to changing machine load) the median over rounds of the step's FLOP/s over
  the matmul rate measured in the same round. FLOP count (also printed; ``common.FLOP_FORMULA``): a training step is 3x the forward
  (backward = 2x forward); the forward counts 2*M*N*K per matmul: patch_embed 2*L*(p*p*C)*D;
  encoder on T_e = 1 + L_keep tokens, per block 2*T_e*D^2*(4 + 2r) + 4*T_e^2*D; decoder_embed
  2*T_e*D*Dd; decoder on T_d = 1 + L tokens, per block 2*T_d*Dd^2*(4 + 2r) + 4*T_d^2*Dd;
  decoder_pred 2*L*Dd*(p*p*C). Element-wise ops and AdamW are not counted;
- the paper's efficiency claim: our encoder, forward+backward, on all L patch tokens + cls
  (masked ones replaced by a learned mask token, as BEiT/SimMIM) versus on the 1 + L_keep
  visible tokens only, at mask ratio 0.75, interleaved; speedup = time(all) / time(visible);
  at the configuration's batch and, for ViT-B/16, also at batch 32 (``--mask-token-batches``):
  at batch 8 the visible-only matmuls have only 400 rows and run well below the matmul peak;
- data loading: ``mae_lesson.data.BatchLoader`` on Fashion-MNIST (batch 256, training
  augmentation: random resized crop + flip + normalise) images/s, versus the default model's
  (``fashion_mnist_p7``) eager training images/s, timed in that configuration's rounds;
- memory: each implementation in its own subprocess (glibc's mmap threshold fixed so freed
  tensors leave RSS): after one warm-up step and ``zero_grad(set_to_none=True)`` (weights and
  AdamW state resident), the peak RSS increase over two more training steps, i.e. activations,
  gradients and temporaries. Full runs only (``--memory`` forces it with ``--quick``).

Usage::

    python -m benchmarks.train_step --overwrite     # full run, replaces benchmarks/results_cpu.{md,json}
    python -m benchmarks.train_step --quick --out /tmp/bench   # smoke run (under a minute)
    python -m benchmarks.train_step --configs vit_tiny_28 vit_tiny_32 --update   # rerun two, keep the rest
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from benchmarks.common import (
    CONFIG_NAMES, FLOP_FORMULA, IMPLEMENTATIONS, LABELS, ROOT, Config, build_impl, claim_results, configs,
    encoder_flops, environment, fmt, fmt_spread, make_inputs, md_table, parity_loss, ratio_spread, spread, summary,
    release_lock, time_interleaved, train_step_flops, warm_up,
)
from mae_lesson.masking import num_kept, random_masking
from mae_lesson.patch_embed import patch_tokens, prepend_cls
from mae_lesson.utils import log

DEVICE = torch.device("cpu")
RESULT_FILES = ("results_cpu.md", "results_cpu.json")
# Every measurement at these; ours (eager) and Hugging Face only at the others, unless --all-impls.
FULL_TREATMENT = ("fashion_mnist_tiny", "vit_b16")
MEDIUM_IMPLS = ("mae_lesson", "hf_sdpa")
LOADER_CONFIG = "fashion_mnist_p7"  # the loader is compared with the default model's training step
# (config, numerator, denominator): the speed ratios the report leads with.
KEY_RATIOS = [(name, "mae_lesson", "hf_sdpa") for name in CONFIG_NAMES] + [
    ("fashion_mnist_tiny", "mae_lesson_compiled", "hf_sdpa"),
]
# Verdict of ours against Hugging Face from the per-round ratios (see the module docstring).
LEAD_MIN, BEHIND_MAX, LEVEL_BAND = 1.02, 0.98, 0.03


# ----------------------------------------------------------------------------- memory probe
def _proc_status_kb(key: str) -> int:
    with open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def probe_memory(impl_name: str, config_name: str, quick: bool) -> dict[str, Any]:
    """Run in a fresh process: peak RSS increase over two training steps (see module docstring)."""
    cfg, batch = configs(quick)[config_name]
    impl = build_impl(impl_name, cfg, batch, DEVICE)
    warm_up(impl, 2 if impl_name.endswith("compiled") else 1, DEVICE)
    if impl.error:
        return {"error": impl.error}
    impl.model.zero_grad(set_to_none=True)
    base_kb = _proc_status_kb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as handle:
            handle.write("5")  # reset VmHWM (peak RSS) to the current RSS
        method = "VmHWM after reset"
    except OSError:
        method = "VmHWM since process start (reset unavailable)"
    for _ in range(2):
        impl.step()
    peak_kb = _proc_status_kb("VmHWM")
    return {"baseline_rss_mb": base_kb / 1024, "peak_rss_mb": peak_kb / 1024,
            "step_peak_delta_mb": (peak_kb - base_kb) / 1024, "method": method}


def measure_memory(impl_name: str, config_name: str, quick: bool, threads: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.train_step", "--probe-memory", impl_name, "--probe-config", config_name,
           "--threads", str(threads)] + (["--quick"] if quick else [])
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "PYTHONWARNINGS": "ignore"}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=str(ROOT))
    except subprocess.TimeoutExpired:
        return {"error": "memory probe timed out"}
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode or not lines:
        return {"error": f"probe exited {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(lines[-1])


# ----------------------------------------------------------------------------- experiments
def encoder_pass_fns(model: torch.nn.Module, imgs: torch.Tensor, noise: torch.Tensor,
                     mask_ratio: float) -> dict[str, Callable[[], None]]:
    """Forward+backward of our encoder on visible tokens only, and on every token with mask tokens."""
    dim = model.embed_dim
    enc_mask_token = torch.nn.Parameter(torch.zeros(1, 1, dim))
    _, mask, _ = random_masking(torch.zeros(*noise.shape, 1), mask_ratio, noise)
    removed = mask.bool().unsqueeze(-1)  # [N, L, 1]

    def visible() -> None:
        model.zero_grad(set_to_none=True)
        latent, _, _ = model.forward_encoder(imgs, mask_ratio, noise)  # [N, 1 + L_keep, D]
        latent.mean().backward()

    def with_mask_tokens() -> None:
        model.zero_grad(set_to_none=True)
        enc_mask_token.grad = None
        pos = model.pos_embed
        x = patch_tokens(model.patch_embed, pos, imgs)  # [N, L, D]
        x = torch.where(removed, enc_mask_token + pos[:, 1:, :], x)
        x = prepend_cls(model.cls_token, pos, x)  # [N, 1 + L, D]
        for blk in model.blocks:
            x = blk(x)
        model.norm(x).mean().backward()

    return {"visible_only": visible, "with_mask_tokens": with_mask_tokens}


def make_loader(batch: int, quick: bool) -> tuple[Any, str]:
    """The default pretraining loader on Fashion-MNIST (synthetic images if the data is absent)."""
    from mae_lesson.data import BatchLoader, ImageData, NORMALIZATION, load_fashion_mnist

    try:
        data = load_fashion_mnist(ROOT / "data", "train")
        source = f"Fashion-MNIST train ({len(data)} images)"
    except FileNotFoundError:
        gen = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (60000, 1, 28, 28), dtype=torch.uint8, generator=gen)
        mean, std = NORMALIZATION["fashion_mnist"]
        data = ImageData(images, torch.zeros(60000, dtype=torch.long), ("x",), mean, std)
        source = "synthetic uint8 28x28 (Fashion-MNIST not found)"
    return BatchLoader(data, batch, 28, train=True, seed=0), source


def skip_large_batches(name: str, args: argparse.Namespace) -> bool:
    """Only ViT-B/16 in a full run measures the encoder at batches beyond the training batch."""
    return args.quick or name != "vit_b16"


def verdict(rng: dict[str, float]) -> str:
    """Ours against Hugging Face from the min, median and max over rounds of ours ÷ HF."""
    if rng["min"] > LEAD_MIN:
        return "lead"
    if rng["max"] < BEHIND_MAX:
        return "behind"
    if rng["min"] <= 1.0 <= rng["max"] or abs(rng["median"] - 1.0) <= LEVEL_BAND:
        return "level"
    return "narrow lead" if rng["median"] > 1.0 else "narrow deficit"


def run_config(name: str, cfg: Config, batch: int, args: argparse.Namespace, results: dict[str, Any]) -> None:
    full = args.all_impls or name in FULL_TREATMENT
    impl_names = [n for n in IMPLEMENTATIONS
                  if (full or n in MEDIUM_IMPLS) and (args.compile or n != "mae_lesson_compiled")]
    entry: dict[str, Any] = {"batch": batch, "config": cfg.to_dict(), "train_step_flops": train_step_flops(cfg, batch),
                             "full_treatment": full, "implementations": {}}
    results["configs"][name] = entry
    gh, gw = cfg.grid_size
    entry["tokens"] = {"L": gh * gw, "L_keep": num_kept(gh * gw, cfg.mask_ratio)}
    log(f"{name}: parity check, then building {', '.join(impl_names)}", stderr=True)
    entry["hf_parity_abs_loss_diff"] = parity_loss(cfg, DEVICE)

    impls = {}
    for impl_name in impl_names:
        impl = build_impl(impl_name, cfg, batch, DEVICE)
        warm_up(impl, args.warmup + (1 if impl_name.endswith("compiled") else 0), DEVICE)
        impls[impl_name] = impl
        log(f"  {impl_name}: " + (f"error {impl.error}" if impl.error else
                                  f"ready ({impl.setup_s + impl.extra.get('warmup_s', 0):.1f} s set-up + warm-up)"), stderr=True)

    fns: dict[str, Callable[[], Any]] = {n: i.step for n, i in impls.items() if not i.error}
    for n in args.matmul_sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        out = torch.empty(n, n)
        torch.mm(a, b, out=out)
        fns[f"matmul_{n}"] = lambda a=a, b=b, out=out: torch.mm(a, b, out=out)
    loader = None
    if name == LOADER_CONFIG:
        loader, source = make_loader(batch, args.quick)
        counter = itertools.count()
        loader.batch(0)
        fns["loader"] = lambda: loader.batch(next(counter) % len(loader))
        results["loader"] = {"config": name, "source": source, "batch": batch,
                             "augmentation": "random resized crop (0.2, 1) + flip + normalise"}

    rounds = {"fashion_mnist_tiny": args.rounds, "vit_b16": args.rounds_large}.get(name, args.rounds_medium)
    log(f"{name}: timing {rounds} interleaved rounds of {', '.join(fns)}", stderr=True)
    times = time_interleaved(fns, rounds, DEVICE)

    per_size = {n: [2 * n**3 / t for t in times.pop(f"matmul_{n}")] for n in args.matmul_sizes}
    for n, rates in per_size.items():
        results["matmul"].setdefault(str(n), []).extend(rates)
    entry["matmul_rate_per_round"] = [max(r) for r in zip(*per_size.values())]  # best size, each round
    if loader is not None:
        t = times.pop("loader")
        results["loader"].update(summary(t, batch))
        vs_model = ratio_spread(times["mae_lesson"], t) if "mae_lesson" in times else None
        results["loader"]["vs_model_paired"] = vs_model and vs_model["median"]
        results["loader"]["vs_model_spread"] = vs_model
    for impl_name, impl in impls.items():
        row: dict[str, Any] = {"label": LABELS[impl_name], "notes": impl.notes, "setup_s": impl.setup_s,
                               "warmup_s": impl.extra.get("warmup_s")}
        if impl.error:
            row["error"] = impl.error
        else:
            row.update(summary(times[impl_name], batch))
            # Achieved model FLOP/s over the matmul rate measured in the same round (side by side).
            same_round = spread([entry["train_step_flops"] / t / rate
                                 for t, rate in zip(times[impl_name], entry["matmul_rate_per_round"])])
            row["fraction_of_matmul_same_round"] = same_round["median"]
            row["fraction_of_matmul_same_round_spread"] = same_round
            row["times_s"] = times[impl_name]
            row["params"] = impl.extra["params"]
        entry["implementations"][impl_name] = row

    # The paper's claim: skipping mask tokens in the encoder. At ViT-B/16 also at a larger batch:
    # at batch 8 the visible-only GEMMs have only 8 * 50 = 400 rows and run far below peak.
    model = impls["mae_lesson"].model if not impls["mae_lesson"].error else None
    enc_batches = [batch] + ([] if skip_large_batches(name, args) else args.mask_token_batches)
    for enc_batch in (enc_batches if model is not None and full else []):
        imgs, noise = make_inputs(cfg, enc_batch, DEVICE)
        enc_fns = encoder_pass_fns(model, imgs, noise, cfg.mask_ratio)
        for fn in enc_fns.values():
            fn()
        enc_rounds = max(3, rounds // 2) if name != "fashion_mnist_tiny" else rounds
        log(f"{name}: mask-token experiment at batch {enc_batch}, {enc_rounds} rounds", stderr=True)
        enc_times = time_interleaved(enc_fns, enc_rounds, DEVICE)
        length, keep = entry["tokens"]["L"], entry["tokens"]["L_keep"]
        speedup = ratio_spread(enc_times["with_mask_tokens"], enc_times["visible_only"])
        results["mask_tokens"].append({
            "config": name, "batch": enc_batch, "tokens_all": 1 + length, "tokens_visible": 1 + keep,
            "with_mask_tokens": summary(enc_times["with_mask_tokens"], enc_batch),
            "visible_only": summary(enc_times["visible_only"], enc_batch),
            "speedup_paired": speedup["median"], "speedup_spread": speedup,
            "flop_ratio": encoder_flops(cfg, 1, 1 + length) / encoder_flops(cfg, 1, 1 + keep),
        })
        del enc_fns, imgs, noise
    if args.memory and full:
        for impl_name, impl in impls.items():
            if impl.error:
                continue
            log(f"  memory probe: {impl_name} (subprocess)", stderr=True)
            entry["implementations"][impl_name]["memory"] = measure_memory(impl_name, name, args.quick, args.threads)
    for impl in impls.values():  # free this configuration's models before the next
        impl.model = impl.step = None


# ----------------------------------------------------------------------------- report
def merge_into_previous(new: dict[str, Any], path: Path, rerun: list[str]) -> dict[str, Any]:
    """The previous results with the configurations in ``rerun`` replaced by ``new``'s."""
    if not path.is_file():
        raise FileNotFoundError(f"--update needs an earlier {path}; run without --update first")
    old = json.loads(path.read_text(encoding="utf-8"))
    if old["quick"] != new["quick"]:
        raise ValueError(f"--update cannot mix a {'quick' if new['quick'] else 'full'} run into {path}")
    for name in rerun:
        old["configs"][name] = new["configs"][name]
    order = CONFIG_NAMES + [n for n in old["configs"] if n not in CONFIG_NAMES]
    old["configs"] = {n: old["configs"][n] for n in order if n in old["configs"]}
    old["mask_tokens"] = [m for m in old["mask_tokens"] if m["config"] not in rerun] + new["mask_tokens"]
    if new["loader"]:
        old["loader"] = new["loader"]
    for size, rates in new["matmul"].items():  # the peak is the best over both runs
        old["matmul"].setdefault(size, []).extend(rates)
    old["command"] = f"{old['command']}` ({old['started']}), then `{new['command']}"
    old["started"] = new["started"]
    return old


def paired_ratios(entry: dict[str, Any]) -> None:
    """Ours (eager) ÷ each peer, and compiled ÷ HF: median and min/max over rounds, from the stored times."""
    rows = entry["implementations"]
    ours = rows.get("mae_lesson", {}).get("times_s")
    for impl_name, row in rows.items():
        if ours and impl_name != "mae_lesson" and row.get("times_s"):
            rng = ratio_spread(row["times_s"], ours)
            row["ours_speedup_paired"], row["ours_speedup_spread"] = rng["median"], rng
    compiled, hf = (rows.get(n, {}).get("times_s") for n in ("mae_lesson_compiled", "hf_sdpa"))
    if compiled and hf:
        rng = ratio_spread(hf, compiled)
        entry["compiled_vs_hf_paired"], entry["compiled_vs_hf_spread"] = rng["median"], rng


def finish(results: dict[str, Any]) -> None:
    """Peak, model FLOP utilisation, the paired ratios and the key ratios, from the raw timings."""
    peak = max(max(v) for v in results["matmul"].values())
    results["matmul_peak_flops"] = peak
    ratios = []
    for name, entry in results["configs"].items():
        flops = entry["train_step_flops"]
        for row in entry["implementations"].values():
            if "median_s" in row:
                row["achieved_flops"] = flops / row["median_s"]
                row["fraction_of_matmul_peak"] = row["achieved_flops"] / peak
        paired_ratios(entry)
    for name, num, den in KEY_RATIOS:
        entry = results["configs"].get(name)
        if not entry:
            continue
        rows = entry["implementations"]
        value = rng = None
        if num == "mae_lesson" and "ours_speedup_paired" in rows.get(den, {}):
            value, rng = rows[den]["ours_speedup_paired"], rows[den].get("ours_speedup_spread")
        elif num == "mae_lesson_compiled" and "compiled_vs_hf_paired" in entry:
            value, rng = entry["compiled_vs_hf_paired"], entry.get("compiled_vs_hf_spread")
        if num not in rows:
            continue  # not timed at this configuration (e.g. no --compile)
        ratios.append({"config": name, "what": f"{LABELS.get(num, num)} / {LABELS.get(den, den)} images/s",
                       "value": value, "spread": rng})
    vitb = results["configs"].get("vit_b16", {}).get("implementations", {}).get("mae_lesson", {})
    if "fraction_of_matmul_peak" in vitb:
        ratios.append({"config": "vit_b16", "what": "mae_lesson eager achieved FLOP/s / fp32 matmul rate of the same round",
                       "value": vitb["fraction_of_matmul_same_round"],
                       "spread": vitb.get("fraction_of_matmul_same_round_spread")})
        ratios.append({"config": "vit_b16", "what": "mae_lesson eager achieved FLOP/s / best fp32 matmul of the run",
                       "value": vitb["fraction_of_matmul_peak"], "spread": None})
    for m in results["mask_tokens"]:
        if m["config"] == "vit_b16":
            ratios.append({"config": "vit_b16", "what": f"encoder fwd+bwd at batch {m['batch']}: all tokens with "
                           f"mask tokens / visible only", "value": m["speedup_paired"],
                           "spread": m.get("speedup_spread")})
    loader = results.get("loader", {})
    if loader.get("vs_model_paired"):
        ratios.append({"config": loader.get("config", "fashion_mnist_tiny"),
                       "what": "BatchLoader images/s / mae_lesson eager training images/s",
                       "value": loader["vs_model_paired"], "spread": loader.get("vs_model_spread")})
    results["key_ratios"] = ratios


def bold_x(value: float, rng: dict[str, float] | None) -> str:
    """``**4.02x** (3.95-4.10)``: a speedup's median in bold, then its min-max over rounds."""
    text = f"**{fmt_spread(value)}x**"
    return f"{text} ({fmt_spread(rng['min'])}-{fmt_spread(rng['max'])})" if rng else text


def versus_hf_table(results: dict[str, Any]) -> str:
    """One row per configuration: its shape, ours and HF images/s, ours ÷ HF with spread and verdict."""
    rows = []
    for name, entry in results["configs"].items():
        cfg, tokens, impls = entry["config"], entry["tokens"], entry["implementations"]
        h, w = (cfg["img_size"], cfg["img_size"]) if isinstance(cfg["img_size"], int) else cfg["img_size"]
        ours, hf = impls.get("mae_lesson", {}), impls.get("hf_sdpa", {})
        rng = hf.get("ours_speedup_spread")
        rows.append([name, f"{h}x{w}x{cfg['in_chans']}", cfg["patch_size"],
                     f"{cfg['embed_dim']}x{cfg['encoder_depth']}",
                     f"{cfg['encoder_num_heads']}x{cfg['embed_dim'] // cfg['encoder_num_heads']}",
                     f"{1 + tokens['L_keep']} / {1 + tokens['L']}", entry["batch"],
                     fmt(ours.get("images_per_s"), 4), fmt(hf.get("images_per_s"), 4),
                     fmt_spread(hf.get("ours_speedup_paired"), rng), verdict(rng) if rng else "-"])
    header = ["config", "image", "patch", "encoder width x depth", "heads x head width", "tokens encoder / decoder",
              "batch", "ours images/s", "HF images/s", "ours ÷ HF: median (min-max over rounds)", "verdict"]
    return md_table(header, rows)


def to_markdown(results: dict[str, Any]) -> str:
    env, peak = results["env"], results["matmul_peak_flops"]
    out = [f"# Training-step benchmark (CPU{', --quick' if results['quick'] else ''})", "",
           f"Command: `{results['command']}`  ",
           f"Machine: {env['cpu']}, {env['threads']} torch threads; torch {env['torch']}, transformers "
           f"{env['transformers']}, vit-pytorch {env['vit_pytorch']}; {results['started']}.  ",
           "Step = zero_grad + forward + backward + AdamW.step (fp32). Implementations interleaved over rounds; "
           "ratios are medians of per-round ratios (side by side), followed by their min-max over rounds.", ""]
    sizes = ", ".join(f"{n}: {fmt(max(v) / 1e9, 4)} GFLOP/s" for n, v in results["matmul"].items())
    out += [f"**fp32 matmul peak** (torch.mm n x n, best of {sum(len(v) for v in results['matmul'].values())} "
            f"timed inside the rounds): **{fmt(peak / 1e9, 4)} GFLOP/s** ({sizes}).", ""]
    out += ["## Ours against Hugging Face at every configuration", "",
            (f"mae_lesson.MAE (eager) ÷ HF ViTMAEForPreTraining (sdpa), images/s, same weights and masks. Verdict "
             f"from the per-round ratios: lead if the smallest is above {LEAD_MIN}, behind if the largest is below "
             f"{BEHIND_MAX}, level if the range holds 1.0 or the median is within {LEVEL_BAND:.0%} of it, otherwise "
             f"a narrow lead (or deficit). Tokens: encoder 1 + L_keep, decoder 1 + L."), "",
            versus_hf_table(results), ""]
    for name, entry in results["configs"].items():
        cfg = entry["config"]
        heads = cfg["encoder_num_heads"]
        timed = "" if entry.get("full_treatment", True) else (
            " Timed: ours (eager) and HF only, no memory probe or mask-token experiment (`--all-impls` adds them).")
        out += [f"## {name}: {cfg['img_size']}px p{cfg['patch_size']} C{cfg['in_chans']}, encoder "
                f"{cfg['embed_dim']}x{cfg['encoder_depth']} ({heads} heads of {cfg['embed_dim'] // heads}), decoder "
                f"{cfg['decoder_embed_dim']}x{cfg['decoder_depth']}, batch {entry['batch']}, "
                f"L={entry['tokens']['L']} (keep {entry['tokens']['L_keep']})", "",
                f"Model FLOPs per training step: {fmt(entry['train_step_flops'] / 1e9, 4)} GFLOP. "
                f"|loss(ours) - loss(HF)| on the same weights and mask: {entry['hf_parity_abs_loss_diff']:.1e}.{timed}",
                ""]
        rows = []
        for impl_name, r in entry["implementations"].items():
            mem = r.get("memory", {})
            mem_s = fmt(mem["step_peak_delta_mb"], 4) if "step_peak_delta_mb" in mem else (
                "error" if "error" in mem else "not measured")
            if "error" in r:
                rows.append([r["label"], "failed", "-", "-", "-", "-", "-", mem_s, r["error"]])
                continue
            ratio = "1 (reference)" if impl_name == "mae_lesson" else fmt_spread(r.get("ours_speedup_paired"),
                                                                                 r.get("ours_speedup_spread"))
            rows.append([r["label"], fmt(r["median_s"] * 1e3, 4), fmt(r["min_s"] * 1e3, 4), fmt(r["max_s"] * 1e3, 4),
                         fmt(r["images_per_s"], 4), ratio,
                         f"{fmt(r['achieved_flops'] / 1e9, 3)} ({r['fraction_of_matmul_peak']:.0%} / "
                         f"{r['fraction_of_matmul_same_round']:.0%})", mem_s,
                         "; ".join(filter(None, [r["notes"], f"compile+warm-up {r['warmup_s']:.0f} s"
                                                 if impl_name.endswith("compiled") else ""]))])
        out += [md_table(["implementation", "median ms/step", "min", "max", "images/s",
                          "ours eager ÷ this (speed): median (min-max over rounds)",
                          "GFLOP/s (of best matmul / of same-round matmul)", "peak RSS Δ MB", "notes"], rows), ""]
    if results["mask_tokens"]:
        rows = [[m["config"], m["batch"], f"{m['tokens_all']} vs {m['tokens_visible']}",
                 fmt(m["with_mask_tokens"]["median_s"] * 1e3, 4), fmt(m["visible_only"]["median_s"] * 1e3, 4),
                 bold_x(m["speedup_paired"], m.get("speedup_spread")), f"{m['flop_ratio']:.2f}x"]
                for m in results["mask_tokens"]]
        out += ["## Encoder with mask tokens vs visible patches only (mask ratio 0.75, forward+backward)", "",
                md_table(["config", "batch", "tokens (all vs visible)", "with mask tokens ms", "visible only ms",
                          "speedup (min-max over rounds)", "matmul FLOP ratio"], rows), ""]
    if results.get("loader", {}).get("median_s"):
        ld = results["loader"]
        ld_config = ld.get("config", "fashion_mnist_tiny")
        model = results["configs"].get(ld_config, {}).get("implementations", {}).get("mae_lesson", {})
        out += [f"## Data loading ({ld_config}, timed in its rounds)", "",
                md_table(["pipeline", "median ms/batch", "images/s", "loader ÷ model (min-max over rounds)"],
                         [[f"BatchLoader, {ld['source']}, batch {ld['batch']}, {ld['augmentation']}",
                           fmt(ld["median_s"] * 1e3, 4), fmt(ld["images_per_s"], 4),
                           bold_x(ld["vs_model_paired"], ld.get("vs_model_spread"))],
                          [f"mae_lesson eager training step ({ld_config})", fmt(model.get("median_s", 0) * 1e3, 4),
                           fmt(model.get("images_per_s"), 4), "1"]]), ""]
    rows = [[t["config"], t["what"], fmt_spread(t["value"], t.get("spread"))] for t in results["key_ratios"]]
    out += ["## Key ratios", "", md_table(["config", "ratio", "value: median (min-max over rounds)"], rows), "",
            f"FLOP count: {FLOP_FORMULA}", "",
            "Memory: each implementation in its own process with glibc's mmap threshold fixed; peak RSS increase "
            "over two training steps after one warm-up step and zero_grad(set_to_none=True), i.e. activations, "
            "gradients and temporaries above weights and AdamW state.", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few rounds (smoke test)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="also time mae_lesson under torch.compile (default: on, off with --quick)")
    parser.add_argument("--memory", action=argparse.BooleanOptionalAction, default=None,
                        help="peak RSS per implementation in subprocesses (default: on, off with --quick)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds at the tiny config (default 15; quick 3)")
    parser.add_argument("--rounds-large", type=int, default=None, help="rounds at ViT-B/16 (default 6; quick 2)")
    parser.add_argument("--rounds-medium", type=int, default=None,
                        help="rounds at the other configurations (default 9; quick 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per implementation (default 2; quick 1)")
    parser.add_argument("--configs", nargs="+", default=CONFIG_NAMES, choices=CONFIG_NAMES, metavar="NAME",
                        help=f"configurations to run (default all: {', '.join(CONFIG_NAMES)})")
    parser.add_argument("--all-impls", action="store_true",
                        help="every implementation and measurement at every configuration (default: only at "
                             f"{' and '.join(FULL_TREATMENT)}; ours and HF elsewhere)")
    parser.add_argument("--mask-token-batches", type=int, nargs="*", default=None,
                        help="extra ViT-B/16 batches for the mask-token experiment (default 32)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default=None, help="folder for results_cpu.md/.json (default benchmarks/; "
                                                    "--quick writes nothing unless given)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the results already in the output folder (without it they are refused)")
    parser.add_argument("--update", action="store_true",
                        help="replace only the configs run now in the existing results_cpu.json (after a code change "
                             "that affects one configuration); both commands are recorded")
    parser.add_argument("--probe-memory", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--probe-config", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.probe_memory:
        print(json.dumps(probe_memory(args.probe_memory, args.probe_config, args.quick)))
        return 0

    q = args.quick
    args.compile = (not q) if args.compile is None else args.compile
    args.memory = (not q) if args.memory is None else args.memory
    args.rounds = args.rounds or (3 if q else 15)
    args.rounds_large = args.rounds_large or (2 if q else 6)
    args.rounds_medium = args.rounds_medium or (2 if q else 9)
    args.warmup = args.warmup or (1 if q else 2)
    args.matmul_sizes = [512, 1024] if q else [2048, 4096]
    args.mask_token_batches = args.mask_token_batches or [32]
    out_dir = Path(args.out) if args.out else (None if q else ROOT / "benchmarks")
    # --update merges into the results there, so it says to replace them.
    lock = claim_results(out_dir, RESULT_FILES, args.overwrite or args.update)
    try:
        return measure(args, argv, out_dir)
    finally:
        release_lock(lock)


def measure(args: argparse.Namespace, argv: list[str] | None, out_dir: Path | None) -> int:
    """Every selected configuration timed, the report printed and written to ``out_dir`` (None: printed only)."""
    q = args.quick
    torch.manual_seed(0)

    results: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.train_step", *(argv if argv is not None else sys.argv[1:])]),
        "quick": q, "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "env": environment(),
        "flop_formula": FLOP_FORMULA, "configs": {}, "matmul": {}, "mask_tokens": [], "loader": {},
    }
    t0 = time.perf_counter()
    for name, (cfg, batch) in configs(q).items():
        if name in args.configs:
            run_config(name, cfg, batch, args, results)
    if args.update:
        results = merge_into_previous(results, (out_dir or ROOT / "benchmarks") / "results_cpu.json", args.configs)
    finish(results)
    results["wall_s"] = time.perf_counter() - t0
    text = to_markdown(results) + f"\nWall time: {results['wall_s']:.0f} s.\n"
    print(text)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results_cpu.md").write_text(text, encoding="utf-8")
        (out_dir / "results_cpu.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
        log(f"wrote {out_dir / 'results_cpu.md'} and results_cpu.json", stderr=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
