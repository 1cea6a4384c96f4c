"""A run folder that nothing destroys by accident: checked paths, one run at a time, no leftovers.

A fresh run into a folder that already holds a run is refused unless it says ``resume`` or
``overwrite``; a running run holds ``.lock`` (an OS lock for its life, and its process id and host
inside), so a second run into the same folder is refused, even one started at the same moment, while
the lock of a run that was killed is taken over; temporary files of saves that were killed midway are
removed.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
import uuid

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import METADATA_KEYS
from .errors import RunError

LOCK_NAME = ".lock"
# What a pretraining run writes; --overwrite deletes exactly these (and recon_epochNNN.png).
RUN_FILES = ("args.json", "config.yaml", "metrics.jsonl", "checkpoint.pt", "model.pt", "loss_curve.png")
FIGURE_GLOB = "recon_epoch*.png"
# atomic_save's temporary names beside a checkpoint it replaces: ".<file>.<mkstemp's 8 characters>.tmp".
# Only these are removed: a user's own ".something.tmp" is never ours to delete.
TEMP_NAME = re.compile(r"\.(%s)\.[a-z0-9_]{8}\.tmp" % "|".join(re.escape(n) for n in RUN_FILES if n.endswith(".pt")))
# What each mode of the fine-tuning command writes; --overwrite deletes exactly these.
RESULT_FILES = {"table": ("results.json", "results.md", "feature_map.png", "confusion_finetune.png",
                          "finetune_curve.png"),
                "probe": ("probe.json",)}


def check_out_path(out: str | Path, flag: str = "--out") -> Path:
    """Refuse, before anything is written, an empty path, a file, a path under a file, a read-only place."""
    if not str(out).strip():
        raise RunError(f"{flag} is empty: name a folder for the run, e.g. {flag} runs/pretrain")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise RunError(f"{flag} {out} is a file, not a folder: choose another {flag}")
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise RunError(f"{flag} {out} lies under {existing}, which is a file: choose another {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunError(f"{flag} {out}: {existing} is read-only (or not yours to write): choose another {flag}")
    return path


def run_files(folder: Path) -> list[str]:
    """The names of the run files ``folder`` holds (empty when it holds no run)."""
    found = [name for name in RUN_FILES if (folder / name).is_file()]
    return found + sorted(p.name for p in folder.glob(FIGURE_GLOB))


def clear_run_files(folder: Path) -> None:
    """Delete a previous run's files (``overwrite``); anything else in the folder stays."""
    for name in run_files(folder):
        (folder / name).unlink(missing_ok=True)


def remove_temp_files(folder: Path) -> list[str]:
    """Delete temporary files left by saves that were killed midway; returns their names."""
    removed = []
    for tmp in sorted(folder.glob(".*.tmp")):
        if TEMP_NAME.fullmatch(tmp.name) and tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp.name)
    if removed:
        print(f"removed {len(removed)} temporary file(s) of an interrupted save in {folder}: {', '.join(removed)}",
              file=sys.stderr)
    return removed


def read_lock(folder: Path) -> dict | None:
    """The lock holder ``{"pid", "host", "started", "token"}``, or ``None`` when the folder has no lock.

    ``{}`` for a lock file without a readable holder (a run killed between creating it and writing it).
    """
    try:
        holder = json.loads((folder / LOCK_NAME).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


@dataclass(frozen=True)
class FolderLock:
    """A held ``.lock``: its path and the token that tells this hold from a later one in the same process."""

    path: Path
    token: str


# The OS lock on each .lock this process holds: {resolved path: (open descriptor, token of the current hold)}.
# The kernel frees an OS lock when its process dies however it dies, so a dead run's lock is never
# mistaken for a live one, and two processes can never both hold it (no window between create and write).
_HELD: dict[str, tuple[int, str]] = {}


def _os_lock(fd: int) -> bool:
    """Take the exclusive OS lock on ``fd`` without waiting; ``False`` when another process holds it."""
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:  # Windows: a lock on the first byte, also freed when the process dies
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _refuse(folder: Path, holder: dict | None, elsewhere: bool = False) -> RunError:
    holder = holder or {}
    return RunError(
        f"run folder {folder} is in use by process {holder.get('pid', '?')} on {holder.get('host', '?')} (started "
        f"{holder.get('started', '?')}): wait for it or stop it, or choose another --out"
        + (f". If that process is gone, delete {folder / LOCK_NAME}" if elsewhere else ""))


def acquire_lock(folder: str | Path) -> FolderLock:
    """Hold ``folder/.lock`` (an OS lock kept open for the run's life) and write this process into it.

    Refuses a folder whose lock another live process holds; takes over the lock file of a run that
    died without removing it (its OS lock died with it). A second hold in the same process (a notebook
    cell run twice) takes over the first, whose release then leaves the lock alone.
    """
    folder = Path(folder)
    lock = folder / LOCK_NAME
    key = str(lock.resolve())
    token = uuid.uuid4().hex
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "token": token}
    if key in _HELD:
        fd = _HELD[key][0]
    else:
        for _ in range(10):
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            if not _os_lock(fd):
                os.close(fd)
                raise _refuse(folder, read_lock(folder))
            try:  # the holder before us may have removed the file between our open and our lock: retry
                if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        else:
            raise RunError(f"could not lock run folder {folder}: other runs keep taking it; choose another --out")
        before = read_lock(folder)
        if before and before.get("host") not in (None, socket.gethostname()):
            # A run on another machine over a network file system: its OS lock may not reach us.
            os.close(fd)
            raise _refuse(folder, before, elsewhere=True)
        if before and before.get("pid") != os.getpid():
            print(f"taking over the lock of a run that stopped without releasing it (process "
                  f"{before.get('pid', '?')}, no longer running) in {folder}", file=sys.stderr)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(holder).encode())
    _HELD[key] = (fd, token)
    return FolderLock(lock, token)


