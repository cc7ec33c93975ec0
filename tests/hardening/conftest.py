"""A seeded calsync for the hostile-input suites: one connected user with a subscription, an event and a
person, so that requests with valid ids, tokens and sessions reach deep into the views."""

from __future__ import annotations

import logging

import pytest

from service.app import create_app
from service.runtime import Runtime
from tests.support.fuzz import make_context, seed


class Tracebacks(logging.Handler):
    """Collects every record that carries a traceback or is logged at ERROR and above."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR or "Traceback" in record.getMessage():
            self.records.append(record)

    def text(self) -> str:
        return "\n".join(self.format(r) for r in self.records)


@pytest.fixture
def tracebacks():
    handler = Tracebacks()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


@pytest.fixture
def fuzz_app(settings, db, redis_conn):
    """The production app (TESTING off: an uncaught error is a 500 and a logged traceback, as under gunicorn)."""
    rt = Runtime(settings, db=db, redis_conn=redis_conn)
    app = create_app(runtime=rt)
    return app, make_context(app, settings, seed(db))


