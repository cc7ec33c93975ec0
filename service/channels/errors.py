"""How a channel says it could not send: for good (``Unavailable``) or for now (``Busy``)."""

from __future__ import annotations


class Unavailable(Exception):  # noqa: N818 - a state, not an error
    """The channel cannot deliver to this person until something changes (consent, install, a revoked token);
    ``reason`` is the status people and operators read ("unavailable: admin consent needed")."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Busy(Exception):  # noqa: N818 - a state, not an error
    """The channel refused for now (a rate limit, a 5xx): the job retries; ``retry_after`` in seconds."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
