"""Memory of one training step: the peak RSS increase over two steps, each implementation in its own process.

glibc's mmap threshold is fixed so that freed tensors leave RSS. After one warm-up step and
``zero_grad(set_to_none=True)`` (weights and AdamW state resident), the peak RSS increase over two
more training steps is what the step itself needs: activations, gradients and temporaries. Linux
only (``/proc/self``). ``benchmarks.train_step`` calls ``measure``, which runs this module::

    python -m benchmarks.memory mae_lesson fashion_mnist_tiny [--quick] [--threads 2]   # one JSON line
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Any

import torch

from benchmarks.common import ROOT, build_impl, configs, warm_up

DEVICE = torch.device("cpu")


@dataclass
class MemoryResult:
    """One implementation at one configuration, in MB."""

    baseline_rss_mb: float  # after warm-up and zero_grad: weights and AdamW state
    peak_rss_mb: float
    step_peak_delta_mb: float  # peak - baseline over two training steps
    method: str  # how the peak was read


def _proc_status_kb(key: str) -> int:
    with open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def probe(impl_name: str, config_name: str, quick: bool) -> dict[str, Any]:
    """In this (fresh) process: ``MemoryResult`` as a dict, or ``{"error": ...}`` if the step fails."""
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
    return asdict(MemoryResult(base_kb / 1024, peak_kb / 1024, (peak_kb - base_kb) / 1024, method))


def measure(impl_name: str, config_name: str, quick: bool, threads: int) -> dict[str, Any]:
    """``probe`` in a subprocess (so that no other model's memory is counted); errors as ``{"error": ...}``."""
    cmd = [sys.executable, "-m", "benchmarks.memory", impl_name, config_name, "--threads", str(threads)] + (
        ["--quick"] if quick else [])
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "PYTHONWARNINGS": "ignore"}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=str(ROOT))
    except subprocess.TimeoutExpired:
        return {"error": "memory probe timed out"}
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode or not lines:
        return {"error": f"probe exited {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("implementation")
    parser.add_argument("config")
    parser.add_argument("--quick", action="store_true", help="the --quick sizes of benchmarks.train_step")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(json.dumps(probe(args.implementation, args.config, args.quick)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
