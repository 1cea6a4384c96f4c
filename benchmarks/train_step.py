"""Training-step benchmark on CPU: mae_lesson.MAE against Hugging Face and vit-pytorch, and what limits it.

One command runs four studies, each a module of this package with its own typed record, at every
configuration, and writes ``benchmarks/results_cpu.{md,json}``:

- ``benchmarks.peers``: one training step (fp32) of ours (eager and ``torch.compile``, ``--compile``,
  default on for full runs), Hugging Face and vit-pytorch at the same dimensions, with the machine's
  fp32 matmul rate (n = 2048 and 4096) timed in the same rounds;
- ``benchmarks.mask_tokens``: the paper's efficiency claim, the encoder on every token with mask tokens
  against visible tokens only, at the configuration's batch and, for ViT-B/16, also at batch 32
  (``--mask-token-batches``): at batch 8 the visible-only matmuls have only 400 rows;
- ``benchmarks.loader``: ``BatchLoader`` against the default model's (``fashion_mnist_p7``) training step;
- ``benchmarks.memory``: the peak RSS increase of a training step, each implementation in its own
  process. Full runs only (``--memory`` forces it with ``--quick``).

``benchmarks.train_step_report`` turns the results into ratios, verdicts and the Markdown report.
Timing: the functions of a study are interleaved over rounds (``common.time_interleaved``: each round
runs every one once, in a rotated order), so changes in machine load hit them alike.

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

Cost: ``fashion_mnist_tiny`` and ``vit_b16`` get every study above. The other five time
ours (eager) and Hugging Face only, over ``--rounds-medium`` rounds, with no torch.compile, no
vit-pytorch, no memory probe and no mask-token experiment; ``--all-impls`` gives them the full
treatment too.

Usage::

    python -m benchmarks.train_step --overwrite     # full run, replaces benchmarks/results_cpu.{md,json}
    python -m benchmarks.train_step --quick --out /tmp/bench   # smoke run (under a minute)
    python -m benchmarks.train_step --configs vit_tiny_28 vit_tiny_32 --update   # rerun two, keep the rest
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from benchmarks import mask_tokens, memory, peers
from benchmarks.common import (
    CONFIG_NAMES, FLOP_FORMULA, IMPLEMENTATIONS, ROOT, Config, claim_results, configs, environment, release_lock,
)
from benchmarks.train_step_report import finish, to_markdown
from mae_lesson.utils import log

DEVICE = torch.device("cpu")
RESULT_FILES = ("results_cpu.md", "results_cpu.json")
# Every measurement at these; ours (eager) and Hugging Face only at the others, unless --all-impls.
FULL_TREATMENT = ("fashion_mnist_tiny", "vit_b16")
MEDIUM_IMPLS = ("mae_lesson", "hf_sdpa")
LOADER_CONFIG = "fashion_mnist_p7"  # the loader is compared with the default model's training step


def skip_large_batches(name: str, args: argparse.Namespace) -> bool:
    """Only ViT-B/16 in a full run measures the encoder at batches beyond the training batch."""
    return args.quick or name != "vit_b16"


def run_config(name: str, cfg: Config, batch: int, args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Every study at one configuration, its records stored in ``results`` as the results file holds them."""
    full = args.all_impls or name in FULL_TREATMENT
    impl_names = [n for n in IMPLEMENTATIONS
                  if (full or n in MEDIUM_IMPLS) and (args.compile or n != "mae_lesson_compiled")]
    rounds = {"fashion_mnist_tiny": args.rounds, "vit_b16": args.rounds_large}.get(name, args.rounds_medium)
    run = peers.measure(name, cfg, batch, impl_names, full=full, rounds=rounds, warmup=args.warmup,
                        matmul_sizes=args.matmul_sizes, with_loader=name == LOADER_CONFIG, device=DEVICE)
    entry = results["configs"][name] = asdict(run.result)
    for n, rates in run.matmul.items():
        results["matmul"].setdefault(str(n), []).extend(rates)
    if run.loader is not None:
        results["loader"] = asdict(run.loader)

    enc_batches = [batch] + ([] if skip_large_batches(name, args) else args.mask_token_batches)
    for enc_batch in (enc_batches if full else []):
        enc_rounds = max(3, rounds // 2) if name != "fashion_mnist_tiny" else rounds
        log(f"{name}: mask-token experiment at batch {enc_batch}, {enc_rounds} rounds", stderr=True)
        results["mask_tokens"].append(asdict(mask_tokens.measure(name, cfg, enc_batch, enc_rounds, DEVICE)))
    if args.memory and full:
        for impl_name, row in entry["implementations"].items():
            if "error" not in row:
                log(f"  memory probe: {impl_name} (subprocess)", stderr=True)
                row["memory"] = memory.measure(impl_name, name, args.quick, args.threads)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train_step", description=__doc__.split("\n\n")[0],
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
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

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
