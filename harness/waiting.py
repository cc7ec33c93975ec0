"""One way to wait for something another thread or process does: poll a condition until it holds.

A fixed sleep stands in for a condition and fails on a loaded machine (or wastes time on an idle one);
``wait_until`` waits exactly as long as the condition needs, up to a bound, and says what it waited for
when the bound is reached.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.05,
               message: str = "the condition") -> T:
    """Call ``condition`` every ``interval`` seconds until it returns something truthy, and return that.

    After ``timeout`` seconds (on the monotonic clock, which time-machine leaves alone) the last call's value
    goes into the ``AssertionError`` with ``message``, so a failure names what was awaited and what was seen.
    The condition is always called at least once, and once more at the deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {message}; last value: {value!r}")
        time.sleep(min(interval, left))
