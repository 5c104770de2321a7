"""How much of the machine a run may use: the cores this process may run on, and torch's thread count.

Importing this module does not import torch: `envs/` asks it for cores while building Atari batches.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core.errors import ConfigError


def usable_cores() -> int:
    """Cores this process may run on; `os.cpu_count()` counts the whole host, even inside a container
    limited to two."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_threads(wanted: int) -> int:
    """Torch threads for a run that did not choose a count: `wanted`, at most the usable cores, and at most
    `OMP_NUM_THREADS` where the user set it (the usual way to share a machine between runs: two runs
    that each spin two OpenMP threads on two cores wait on each other's barriers and crawl)."""
    threads = min(wanted, usable_cores())
    limit = os.environ.get("OMP_NUM_THREADS", "").strip()
    if limit.isdigit() and int(limit) > 0:
        threads = min(threads, int(limit))
    return max(1, threads)


@contextmanager
def torch_threads(threads: int, device: Any) -> Iterator[None]:
    """Run the block with `threads` intra-op threads on the CPU (0 or a CUDA device: unchanged), then
    restore the previous count so one agent's choice does not leak into the next run in the process.
    `device` is a `torch.device`."""
    import torch

    previous = torch.get_num_threads()
    if device.type == "cpu" and threads > 0:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def native_bf16(device: Any) -> bool:
    """Does `device` compute in bfloat16 natively: a CUDA GPU that supports it, or a CPU with AVX-512 BF16
    or AMX (Linux reports them in /proc/cpuinfo)? Elsewhere bf16 is emulated and slower than float32."""
    import torch  # noqa: PLC0415  (resources stay importable without torch)

    if torch.device(device).type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# glibc's mallopt parameters (<malloc.h>) and the values `keep_freed_memory` sets.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
KEEP_MMAP_THRESHOLD = 64 * 2**20
"""Blocks smaller than this come from the heap, not from a fresh mmap that is unmapped when freed."""
KEEP_TRIM_THRESHOLD = 128 * 2**20
"""Free memory at the top of the heap up to this stays with the process instead of going back to the OS."""
_USER_MALLOC_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
_kept_freed_memory = False


def keep_freed_memory() -> bool:
    """Keep memory that a training step frees for the next step, instead of handing it back to the OS.

    A gradient update allocates and frees the same few-megabyte tensors every time. glibc's default
    policy returns them to the kernel (large blocks are unmapped; the heap's top is trimmed), so the next
    update takes a page fault on every page it touches again (docs/dqn-atari.md measures the cost on
    Pong). Raising the mmap and trim thresholds once for the process keeps that memory
    mapped, at the cost of holding up to `KEEP_TRIM_THRESHOLD` of freed heap. Process-wide and lasting;
    called by `Agent.learn`. Linux with glibc only; left alone where the user tuned malloc through its
    environment variables (`MALLOC_*_`, `GLIBC_TUNABLES`). Returns whether the setting is in force."""
    global _kept_freed_memory
    if _kept_freed_memory:
        return True
    if not sys.platform.startswith("linux") or any(name in os.environ for name in _USER_MALLOC_SETTINGS):
        return False
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    import ctypes  # noqa: PLC0415
    import platform  # noqa: PLC0415

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # Both: setting either turns off glibc's dynamic thresholds, which would leave the other at its default.
    _kept_freed_memory = bool(mallopt(_M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD)) and bool(
        mallopt(_M_MMAP_THRESHOLD, KEEP_MMAP_THRESHOLD)
    )
    return _kept_freed_memory


def total_memory() -> int:
    """Bytes of physical memory."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**62


def available_memory() -> int:
    """Bytes the kernel says can be allocated without swapping (MemAvailable); elsewhere the total."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return total_memory()


MEMORY_SHARE = 0.8
"""Of the memory available at the start, the share a run may plan to fill (the rest for the system)."""


def check_fits(what: str, count: int, bytes_each: float, why: str, budget: float | None = None) -> None:
    """Refuse, in one line that states the limit and why, `count` things of `bytes_each` that the memory
    available now (or `budget` bytes) cannot hold."""
    budget = MEMORY_SHARE * available_memory() if budget is None else budget
    if count * bytes_each <= budget:
        return
    most = max(0, int(budget // max(bytes_each, 1)))
    raise ConfigError(
        f"{what}={count:,} does not fit this machine: {why} ({_gib(bytes_each)} each, {_gib(count * bytes_each)} "
        f"in all), and {_gib(budget)} of its memory is there to use, so at most {most:,}"
    )


def _gib(n: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size / 4:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


PROCESS_BYTES = 200 * 2**20
"""What one worker process of the suite holds: Python, torch and one env (measured ~130 MB; VizDoom more)."""

ENV_BYTES = 16 * 2**20
"""What one more env in a process holds: an emulator's state and frames, or far less for a classic env."""


@contextmanager
def children_ignore_ctrl_c() -> Iterator[None]:
    """Processes started inside never see Ctrl-C, which a terminal sends to the whole process group: the
    trainer alone handles it, stops gracefully and closes its workers, instead of their dying mid-step or
    mid-start-up. SIGINT is blocked while they start, and a child keeps the blocked mask through fork and
    exec, so the signal stays pending there, never delivered. This process only defers it: a Ctrl-C that
    comes meanwhile is delivered when the block ends (ignoring it here instead would lose it)."""
    import signal  # noqa: PLC0415

    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


# Linux: ask the kernel to kill this process when its parent dies (prctl PR_SET_PDEATHSIG).
_PR_SET_PDEATHSIG = 1


def die_with_parent(expected_parent: int | None = None) -> None:
    """Called first thing in a child process (a worker, an evaluator, an env process): the kernel sends it
    SIGKILL when the process that started it dies, also by `kill -9`, so no worker outlives its run.
    `expected_parent`: if the parent is already gone (a race at start-up), exit now. No-op off Linux."""
    import signal  # noqa: PLC0415

    if not sys.platform.startswith("linux"):
        return
    import ctypes  # noqa: PLC0415

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(1)
