"""Shared pieces of the training-step benchmarks: configs, FLOP count, implementations, timing.

Used by ``train_step.py`` (CPU, fp32) and ``gpu_train_step.py`` (CUDA, bf16). Glossary as the
course: N batch, L patches, L_keep = int(L * (1 - mask_ratio)) visible patches, D encoder width,
Dd decoder width, p patch size, C channels, r mlp_ratio.
"""

from __future__ import annotations

import os
import statistics
import time
import traceback
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from mae_lesson import MAE, Config
from mae_lesson.errors import command_line_errors
from mae_lesson.flops import FLOP_FORMULA, encoder_flops, train_step_flops  # noqa: F401 - the scripts import them from here
from mae_lesson.runfolder import FolderLock, claim_results_folder, release_lock  # noqa: F401 - the scripts release

ROOT = Path(__file__).resolve().parents[1]


def claim_results(out_dir: Path | None, names: tuple[str, ...], overwrite: bool) -> FolderLock | None:
    """Lock ``out_dir`` before anything is measured, and refuse one that holds ``names`` unless ``overwrite``
    (``error: ...`` and exit 2). The old files stay until the new ones replace them at the end, so a failed
    or stopped benchmark keeps them; nothing else in the folder is touched. ``None``: nothing to write."""
    if out_dir is None:
        return None
    with command_line_errors():
        return claim_results_folder(out_dir, names, overwrite, delete=False)

# ----------------------------------------------------------------------------- configs
def _vit(img: int, chans: int, dim: int, depth: int, heads: int, dec_dim: int = 128, dec_depth: int = 2,
         dec_heads: int = 4) -> Config:
    """A patch-4 MAE at ``img x img x chans`` (mlp_ratio 4, mask ratio 0.75, plain pixel loss)."""
    return Config(img_size=img, patch_size=4, in_chans=chans, embed_dim=dim, encoder_depth=depth,
                  encoder_num_heads=heads, decoder_embed_dim=dec_dim, decoder_depth=dec_depth,
                  decoder_num_heads=dec_heads, mlp_ratio=4.0, mask_ratio=0.75, norm_pix_loss=False)


# name -> (config, batch): the measured sizes; --quick shrinks each. The ViT-Tiny/Small shapes have
# the 64-wide heads of every standard ViT (Tiny: 192 = 3 x 64, Small: 384 = 6 x 64).
FULL_CONFIGS: dict[str, tuple[Config, int]] = {
    "fashion_mnist_p7": (Config.from_file("fashion_mnist_p7"), 256),  # the course's default CPU model
    "fashion_mnist_tiny": (Config.from_file("fashion_mnist_tiny"), 256),
    "vit_tiny_28": (_vit(28, 1, 192, 6, 3), 128),
    "vit_small_28": (_vit(28, 1, 384, 6, 6), 128),
    "vit_tiny_32": (Config.from_file("cifar_tiny"), 128),
    "vit_small_32": (_vit(32, 3, 384, 6, 6), 128),
    "vit_b16": (Config.from_file("mae_base"), 8),
}
QUICK_CONFIGS: dict[str, tuple[Config, int]] = {
    "fashion_mnist_p7": (Config.from_file("fashion_mnist_p7"), 32),
    "fashion_mnist_tiny": (Config.from_file("fashion_mnist_tiny"), 32),
    # Toy sizes that keep each shape's image, patch and 64-wide heads: 2+1 blocks.
    "vit_tiny_28": (_vit(28, 1, 128, 2, 2, 64, 1, 2), 8),
    "vit_small_28": (_vit(28, 1, 192, 2, 3, 64, 1, 2), 8),
    "vit_tiny_32": (Config.from_file("cifar_tiny").replace(encoder_depth=2, decoder_depth=1), 8),
    "vit_small_32": (_vit(32, 3, 256, 2, 4, 64, 1, 2), 8),
    # A ViT-B/16-shaped model at toy size: 64x64 RGB, 16 patches, 2+1 blocks.
    "vit_b16": (Config(img_size=64, patch_size=16, in_chans=3, embed_dim=96, encoder_depth=2, encoder_num_heads=4,
                       decoder_embed_dim=64, decoder_depth=1, decoder_num_heads=4), 4),
}
CONFIG_NAMES = list(FULL_CONFIGS)


def configs(quick: bool) -> dict[str, tuple[Config, int]]:
    return QUICK_CONFIGS if quick else FULL_CONFIGS


