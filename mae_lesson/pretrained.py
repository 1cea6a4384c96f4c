"""The small checkpoints the course ships in ``data/``, loaded by name."""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import atomic_save, safe_load
from .model import MAE

# Shipped checkpoints live in the repository's data/ folder (next to the package).
DATA_DIR = Path(__file__).resolve().parent.parent / "data"
# The default CPU config pretrained for 150 epochs (data/README.md); "mae_fashion_mnist_p7" is the same
# config at 50 epochs (the main job's schedule) and "mae_fashion_mnist_tiny" (patch 4) the notebooks' picture model.
DEFAULT_PRETRAINED = "mae_fashion_mnist_p7_e150"


def available_pretrained(data_dir: str | Path = DATA_DIR) -> list[str]:
    """Names of shipped checkpoints (``data/<name>.pt``)."""
    return sorted(p.stem for p in Path(data_dir).glob("mae_*.pt"))


def pretrained_path(name: str = DEFAULT_PRETRAINED, data_dir: str | Path = DATA_DIR) -> Path:
    """Where a shipped checkpoint lives: ``<data_dir>/<name>.pt`` (it may not exist)."""
    return Path(data_dir) / f"{name}.pt"


def load_pretrained(name: str = DEFAULT_PRETRAINED, data_dir: str | Path = DATA_DIR,
                    map_location: str | torch.device = "cpu") -> MAE:
    """A shipped pretrained ``MAE`` in eval mode (fp32), e.g. ``load_pretrained()``.

    Its ``config`` records ``norm_mean``/``norm_std``: normalise inputs with them.
    """
    path = pretrained_path(name, data_dir)
    if not path.is_file():
        raise FileNotFoundError(
            f"No shipped checkpoint {name!r} in {data_dir}; available: {', '.join(available_pretrained(data_dir)) or 'none'}. "
            f"Clone the whole repository (the checkpoints live in data/) or train one with python -m mae_lesson.pretrain"
        )
    return MAE.from_checkpoint(path, map_location=map_location).float().eval()


def export_pretrained(run_checkpoint: str | Path, dest: str | Path, half: bool = True) -> Path:
    """Write a run's ``model.pt`` as a small shippable file (fp16 weights, config, run facts).

    The config's ``model_name`` becomes the file's stem, the name ``load_pretrained`` knows it by.
    """
    ckpt = safe_load(run_checkpoint)
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in ckpt["model"].items()}
    extra = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer", "scheduler", "scaler", "rng")}
    if "config" in extra:
        extra["config"] = {**extra["config"], "model_name": Path(dest).stem}
    atomic_save({**extra, "model": state}, dest)
    return Path(dest)
