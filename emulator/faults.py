"""Per-test faults: throttling and outages on Graph requests, and mangled notification deliveries.

Everything random draws from one seeded ``random.Random`` so a test with a seed replays the same faults.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field, fields

from emulator.errors import bad_request

RATES = ("rate_429", "rate_503", "rate_504", "slow_rate", "duplicate_rate", "reorder_rate", "drop_rate")


@dataclass
class FaultConfig:
    rate_429: float = 0.0  # fraction of Graph requests answered 429
    retry_after: str = "1"  # Retry-After sent with 429 (and 503); fractional seconds allowed, e.g. "0.5"
    rate_503: float = 0.0
    rate_504: float = 0.0
    slow_rate: float = 0.0  # fraction of Graph requests delayed by slow_seconds
    slow_seconds: float = 0.0
    duplicate_rate: float = 0.0  # fraction of notification POSTs sent twice
    reorder_rate: float = 0.0  # fraction of notification POSTs held back so later ones overtake them
    drop_rate: float = 0.0  # fraction of change notifications dropped (a `missed` lifecycle event follows)
    path_prefix: str = ""  # only Graph paths starting with this (after /v1.0) are faulted
    script: list[dict] = field(default_factory=list)  # exact responses for the next Graph requests, in order
    seed: int | None = None

    def public(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def parse_config(data: object) -> FaultConfig:
    """Validate a fault configuration from the control API."""
    if not isinstance(data, dict):
        raise bad_request("The fault configuration must be a JSON object.", "InvalidRequest")
    known = {f.name for f in fields(FaultConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise bad_request(f"Unknown fault settings: {', '.join(unknown)[:200]}.", "InvalidRequest")
    config = FaultConfig()
    for name in RATES:
        value = data.get(name, 0.0)
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
            raise bad_request(f"'{name}' must be a number between 0 and 1.", "InvalidRequest")
        setattr(config, name, float(value))
    retry_after = data.get("retry_after", "1")
    if isinstance(retry_after, int | float) and not isinstance(retry_after, bool):
        retry_after = f"{retry_after:g}"
    if not isinstance(retry_after, str) or not _is_seconds(retry_after):
        raise bad_request("'retry_after' must be a number of seconds, e.g. \"0.5\".", "InvalidRequest")
    config.retry_after = retry_after
    slow = data.get("slow_seconds", 0.0)
    if not isinstance(slow, int | float) or isinstance(slow, bool) or not 0 <= slow <= 30:
        raise bad_request("'slow_seconds' must be between 0 and 30.", "InvalidRequest")
    config.slow_seconds = float(slow)
    prefix = data.get("path_prefix", "")
    if not isinstance(prefix, str):
        raise bad_request("'path_prefix' must be a string.", "InvalidRequest")
    config.path_prefix = prefix
    config.script = [_script_step(step) for step in _list(data.get("script", []))]
    seed = data.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise bad_request("'seed' must be an integer.", "InvalidRequest")
    config.seed = seed
    return config


def _list(value: object) -> list:
    if not isinstance(value, list) or len(value) > 10_000:
        raise bad_request("'script' must be a list of steps.", "InvalidRequest")
    return value


def _is_seconds(text: str) -> bool:
    try:
        return 0 <= float(text) <= 3600
    except ValueError:
        return False


def _script_step(step: object) -> dict:
    if not isinstance(step, dict) or step.get("status") not in (429, 500, 502, 503, 504, 200):
        raise bad_request("Each script step needs a status of 200, 429, 500, 502, 503 or 504.", "InvalidRequest")
    retry_after = step.get("retry_after")
    if isinstance(retry_after, int | float) and not isinstance(retry_after, bool):
        retry_after = f"{retry_after:g}"
    if retry_after is not None and (not isinstance(retry_after, str) or not _is_seconds(retry_after)):
        raise bad_request("A script step's 'retry_after' must be a number of seconds.", "InvalidRequest")
    delay = step.get("delay", 0)
    if not isinstance(delay, int | float) or isinstance(delay, bool) or not 0 <= delay <= 30:
        raise bad_request("A script step's 'delay' must be between 0 and 30 seconds.", "InvalidRequest")
    return {"status": step["status"], "retry_after": retry_after, "delay": float(delay)}


@dataclass(frozen=True)
class Injected:
    status: int  # 200 = pass through (possibly after a delay)
    retry_after: str | None = None
    delay: float = 0.0


class Faults:
    """The active fault configuration and its seeded random source."""

    def __init__(self, seed: int = 0):
        self._lock = threading.Lock()
        self.config = FaultConfig()
        self.rng = random.Random(seed)
        self.counts: dict[str, int] = {}

    def set(self, config: FaultConfig) -> None:
        with self._lock:
            self.config = config
            if config.seed is not None:
                self.rng = random.Random(config.seed)

    def clear(self) -> None:
        self.set(FaultConfig())

    def _count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def for_request(self, path: str) -> Injected | None:
        """The fault to apply to a Graph request at ``path`` (relative to /v1.0), if any."""
        with self._lock:
            config = self.config
            if config.path_prefix and not path.startswith(config.path_prefix):
                return None
            if config.script:
                step = config.script.pop(0)
                self._count(f"script_{step['status']}")
                return Injected(step["status"], step["retry_after"], step["delay"])
            roll = self.rng.random()
            for status, rate in ((429, config.rate_429), (503, config.rate_503), (504, config.rate_504)):
                if roll < rate:
                    self._count(str(status))
                    return Injected(status, config.retry_after if status in (429, 503) else None)
                roll -= rate
            if config.slow_rate and self.rng.random() < config.slow_rate:
                self._count("slow")
                return Injected(200, None, config.slow_seconds)
        return None

    def roll(self, name: str) -> bool:
        """True with the configured probability for a delivery fault (duplicate_rate, reorder_rate, drop_rate)."""
        with self._lock:
            rate = getattr(self.config, name)
            hit = bool(rate) and self.rng.random() < rate
            if hit:
                self._count(name)
            return hit

    def public(self) -> dict:
        with self._lock:
            return self.config.public() | {"counts": dict(self.counts)}
