"""How much of the machine a run may use: the cores this process may run on, and torch's thread count.

Importing this module does not import torch: `envs/` asks it for cores while building Atari batches.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def usable_cores() -> int:
    """Cores this process may run on; `os.cpu_count()` counts the whole host, even inside a container
    limited to two."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


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
