"""Waiting on another process in tests: poll a condition until it holds or a deadline passes."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(condition: Callable[[], bool], timeout: float, every: float = 0.05) -> bool:
    """Whether `condition()` held within `timeout` seconds (checked every `every` seconds, and once at the end)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()
