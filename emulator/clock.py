"""The emulator's clock: real time plus an offset that tests can jump forward (or back)."""

from __future__ import annotations

import datetime as dt
import threading


class Clock:
    """Aware-UTC ``now()`` that follows real time, shifted by whatever ``advance`` added."""

    def __init__(self) -> None:
        self._offset = dt.timedelta()
        self._lock = threading.Lock()

    def __call__(self) -> dt.datetime:
        return self.now()

    def now(self) -> dt.datetime:
        with self._lock:
            return dt.datetime.now(dt.UTC) + self._offset

    def advance(self, seconds: float) -> dt.datetime:
        """Jump the clock by ``seconds`` (negative allowed) and return the new time."""
        with self._lock:
            self._offset += dt.timedelta(seconds=seconds)
        return self.now()

    def set(self, when: dt.datetime) -> dt.datetime:
        """Jump the clock to ``when`` (aware)."""
        with self._lock:
            self._offset = when - dt.datetime.now(dt.UTC)
        return self.now()

    @property
    def offset_seconds(self) -> float:
        with self._lock:
            return self._offset.total_seconds()
