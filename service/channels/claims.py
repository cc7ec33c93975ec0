"""Who holds a message claim (``channel_sends``): the RQ execution running the job that took it.

The worker names its running execution around each job (``service.workers.observe``); a claim records it, and a
later run of that job, or another job for that message, may take the claim over as soon as that execution is no
longer alive (RQ's execution key lapses a heartbeat TTL after its worker died), instead of waiting out the claim's
15 minutes, by when the job had no retry left to come back.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rq.executions import Execution

_holder: contextvars.ContextVar[str | None] = contextvars.ContextVar("calsync_claim_holder", default=None)


@contextmanager
def held_by(name: str | None) -> Iterator[None]:
    """Claims taken in this context name ``name`` (an RQ execution's ``<job id>:<execution id>``)."""
    token = _holder.set(name)
    try:
        yield
    finally:
        _holder.reset(token)


def holder() -> str | None:
    """The running RQ execution, or None outside a worker's job."""
    return _holder.get()


def holder_alive(redis, name: str) -> bool:
    """Whether the execution ``name`` still runs: its Redis key lives while its worker beats."""
    return bool(redis.exists(Execution.from_composite_key(name, redis).key))


def alive_in(redis) -> Callable[[str], bool] | None:
    """``holder_alive`` on ``redis``, as the store's claims take it (None without a Redis: then only age tells)."""
    return (lambda name: holder_alive(redis, name)) if redis is not None else None
