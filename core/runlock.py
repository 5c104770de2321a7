"""One process per run directory: an exclusive `flock` on `<run>/.lock`, which the kernel releases when its
holder dies (even by `kill -9`), so a stale lock never blocks the next resume."""

from __future__ import annotations

import os
from pathlib import Path

from core.errors import SuiteError

LOCK_NAME = ".lock"


class RunInUseError(SuiteError):
    """Another live process holds the run directory."""


class RunLock:
    def __init__(self, directory: str | Path):
        self.path = Path(directory) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock or raise `RunInUseError` naming the holder; the descriptor is not inherited by
        child processes, so a worker cannot keep a dead run locked."""
        try:
            import fcntl  # noqa: PLC0415  (POSIX only)
        except ImportError:  # pragma: no cover - Windows has no flock; runs there are not locked
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise SuiteError(f"cannot lock the run directory {self.path.parent}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunInUseError(
                f"run directory {self.path.parent} is in use by process {holder}; wait for it to finish or stop it"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