def release_lock(lock: FolderLock | None) -> None:
    """Remove our lock and free its OS lock (only if it is still this hold's: not one taken over since)."""
    if lock is None:
        return
    key = str(lock.path.resolve())
    fd, token = _HELD.get(key, (None, None))
    if fd is None or token != lock.token:
        return
    del _HELD[key]
    lock.path.unlink(missing_ok=True)  # before the OS lock goes, so no one locks a file we then delete
    os.close(fd)


# ------------------------------------------------------------------------------ resume
# Settings a resumed run must share with its checkpoint: they decide the batches, the masks and the
# update. The model config is compared key by key; everything else (epochs, intervals, device...)
# may change and is recorded.
RESUME_FIXED = ("dataset", "train_images", "batch_size", "accum_iter", "schedule_steps", "blr", "lr", "min_lr",
                "warmup_epochs", "weight_decay", "seed")
# Config keys that do not change the weights (labels, data statistics, memory), so a resume may change them.
RESUME_FREE_CONFIG = ("model_name", "grad_checkpointing", *METADATA_KEYS)
# What a checkpoint.pt holds beyond the weights, that a resume needs.
TRAINING_STATE = ("model", "optimizer", "scheduler", "rng", "step")
# Arguments that say how to start, not what the run is.
START_FLAGS = ("resume", "overwrite")


def claim_folder(out: str | Path, resume: bool, overwrite: bool) -> tuple[FolderLock, bool, Path | None]:
    """Check ``out``, lock it and decide fresh or resumed, before anything is loaded or written.

    Returns ``(lock, created, checkpoint)``: ``created`` when the folder did not exist (to remove
    again if the set-up fails), ``checkpoint`` the file to resume from (``None``: start fresh).
    Refuses a fresh run into a folder that holds a run unless ``overwrite``.
    """
    folder = check_out_path(out)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock = acquire_lock(folder)
    try:
        remove_temp_files(folder)
        ckpt = folder / "checkpoint.pt"
        if resume and ckpt.is_file():
            return lock, created, ckpt
        if resume:
            print(f"nothing to resume in {folder} (no checkpoint.pt), starting fresh", file=sys.stderr)
        elif run_files(folder) and not overwrite:
            raise RunError(
                f"{folder} already holds a run ({', '.join(run_files(folder)[:4])}): continue it with --resume "
                f"(resume=True), start it over with --overwrite (overwrite=True, deletes it), or choose another --out")
        return lock, created, None
    except BaseException:
        release_lock(lock)
        raise


def claim_results_folder(out: str | Path, names: tuple[str, ...], overwrite: bool, delete: bool = True) -> FolderLock:
    """Lock ``out`` for a command that writes the result files ``names``; refuse one that holds any of them
    unless ``overwrite`` (then delete exactly those, or with ``delete=False`` leave them for the command to
    replace when it ends, so a failed run keeps the old ones). Release the lock with :func:`release_lock`."""
    folder = check_out_path(out)
    folder.mkdir(parents=True, exist_ok=True)
    lock = acquire_lock(folder)
    found = [name for name in names if (folder / name).is_file()]
    if found and not overwrite:
        release_lock(lock)
        raise RunError(f"{folder} already holds results ({', '.join(found)}): start them over with --overwrite "
                       f"({'deletes' if delete else 'replaces'} them), or choose another --out")
    for name in found if delete else ():
        (folder / name).unlink()
    return lock


