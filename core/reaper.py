"""A watchdog for processes that cannot be told to die with the trainer (the processes of a local Ray
instance: its raylet's helpers outlive a `kill -9`'d driver). It runs as the trainer's child, remembers
the trainer's descendants every half second, and once the trainer is gone kills those still alive.

    python -m core.reaper TRAINER_PID        (started by `start_reaper()`)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_SECONDS = 0.5


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) of every live process (Linux /proc)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X"):
            table[int(entry.name)] = (int(fields[1]), fields[19])
    return table


def descendants(root: int, table: dict[int, tuple[int, str]] | None = None) -> dict[int, str]:
    """pid -> start time of every live descendant of `root` (`table`: a `processes()` already read)."""
    table = processes() if table is None else table
    found: dict[int, str] = {}
    frontier = {root}
    while frontier:
        frontier = {pid for pid, (parent, _) in table.items() if parent in frontier and pid not in found}
        found.update({pid: table[pid][1] for pid in frontier})
    return found


def watch(trainer: int) -> None:
    me = os.getpid()
    known: dict[int, str] = {}
    while os.getppid() == trainer:
        table = processes()
        known.update({pid: start for pid, start in descendants(trainer, table).items() if pid != me})
        time.sleep(POLL_SECONDS)
    table = processes()
    for pid, start in known.items():
        if pid in table and table[pid][1] == start:  # the same process, not a reused pid
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def start_reaper() -> subprocess.Popen | None:
    """Start the watchdog for this process (Linux only; elsewhere None)."""
    if not sys.platform.startswith("linux"):
        return None
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-m", "core.reaper", str(os.getpid())],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C or a group kill aimed at the run must not stop the watchdog
    )


if __name__ == "__main__":
    watch(int(sys.argv[1]))
