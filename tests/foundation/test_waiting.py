"""harness.waiting.wait_until: the one way the suite and the bench wait for a condition."""

from __future__ import annotations

import itertools
import time

import pytest

from harness.waiting import wait_until


def test_it_returns_the_first_truthy_value_without_waiting_longer():
    calls = itertools.count(1)
    started = time.monotonic()

    assert wait_until(lambda: [n] if (n := next(calls)) >= 3 else [], timeout=5, interval=0.01) == [3]
    assert time.monotonic() - started < 1


def test_on_timeout_it_names_what_it_waited_for_and_the_last_value_seen():
    values = iter(range(1_000_000))
    with pytest.raises(AssertionError, match=r"timed out after 0.2s waiting for the answer; last value: 0") as caught:
        wait_until(lambda: next(values) * 0, timeout=0.2, interval=0.01, message="the answer")
    assert "last value: 0" in str(caught.value)


def test_the_condition_is_called_at_least_once_and_again_at_the_deadline():
    seen = []

    with pytest.raises(AssertionError):
        wait_until(lambda: seen.append(time.monotonic()), timeout=0.3, interval=10)
    assert len(seen) == 2 and seen[1] - seen[0] >= 0.3 - 0.01   # no interval overshoots the deadline


def test_an_exception_in_the_condition_is_not_swallowed():
    with pytest.raises(ZeroDivisionError):
        wait_until(lambda: 1 / 0, timeout=1)
