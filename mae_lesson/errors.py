"""One error path for the command lines: an expected failure is one or two lines and exit code 2.

A bad value, a missing or unsafe file, a config that does not match, a full or read-only disk:
each becomes a message that names the thing and the fix, printed as ``error: ...`` with no
traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import pickle
import sys
from contextlib import contextmanager
from typing import Iterator

# Exit codes: 2 for an expected failure (as argparse); 128 + signal number for a stopped run (as shells).
EXIT_ERROR = 2
EXIT_SIGINT = 130
EXIT_SIGTERM = 143

# Errno values that mean the disk refused the write, and what to do about each.
DISK_ERRNOS = {
    errno.ENOSPC: "the disk is full: free some space or choose another --out",
    errno.EDQUOT: "the disk quota is exceeded: free some space or choose another --out",
    errno.EROFS: "the file system is read-only: choose another --out",
    errno.EACCES: "permission denied: choose a folder you can write to",
    errno.EPERM: "permission denied: choose a folder you can write to",
}
# What torch's zip writer says when a write comes up short (a full disk, in practice).
TORCH_SHORT_WRITE = ("unexpected pos", "inline_container", "PytorchStreamWriter failed")


class RunError(Exception):
    """An expected failure whose message already names the thing and the fix."""


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT, or torch's short-write RuntimeError (``unexpected pos ... inline_container``)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, RuntimeError) and any(s in str(exc) for s in TORCH_SHORT_WRITE)


def describe(exc: BaseException) -> str | None:
    """The one- or two-line message for an expected failure; ``None`` for a bug (keep the traceback)."""
    if isinstance(exc, RunError):
        return str(exc)
    if is_disk_full(exc):
        where = f" writing {exc.filename}" if getattr(exc, "filename", None) else ""
        return f"disk full{where}: free some space or choose another --out; files written before are intact"
    if isinstance(exc, OSError):
        thing = exc.filename or "a file"
        if isinstance(exc, FileNotFoundError):
            return f"{exc}" if exc.filename is None else f"{thing} does not exist: check the path"
        if isinstance(exc, NotADirectoryError) or exc.errno == errno.ENOTDIR:
            return f"{thing}: a part of this path is a file, not a folder; choose another path"
        if isinstance(exc, FileExistsError) or exc.errno == errno.EEXIST:
            return f"{thing} exists and is not a folder; choose another path"
        if isinstance(exc, IsADirectoryError):
            return f"{thing} is a folder, a file was expected; check the path"
        if exc.errno in DISK_ERRNOS:
            return f"cannot write {thing}: {DISK_ERRNOS[exc.errno]}"
        return None
    if isinstance(exc, (ValueError, pickle.UnpicklingError)):
        return str(exc)
    if type(exc).__name__ == "NonFiniteLossError":
        return str(exc)
    return None


@contextmanager
def command_line_errors() -> Iterator[None]:
    """Turn an expected failure into ``error: <message>`` on stderr and exit code 2."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - re-raised unless it is an expected failure
        message = describe(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_ERROR) from None
