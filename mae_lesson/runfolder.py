"""A run folder that nothing destroys by accident: checked paths, one run at a time, no leftovers.

A fresh run into a folder that already holds a run is refused unless it says ``resume`` or
``overwrite``; a running run holds ``.lock`` (its process id and host), so a second run into the
same folder is refused, while the lock of a run that was killed (its process is gone) is taken
over; temporary files of saves that were killed midway are removed.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from .errors import RunError

LOCK_NAME = ".lock"
# What a pretraining run writes; --overwrite deletes exactly these (and recon_epochNNN.png).
RUN_FILES = ("args.json", "config.yaml", "metrics.jsonl", "checkpoint.pt", "model.pt", "loss_curve.png")
FIGURE_GLOB = "recon_epoch*.png"
# atomic_save's temporary names: ".<file>.<random>.tmp" beside the file it replaces.
TEMP_GLOB = ".*.tmp"


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
    for tmp in folder.glob(TEMP_GLOB):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp.name)
    if removed:
        print(f"removed {len(removed)} temporary file(s) of an interrupted save in {folder}: {', '.join(removed)}",
              file=sys.stderr)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    except OSError:
        return False
    return True


def read_lock(folder: Path) -> dict | None:
    """The lock holder ``{"pid", "host", "started"}``, or ``None`` when the folder is free."""
    try:
        holder = json.loads((folder / LOCK_NAME).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # written halfway by a process that was killed
    return holder if isinstance(holder, dict) else {}


def _is_stale(holder: dict) -> bool:
    """A lock whose process is gone: unreadable, or a dead (or our own) process on this host."""
    if not holder or not isinstance(holder.get("pid"), int):
        return True
    if holder.get("host") != socket.gethostname():
        return False  # another machine's process: we cannot tell, so it is not ours to take
    return holder["pid"] == os.getpid() or not _pid_alive(holder["pid"])


def acquire_lock(folder: Path) -> Path:
    """Create ``folder/.lock`` for this process; take over a stale one; refuse a live one."""
    lock = folder / LOCK_NAME
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_lock(folder)
            if holder is None:
                continue  # released between our two looks
            if not _is_stale(holder):
                raise RunError(
                    f"run folder {folder} is in use by process {holder['pid']} on {holder.get('host')} (started "
                    f"{holder.get('started', '?')}): wait for it or stop it, or choose another --out. If that "
                    f"process is gone, delete {lock}.") from None
            print(f"taking over the lock of a run that stopped without releasing it (process "
                  f"{holder.get('pid', '?')}, no longer running) in {folder}", file=sys.stderr)
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": time.strftime("%Y-%m-%d %H:%M:%S")}, handle)
        return lock
    raise RunError(f"could not lock run folder {folder}: another run keeps taking it; choose another --out")


def release_lock(lock: Path | None) -> None:
    """Remove our lock (only if it is still ours)."""
    if lock is None:
        return
    holder = read_lock(lock.parent)
    if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        lock.unlink(missing_ok=True)