# ----------------------------------------------------------------------------- devices
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(n: int, dtype: torch.dtype, device: torch.device, repeats: int = 1) -> float:
    """FLOP/s of the best of ``repeats`` ``torch.mm`` of two ``n x n`` matrices (2*n^3 FLOPs each)."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device, dtype)
    b = torch.randn(n, n, generator=gen).to(device, dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    torch.mm(a, b, out=out)  # warm-up (library init, page faults)
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


# ----------------------------------------------------------------------------- implementations
IMPLEMENTATIONS = ("mae_lesson", "mae_lesson_compiled", "hf_sdpa", "vit_pytorch_cls", "vit_pytorch_mean")
LABELS = {
    "mae_lesson": "mae_lesson.MAE (eager)",
    "mae_lesson_compiled": "mae_lesson.MAE (torch.compile)",
    "hf_sdpa": "HF ViTMAEForPreTraining (sdpa)",
    "vit_pytorch_cls": "vit_pytorch.mae.MAE (ViT pool='cls')",
    "vit_pytorch_mean": "vit_pytorch.mae.MAE (ViT pool='mean')",
}


@dataclass
class Impl:
    """One implementation ready to train: ``step()`` runs zero_grad, forward, backward, AdamW."""

    name: str
    step: Callable[[], float] | None = None
    model: torch.nn.Module | None = None
    error: str | None = None
    setup_s: float = 0.0  # build (+ compile, for the compiled variant: its first steps)
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def make_inputs(cfg: Config, batch: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed images ``[N, C, H, W]`` and masking noise ``[N, L]`` (same mask for ours and HF)."""
    gen = torch.Generator().manual_seed(seed)
    h, w = (cfg.img_size, cfg.img_size) if isinstance(cfg.img_size, int) else cfg.img_size
    imgs = torch.randn(batch, cfg.in_chans, h, w, generator=gen)
    noise = torch.rand(batch, cfg.grid_size[0] * cfg.grid_size[1], generator=gen)
    return imgs.to(device), noise.to(device)


def _vit_pytorch(cfg: Config, pool: str) -> torch.nn.Module:
    """vit-pytorch's MAE at our dimensions (its own design: no cls in the MAE path, patch LayerNorms,
    explicit softmax attention, a final encoder norm, pixels predicted for masked patches only)."""
    from vit_pytorch import ViT
    from vit_pytorch.mae import MAE as VitPytorchMAE

    encoder = ViT(image_size=cfg.img_size, patch_size=cfg.patch_size, num_classes=0, dim=cfg.embed_dim,
                  depth=cfg.encoder_depth, heads=cfg.encoder_num_heads, dim_head=cfg.embed_dim // cfg.encoder_num_heads,
                  mlp_dim=int(cfg.embed_dim * cfg.mlp_ratio), pool=pool, channels=cfg.in_chans)
    return VitPytorchMAE(encoder=encoder, decoder_dim=cfg.decoder_embed_dim, masking_ratio=cfg.mask_ratio,
                         decoder_depth=cfg.decoder_depth, decoder_heads=cfg.decoder_num_heads,
                         decoder_dim_head=cfg.decoder_embed_dim // cfg.decoder_num_heads)


def build_impl(name: str, cfg: Config, batch: int, device: torch.device, *, amp_dtype: torch.dtype | None = None,
               fused_adamw: bool = False, seed: int = 0, compile_mode: str | None = None) -> Impl:
    """Build ``name`` (one of ``IMPLEMENTATIONS``) with an AdamW optimiser and fixed inputs.

    Every implementation gets the same optimiser (AdamW, lr 1.5e-4 * N / 256, betas (0.9, 0.95),
    weight decay 0.05 on every trainable tensor), the same images, and (ours and HF) the same
    mask noise and weights. Errors at build time or at the first step are returned in ``error``.
    """
    impl = Impl(name)
    t0 = time.perf_counter()
    try:
        imgs, noise = make_inputs(cfg, batch, device, seed)
        torch.manual_seed(seed)
        if name in ("mae_lesson", "mae_lesson_compiled", "hf_sdpa"):
            ours = MAE(cfg).to(device).train()
            if name == "hf_sdpa":
                from mae_lesson.interop import to_hf

                model = to_hf(ours.cpu()).to(device).train()
                model.set_attn_implementation("sdpa")
                impl.notes = f"attn_implementation={model.config._attn_implementation}"
                del ours

                def forward() -> torch.Tensor:
                    return model(pixel_values=imgs, noise=noise).loss
            else:
                model = ours
                fn = torch.compile(model, **({"mode": compile_mode} if compile_mode else {})) \
                    if name == "mae_lesson_compiled" else model

                def forward() -> torch.Tensor:
                    return fn(imgs, noise=noise)["loss"]
        elif name in ("vit_pytorch_cls", "vit_pytorch_mean"):
            model = _vit_pytorch(cfg, "cls" if name.endswith("cls") else "mean").to(device).train()
            impl.notes = "own mask draw; no cls token in its MAE path"

            def forward() -> torch.Tensor:
                return model(imgs)
        else:
            raise ValueError(f"unknown implementation {name!r}; choose from {', '.join(IMPLEMENTATIONS)}")
        params = [p for p in model.parameters() if p.requires_grad]
        lr = 1.5e-4 * batch / 256
        opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.05,
                                **({"fused": True} if fused_adamw else {}))
        autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()

        def step() -> float:
            opt.zero_grad(set_to_none=True)
            with autocast:
                loss = forward()
            loss.backward()
            opt.step()
            return loss

        impl.model, impl.step = model, step
        impl.extra["params"] = sum(p.numel() for p in params)
    except Exception as exc:  # a peer that cannot be built is reported, not dropped
        impl.error = _short_error(exc)
    impl.setup_s = time.perf_counter() - t0
    return impl