def check_resume(now: dict[str, Any], config: dict[str, Any], state: dict[str, Any], ckpt: Path) -> dict[str, list[Any]]:
    """Refuse a resume whose model, batches or schedule differ from the checkpoint's run.

    Args:
        now: the arguments of this call (``dataclasses.asdict(PretrainArgs)``). config: the model
            config they describe. state: the checkpoint (its ``args``, ``config`` and ``step``).
    Returns the arguments that changed and may (epochs, intervals, device, ...): ``{name: [old, new]}``.
    """
    stored_args, stored_cfg = state.get("args") or {}, state.get("config") or {}
    lines = [f"  config {key}: {stored_cfg.get(key)!r} in the run, {config.get(key)!r} now"
             for key in sorted(set(config) | set(stored_cfg))
             if key not in RESUME_FREE_CONFIG and stored_cfg.get(key) != config.get(key)]
    lines += [f"  {name}: {stored_args[name]!r} in the run, {now[name]!r} now"
              for name in RESUME_FIXED if name in stored_args and name in now and stored_args[name] != now[name]]
    if lines:
        raise RunError(f"cannot resume {ckpt} (step {state.get('step')}): these settings differ from its run's\n"
                       + "\n".join(lines) + f"\nresume with the run's settings (in {ckpt.parent / 'args.json'}), "
                       f"or start a new run with another --out (or --overwrite)")
    missing = [key for key in TRAINING_STATE if key not in state]
    if missing:
        raise RunError(f"{ckpt} is not a training checkpoint: it has no {', '.join(missing)} (a model.pt copied to "
                       f"checkpoint.pt?). --resume needs the checkpoint.pt a run saved; start a new run with "
                       f"--overwrite, or load these weights with MAE.from_checkpoint")
    return {name: [stored_args[name], value] for name, value in now.items()
            if name in stored_args and name not in START_FLAGS and stored_args[name] != value}


def check_resume_data(stored: dict[str, Any] | None, now: dict[str, Any], schedule_steps: int, total_steps: int,
                      ckpt: Path) -> None:
    """Refuse a resume on other training images, or one that would train past the end of the run's schedule.

    Args:
        stored / now: ``{"images", "fingerprint", "steps_per_epoch"}`` of the run (``None`` in a checkpoint
            from before they were recorded: not checked) and of this call.
        schedule_steps: the length of the run's learning-rate schedule; total_steps: where this call would stop.
    """
    lines = [f"  training data {key}: {stored[key]!r} in the run, {now[key]!r} now"
             for key in ("images", "fingerprint", "steps_per_epoch") if stored and stored.get(key) != now[key]]
    if lines:
        raise RunError(f"cannot resume {ckpt}: the training images differ from the run's\n" + "\n".join(lines)
                       + "\nresume with the images the run was trained on, or start a new run with another --out "
                       "(or --overwrite)")
    if total_steps > schedule_steps:
        raise RunError(
            f"cannot resume {ckpt} to step {total_steps}: its learning-rate schedule ends at step {schedule_steps}, so "
            f"the steps after it would all run at the final rate (--min-lr). Resume with --epochs (or --max-steps) "
            f"that stops by step {schedule_steps}, or train longer in a new run with the longer --epochs and "
            f"another --out (or --overwrite)")


def truncate_metrics(path: Path, step: int) -> None:
    """Drop rows logged after the checkpoint a run resumes from, so the log matches the weights.

    A last line cut short (the run was killed while writing it) is dropped with a warning; damage
    anywhere else is refused, naming the file and the line.
    """
    if not path.is_file():
        return
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise RunError(f"{path} is not a text file of metrics rows: move it away (the resume then starts a new "
                       f"log), then --resume again") from None
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
            loss = {"train": "loss", "epoch": "test_loss"}[row["kind"]]
            if not isinstance(row[loss], (int, float)) or not isinstance(row["step"], int):
                raise TypeError(f"{loss} or step is not a number")
            keep = row["step"] <= step
        except (ValueError, KeyError, TypeError):
            if number == len(lines):
                print(f"warning: dropped the damaged last line of {path} (cut short when the run stopped): "
                      f"{line[:60]!r}", file=sys.stderr)
                break
            raise RunError(f"{path} line {number} is not a metrics row with a step and a loss ({line[:60]!r}): "
                           f"delete or repair that line, then --resume again") from None
        if keep:
            rows.append(line)
    path.write_text("".join(r + "\n" for r in rows), encoding="utf-8")
