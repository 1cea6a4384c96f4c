"""Processes and random states: joining torchrun's process group, agreeing on a stop, and the RNGs a resume restores."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..cli import check_device
from ..errors import RunError
from ..stopping import StopRequest
from ..utils import get_device


def init_distributed(device: str) -> tuple[int, int, torch.device]:
    """Join the torchrun process group when launched by torchrun; returns (rank, world, device)."""
    check_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, get_device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = get_device(device)
    if chosen.type == "cuda":
        torch.cuda.set_device(local_rank)
        chosen = torch.device("cuda", local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    return dist.get_rank(), world, chosen


def share_outcome(problem: str | None, rank: int, world: int) -> None:
    """Tell every process whether rank 0 could claim the folder, so none waits for a run that will not start."""
    if world == 1:
        return
    box = [problem]
    dist.broadcast_object_list(box, src=0)
    if rank != 0 and box[0]:
        raise RunError(box[0])


def stop_requested(stop: StopRequest, world: int, device: torch.device) -> bool:
    """Whether any process got a stop signal (all processes stop after the same step)."""
    requested = stop.signum is not None
    if world > 1:
        flag = torch.tensor([stop.signum or 0], device=device if device.type == "cuda" else "cpu")
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        # A signal handled just after the reduction (its handler runs when the call returns) is kept for the next.
        requested, stop.signum = bool(flag.item()), int(flag.item()) or stop.signum
    return requested


def rng_state() -> dict[str, Any]:
    """Every global RNG as plain data (loads with ``weights_only=True``)."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` recorded."""
    torch.set_rng_state(state["torch"])
    random.setstate((state["python"][0], tuple(state["python"][1]), state["python"][2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
