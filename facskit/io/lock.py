"""An advisory lock on a file, for a folder one run at a time may write (a cache being prepared or taught).

``flock`` is released by the OS when its holder exits or is killed, so a killed run never leaves a stale
lock behind. Where ``fcntl`` does not exist (Windows) runs are not serialised.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

from facskit.errors import FacskitError


def hold_lock(path: Path, exclusive: bool, busy: FacskitError) -> IO[Any] | None:
    """Open ``path`` and take a shared or non-blocking exclusive flock; raise ``busy`` when another process
    holds it exclusively (an exclusive request also fails while others share it). Keep the returned handle
    open for as long as the lock is meant to last; None where flock does not exist."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no protection against concurrent runs
        return None
    handle = path.open("a+")
    try:
        fcntl.flock(handle.fileno(), (fcntl.LOCK_EX | fcntl.LOCK_NB) if exclusive else fcntl.LOCK_SH)
    except BlockingIOError:
        handle.close()
        raise busy from None
    return handle


def share_lock(handle: IO[Any] | None) -> None:
    """Downgrade a held exclusive lock to shared, so this run's worker processes can join it."""
    if handle is not None:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
