"""Checks that an output path can be written, made before the work that would write it: one line on
stderr instead of a traceback after minutes of evaluation or plotting."""

from __future__ import annotations

import tempfile
from pathlib import Path

from core.errors import SuiteError


def writable_dir(path: str | Path, what: str) -> Path:
    """`path` as a directory that exists (made if needed) and takes a new file, or a `SuiteError`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SuiteError(f"{what} {path} is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        # Really write: permissions alone do not tell (root, read-only mounts).
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise SuiteError(f"cannot write into {what} {path}: {exc.strerror or exc}") from exc
    return path


def writable_file(path: str | Path, what: str) -> Path:
    """`path` as a file that can be (re)written: not a directory, in a directory that takes a new file."""
    path = Path(path)
    if path.is_dir():
        raise SuiteError(f"{what} {path} is a directory, not a file")
    if path.exists() and not path.is_file():
        raise SuiteError(f"{what} {path} is not a regular file")
    writable_dir(path.parent, f"the directory of {what}")
    return path
