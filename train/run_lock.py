"""One live run per output directory: rank 0 holds ``output_dir/run.lock`` for as long as its process lives.

The lock is an exclusive ``fcntl.flock`` on the file, so the kernel releases it when the process ends,
however it ends (a clean exit, an exception, SIGTERM or SIGKILL): a lock file a dead run left blocks nothing.
A second run (a fresh start, ``--resume`` or ``--export-checkpoint``) into a directory that a live run still
holds is refused before any heavy work, naming the process that holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from .errors import TrainingInputError

__all__ = ["LOCK_FILE", "RunDirectoryInUse", "hold_run_directory", "launch_rank"]

LOCK_FILE = "run.lock"
"""The lock file in ``output_dir``; it holds the holder's ``pid N on HOST``."""


class RunDirectoryInUse(TrainingInputError, RuntimeError):
    """A live run (another process) holds the output directory."""


def launch_rank() -> int:
    """This process's global rank as the launcher set it (``RANK``); 0 in a run without the launcher."""
    return int(os.environ.get("RANK", "0"))


@contextlib.contextmanager
def hold_run_directory(output_dir: str | Path, *, rank: int | None = None) -> Iterator[None]:
    """Hold ``output_dir`` for this run: on rank 0 (``rank``, by default :func:`launch_rank`) take the
    exclusive lock on ``output_dir/run.lock``, creating the directory; other ranks hold nothing.

    Raises:
        RunDirectoryInUse: Another live process holds the lock.
    """
    if (launch_rank() if rank is None else rank) != 0:
        yield
        return
    directory = Path(output_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE
    # "a+": opening must not wipe the holder's pid before we know whether we get the lock.
    with path.open("a+", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise RunDirectoryInUse(
                f"{directory} is in use by a live run ({holder}): stop that run first (train/README.md, "
                "'Stop a run') or choose another output_dir"
            ) from None
        lock.truncate(0)
        lock.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
