"""Small helpers every notebook and script uses: seeding, device choice and progress lines."""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def set_seed(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch (CPU and every GPU) so runs can be compared."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


def get_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu; anything else is passed to ``torch.device``."""
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for this device type (torch < 2.4 only answers for CUDA and CPU)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:
        return torch.is_autocast_enabled() if device_type == "cuda" else torch.is_autocast_cpu_enabled()


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer (CPU for a model with neither)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextmanager
def on_device(model: torch.nn.Module, device: str | torch.device) -> Iterator[torch.nn.Module]:
    """Run a block with ``model`` on ``device`` in eval mode; afterwards the model is back where it was.

    A package function must not leave the caller's model on another device: the caller's next
    cell would feed it tensors from the old one.
    """
    home, was_training = model_device(model), model.training
    model.eval().to(device)
    try:
        yield model
    finally:
        model.to(home).train(was_training)


def quick_mode() -> bool:
    """True when ``MAE_LESSON_QUICK=1``: notebooks and tests shrink their step budgets."""
    return os.environ.get("MAE_LESSON_QUICK", "0") not in ("", "0", "false", "False")


def log(message: str, *, stderr: bool = False) -> None:
    """Print ``[HH:MM:SS] message`` at once (flushed): the progress line of the long-running scripts.

    ``stderr=True`` keeps stdout for a script's report (the benchmarks print their tables there).
    """
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr if stderr else sys.stdout, flush=True)