def _short_error(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {Path(last.filename).name}:{last.lineno})" if last else ""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}{where}"


def warm_up(impl: Impl, steps: int, device: torch.device) -> None:
    """Run ``steps`` untimed steps (the first step allocates AdamW state; compiled: compiles)."""
    if impl.error:
        return
    t0 = time.perf_counter()
    try:
        for _ in range(steps):
            loss = impl.step()
        sync(device)
        if not torch.isfinite(loss.detach()).all():
            raise FloatingPointError(f"loss is {float(loss.detach())}")
    except Exception as exc:
        impl.error = _short_error(exc)
        impl.step = None
    impl.extra["warmup_s"] = time.perf_counter() - t0


def time_interleaved(fns: dict[str, Callable[[], Any]], rounds: int, device: torch.device,
                     deadline: float | None = None) -> dict[str, list[float]]:
    """Seconds per call of every function, interleaved: round r runs each once, in an order
    rotated by r, so slow drifts in machine load hit every implementation alike.
    Stops early (keeping whole rounds) at ``deadline`` (a ``time.perf_counter`` value)."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        if deadline is not None and r > 0 and time.perf_counter() > deadline:
            break
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            sync(device)
            t0 = time.perf_counter()
            fns[n]()
            sync(device)
            times[n].append(time.perf_counter() - t0)
    return times


def summary(times: list[float], batch: int) -> dict[str, float]:
    med = statistics.median(times)
    return {"median_s": med, "min_s": min(times), "max_s": max(times), "rounds": len(times),
            "images_per_s": batch / med}


def spread(per_round: list[float]) -> dict[str, float]:
    """Median, min and max of a quantity measured once per round."""
    return {"median": statistics.median(per_round), "min": min(per_round), "max": max(per_round)}


def ratio_spread(slow: list[float], fast: list[float]) -> dict[str, float]:
    """``spread`` of the per-round ratios ``slow[r] / fast[r]``: a speed ratio measured side by side."""
    return spread([s / f for s, f in zip(slow, fast)])


def paired_ratio(slow: list[float], fast: list[float]) -> float:
    """Median over rounds of ``slow[r] / fast[r]``: a speed ratio measured side by side."""
    return ratio_spread(slow, fast)["median"]


def parity_loss(cfg: Config, device: torch.device) -> float:
    """|loss(ours) - loss(HF)| on the same weights, images and mask (checks both do the same work)."""
    from mae_lesson.interop import to_hf

    torch.manual_seed(0)
    ours = MAE(cfg).to(device).eval()
    hf = to_hf(ours.cpu()).to(device).eval()
    ours.to(device)
    imgs, noise = make_inputs(cfg, 4, device, seed=1)
    with torch.no_grad():
        return abs(float(ours(imgs, noise=noise)["loss"]) - float(hf(pixel_values=imgs, noise=noise).loss))


# ----------------------------------------------------------------------------- formatting
def fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def fmt_ratio(x: float) -> str:
    return f"{x:.2f}" if abs(x) < 10 else fmt(x)


def fmt_spread(value: float | None, rng: dict[str, float] | None = None) -> str:
    """``1.19 (1.12-1.25)``: the median and, when known, the min-max over rounds."""
    if value is None:
        return "-"
    if not rng:
        return fmt_ratio(value)
    return f"{fmt_ratio(value)} ({fmt_ratio(rng['min'])}-{fmt_ratio(rng['max'])})"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    import platform

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "threads": torch.get_num_threads(), "cpu": _cpu_name(), "cpus": os.cpu_count()}
    from importlib import metadata

    for mod, dist in (("transformers", "transformers"), ("vit_pytorch", "vit-pytorch")):
        try:
            info[mod] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[mod] = "not installed"
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"
