"""What a notebook's first code cell imports: the environment report.

The set-up cell itself (cloning and installing the course on Colab) is written into every notebook
by ``python -m tools.notebooks``, with the other maintainer tools for notebook files.
"""

from __future__ import annotations

import platform
import sys

import torch

from .utils import get_device, quick_mode


def environment_report() -> torch.device:
    """Print versions, device and mode; on a CPU-only Colab say how to enable the GPU."""
    device = get_device("auto")
    print(f"python {platform.python_version()}, torch {torch.__version__}, device: {device}")
    print(f"mode: {'quick (MAE_LESSON_QUICK=1)' if quick_mode() else 'full'}")
    if device.type == "cpu" and "google.colab" in sys.modules:
        print("Tip: Runtime > Change runtime type > GPU makes training cells much faster.")
    return device
