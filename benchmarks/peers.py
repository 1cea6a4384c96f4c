"""Ours against its peers at one configuration: one training step of each implementation, interleaved.

One training step = ``zero_grad``, forward (loss), backward, ``AdamW.step()``, on fixed inputs
(``common.build_impl``). Implementations, built at the same dimensions:

- ``mae_lesson.MAE``, eager and under ``torch.compile``;
- Hugging Face ``ViTMAEForPreTraining`` (``attn_implementation="sdpa"``), made by
  ``mae_lesson.interop.to_hf`` so it has the same weights, and fed the same mask noise;
- ``vit_pytorch.mae.MAE`` with a ``ViT(pool='cls')`` encoder (vit-pytorch 1.26 raises a shape
  error at forward: reported with its error) and with ``pool='mean'`` (runs; its own design:
  no cls token, patch LayerNorms, explicit softmax attention, pixels predicted for masked
  patches only, and its own mask draw).

Every round also times ``torch.mm`` of two n x n matrices (the machine's fp32 matmul rate, 2*n^3
FLOPs) and, at the default model, one batch of the loader (``benchmarks.loader``), so that a
change in machine load hits them all alike (``common.time_interleaved``). A peer's row keeps its
raw seconds per round; the ratios are computed from them (``benchmarks.train_step_report``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch

from benchmarks import loader as loader_study
from benchmarks.common import (
    LABELS, Config, build_impl, parity_loss, spread, summary, time_interleaved, train_step_flops, warm_up,
)
from mae_lesson.masking import num_kept
from mae_lesson.utils import log


@dataclass
class ImplRow:
    """One implementation at one configuration: its set-up, and its step times unless it failed."""

    label: str
    notes: str
    setup_s: float
    warmup_s: float | None
    error: str | None = None
    median_s: float | None = None  # common.summary of the seconds per step
    min_s: float | None = None
    max_s: float | None = None
    rounds: int | None = None
    images_per_s: float | None = None
    # achieved model FLOP/s over the matmul rate measured in the same round: median, and min-max
    fraction_of_matmul_same_round: float | None = None
    fraction_of_matmul_same_round_spread: dict[str, float] | None = None
    times_s: list[float] | None = None
    params: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The row as the results file stores it: without the fields a failed row has no value for."""
        return {k: v for k, v in asdict(self).items() if v is not None or k == "warmup_s"}


@dataclass
class ConfigResult:
    """One configuration: its shape, the parity check, and a row per implementation."""

    batch: int
    config: dict[str, Any]
    train_step_flops: float
    full_treatment: bool  # every implementation and study, or ours and HF only
    implementations: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> ImplRow.to_json()
    tokens: dict[str, int] = field(default_factory=dict)  # L and L_keep
    hf_parity_abs_loss_diff: float = float("nan")  # |loss(ours) - loss(HF)| on the same weights and mask
    matmul_rate_per_round: list[float] = field(default_factory=list)  # best size's FLOP/s, each round


@dataclass
class PeersRun:
    """What one configuration's rounds measured: its result, each matmul size's rates, the loader's record."""

    result: ConfigResult
    matmul: dict[int, list[float]]
    loader: loader_study.LoaderResult | None


def matmul_fns(sizes: list[int]) -> dict[str, Callable[[], Any]]:
    """``torch.mm`` of two ``n x n`` matrices per size, warmed up, to time inside the rounds."""
    fns = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        out = torch.empty(n, n)
        torch.mm(a, b, out=out)
        fns[f"matmul_{n}"] = lambda a=a, b=b, out=out: torch.mm(a, b, out=out)
    return fns


def measure(name: str, cfg: Config, batch: int, impl_names: list[str], *, full: bool, rounds: int, warmup: int,
            matmul_sizes: list[int], with_loader: bool, device: torch.device) -> PeersRun:
    """Build and warm up ``impl_names`` at ``cfg``, then time their steps for ``rounds`` interleaved rounds."""
    gh, gw = cfg.grid_size
    result = ConfigResult(batch=batch, config=cfg.to_dict(), train_step_flops=train_step_flops(cfg, batch),
                          full_treatment=full, tokens={"L": gh * gw, "L_keep": num_kept(gh * gw, cfg.mask_ratio)})
    log(f"{name}: parity check, then building {', '.join(impl_names)}", stderr=True)
    result.hf_parity_abs_loss_diff = parity_loss(cfg, device)
    impls = {}
    for impl_name in impl_names:
        impl = build_impl(impl_name, cfg, batch, device)
        warm_up(impl, warmup + (1 if impl_name.endswith("compiled") else 0), device)
        impls[impl_name] = impl
        log(f"  {impl_name}: " + (f"error {impl.error}" if impl.error else
                                  f"ready ({impl.setup_s + impl.extra.get('warmup_s', 0):.1f} s set-up + warm-up)"),
            stderr=True)

    fns: dict[str, Callable[[], Any]] = {n: i.step for n, i in impls.items() if not i.error}
    fns.update(matmul_fns(matmul_sizes))
    loader = source = None
    if with_loader:
        loader, source = loader_study.make_loader(batch)
        fns["loader"] = loader_study.next_batch_fn(loader)
    log(f"{name}: timing {rounds} interleaved rounds of {', '.join(fns)}", stderr=True)
    times = time_interleaved(fns, rounds, device)

    per_size = {n: [2 * n**3 / t for t in times.pop(f"matmul_{n}")] for n in matmul_sizes}
    result.matmul_rate_per_round = [max(r) for r in zip(*per_size.values())]
    loader_result = None
    if loader is not None:
        loader_result = loader_study.result(name, source, batch, times.pop("loader"), times.get("mae_lesson"))
    for impl_name, impl in impls.items():
        row = ImplRow(label=LABELS[impl_name], notes=impl.notes, setup_s=impl.setup_s,
                      warmup_s=impl.extra.get("warmup_s"), error=impl.error)
        if not impl.error:
            for key, value in summary(times[impl_name], batch).items():
                setattr(row, key, value)
            same_round = spread([result.train_step_flops / t / rate
                                 for t, rate in zip(times[impl_name], result.matmul_rate_per_round)])
            row.fraction_of_matmul_same_round = same_round["median"]
            row.fraction_of_matmul_same_round_spread = same_round
            row.times_s = times[impl_name]
            row.params = impl.extra["params"]
        result.implementations[impl_name] = row.to_json()
        impl.model = impl.step = None  # free this configuration's models before the next
    return PeersRun(result, per_size, loader_result)
