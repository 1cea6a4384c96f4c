"""Where a training step spends its time: torch.profiler over ours and Hugging Face, side by side.

Prints the top operators by self CPU time for each implementation at one configuration, so a
missed speed target can be explained by the operator that takes the time.

    python -m benchmarks.profile_step                       # tiny config, batch 256
    python -m benchmarks.profile_step --config vit_tiny_28  # a ViT-Tiny shape: heads of 64
    python -m benchmarks.profile_step --config vit_b16 --steps 2

``--config`` takes any configuration of ``benchmarks.train_step`` (``common.FULL_CONFIGS``), at its batch.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import CONFIG_NAMES, build_impl, configs, warm_up


def profile_impl(name: str, config: str, steps: int, rows: int, batch: int | None) -> str:
    """Top ``rows`` operators by self CPU time over ``steps`` training steps of one implementation."""
    cfg, default_batch = configs(False)[config]
    impl = build_impl(name, cfg, batch or default_batch, torch.device("cpu"))
    if impl.error:
        return f"{name}: {impl.error}"
    warm_up(impl, 2, torch.device("cpu"))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            impl.step()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=48)
    return f"## {name} ({config}, batch {batch or default_batch}, {steps} steps)\n{table}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="fashion_mnist_tiny", choices=CONFIG_NAMES)
    parser.add_argument("--impls", nargs="+", default=["mae_lesson", "hf_sdpa"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--rows", type=int, default=18)
    parser.add_argument("--out", default=None, help="also append the tables to this markdown file")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    command = "python -m benchmarks.profile_step " + " ".join(argv if argv is not None else sys.argv[1:])
    parts = [f"Command: `{command.strip()}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"{torch.get_num_threads()} threads)\n"]
    for name in args.impls:
        parts.append(profile_impl(name, args.config, args.steps, args.rows, args.batch))
        print(parts[-1], flush=True)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as handle:
            handle.write("\n".join(p if p.startswith("Command") else f"```\n{p}\n```\n" for p in parts) + "\n")


if __name__ == "__main__":
    main()
