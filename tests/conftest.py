"""Shared fixtures: real Redis, real RQ workers, real loopback HTTP and SMTP, and a MongoDB wire server.

MongoDB backends (README, "Tests"): by default a SecantusDB server started for the session (a separate
process reached over TCP, storage in a temporary directory); ``CALSYNC_TEST_MONGO=mongomock`` runs the same
tests on the embedded in-memory store instead; ``CALSYNC_TEST_MONGODB_URI=mongodb://...`` on any real
MongoDB. Each test gets a fresh database with the production indexes. Tests marked ``wire`` share the
database with other processes (rq workers, gunicorn) and are deselected on mongomock.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pymongo
import pytest
import redis
import time_machine
from werkzeug.serving import make_server

from emulator.testing import running_emulator
from harness.loopback import Deferred, free_port
from harness.secantus import MongoServer, start_secantus
from service import store
from service.app import create_app
from service.config import Settings
from service.embedded import start_embedded_redis
from service.runtime import Runtime, install
from service.workers.inprocess import work_burst
from tests.support.serving import OPS_TOKEN

# --- The clock: CALSYNC_TEST_NOW runs the whole session from another instant --------------------------

def pytest_configure(config):
    """``CALSYNC_TEST_NOW=2026-11-29T12:00Z`` moves this process's clock there, ticking (time-machine): every
    in-process test then runs on that date, weekday and hour. It cannot move other processes' clocks (rq
    workers, gunicorn, the wire server), so the suites that start them choose their users' days and zones
    instead (tests/support/clock.py); README, "Tests", lists what a faked run covers."""
    when = os.environ.get("CALSYNC_TEST_NOW")
    if when:
        config.stash[_TRAVEL] = traveller = time_machine.travel(datetime.fromisoformat(when), tick=True)
        traveller.start()


def pytest_unconfigure(config):
    traveller = config.stash.get(_TRAVEL, None)
    if traveller is not None:
        traveller.stop()


_TRAVEL = pytest.StashKey[time_machine.travel]()


# --- Redis ---------------------------------------------------------------------------------------

def _xdist_worker() -> int:
    """0, or N for pytest-xdist's worker gwN, which flushes a Redis database of its own (the Nth below)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker.removeprefix("gw") or 0)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """127.0.0.1:6379 on a dedicated database if it answers, else an embedded redis-server. Never skips."""
    database = int(os.environ.get("CALSYNC_TEST_REDIS_DB", "9")) - _xdist_worker()
    server = os.environ.get("CALSYNC_TEST_REDIS_SERVER", "redis://127.0.0.1:6379")
    url = f"{server}/{database}"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        embedded = start_embedded_redis(tmp_path_factory.mktemp("redis"))
        yield embedded.url
        embedded.stop()
        return
    yield url


@pytest.fixture
def redis_conn(redis_url) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_url, socket_connect_timeout=2)
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()


# --- MongoDB: a wire server (SecantusDB or a real MongoDB), or mongomock ---------------------------

MONGO_BACKEND = "mongomock" if os.environ.get("CALSYNC_TEST_MONGO") == "mongomock" else "wire"
_database_names = itertools.count(1)


def pytest_collection_modifyitems(config, items):
    """The slow tests first, so that xdist spreads them over its workers instead of leaving the last worker
    with a long one at the end (the sort is stable: each worker collects the same order). On mongomock, tests
    that share the database with other processes cannot run: deselect them."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    if MONGO_BACKEND != "mongomock":
        return
    wire_only = [item for item in items if item.get_closest_marker("wire")]
    if wire_only:
        config.hook.pytest_deselected(items=wire_only)
        items[:] = [item for item in items if not item.get_closest_marker("wire")]


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory) -> Iterator[MongoServer | None]:
    """The session's wire server (None on mongomock): CALSYNC_TEST_MONGODB_URI, else a SecantusDB of our own."""
    if MONGO_BACKEND == "mongomock":
        yield None
        return
    given = os.environ.get("CALSYNC_TEST_MONGODB_URI")
    if given:
        yield MongoServer(given)
        return
    server = start_secantus(tmp_path_factory.mktemp("secantus"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mongodb_uri(mongo_server) -> Iterator[str | None]:
    """A fresh database on the wire server for this test (None on mongomock); dropped afterwards."""
    if mongo_server is None:
        yield None
        return
    name = f"calsync_test_{os.getpid()}_{next(_database_names)}"
    yield mongo_server.database_uri(name)
    with pymongo.MongoClient(mongo_server.uri) as client:
        client.drop_database(name)


@pytest.fixture
def db(mongodb_uri):
    """The test's database with the production indexes: on the wire server, or a fresh mongomock."""
    if mongodb_uri is None:
        database = store.embedded_client()["calsync_test"]
        store.init_db(database)
        yield database
        return
    client = pymongo.MongoClient(mongodb_uri, tz_aware=True)
    database = client.get_default_database()
    store.init_db(database)
    yield database
    client.close()


# --- SMTP --------------------------------------------------------------------------------------

@dataclass
class Inbox:
    host: str
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"


class _Handler:
    def __init__(self, inbox: Inbox):
        self.inbox = inbox

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.inbox.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.inbox.messages.append(message_from_bytes(envelope.original_content, policy=policy.default))
        return "250 OK"


@pytest.fixture(scope="session")
def _smtp_server() -> Iterator[Inbox]:
    from aiosmtpd.controller import Controller

    inbox = Inbox("127.0.0.1", free_port())
    controller = Controller(_Handler(inbox), hostname=inbox.host, port=inbox.port)
    controller.start()
    yield inbox
    controller.stop()


@pytest.fixture
def smtp_inbox(_smtp_server) -> Inbox:
    """A real SMTP server on loopback; every test starts with an empty inbox."""
    _smtp_server.messages.clear()
    _smtp_server.envelopes.clear()
    return _smtp_server


# --- Settings, runtime, app -------------------------------------------------------------------------

@pytest.fixture
def make_settings(tmp_path, redis_url, mongodb_uri, _smtp_server):
    def make(**overrides) -> Settings:
        base = Settings(
            mongodb_uri=mongodb_uri,
            redis_url=redis_url,
            data_dir=str(tmp_path / "var"),
            smtp_url=_smtp_server.url,
            ops_token=OPS_TOKEN,
        )
        return base.with_overrides(**overrides)

    return make


@pytest.fixture
def settings(make_settings) -> Settings:
    return make_settings()


@pytest.fixture
def rt(settings, db, redis_conn) -> Iterator[Runtime]:
    rt = Runtime(settings, db=db, redis_conn=redis_conn)
    install(rt)   # the jobs run_jobs executes use it, as a worker's would
    yield rt
    install(None)


@pytest.fixture
def app(rt):
    flask_app = create_app(runtime=rt)
    flask_app.config["TESTING"] = True
    return flask_app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def ops_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {OPS_TOKEN}"}


@pytest.fixture
def run_jobs(redis_conn):
    """Drain every queue with a real RQ worker running jobs in this process (scheduled ones once due)."""

    def run(max_rounds: int = 50) -> int:
        rounds = 0
        while rounds < max_rounds and work_burst(redis_conn):
            rounds += 1
        return rounds

    return run


# --- Loopback servers: the emulator and calsync itself ---------------------------------------------

@pytest.fixture
def emulator(tmp_path):
    """The Graph + identity emulator over HTTPS on loopback, fresh for each test."""
    with running_emulator(tmp_path / "emulator") as handle:
        yield handle


@dataclass
class Stack:
    settings: Settings
    runtime: Runtime
    app: object
    url: str
    emulator: object
    run_jobs: object

    @property
    def client(self):
        return self.app.test_client()


@pytest.fixture
def make_stack(emulator, make_settings, db, redis_conn, run_jobs):
    """A context manager serving calsync on a real loopback port, wired to the emulator (settings overridable)."""

    @contextlib.contextmanager
    def serve(**overrides) -> Iterator[Stack]:
        holder = Deferred()
        server = make_server("127.0.0.1", 0, holder, threaded=True)
        url = f"http://127.0.0.1:{server.server_port}"
        settings = make_settings(public_url=url, **emulator.settings_overrides(), **overrides)
        rt = Runtime(settings, db=db, redis_conn=redis_conn)
        install(rt)
        holder.app = create_app(runtime=rt)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield Stack(settings, rt, holder.app, url, emulator, run_jobs)
        finally:
            server.shutdown()
            thread.join(timeout=5)
            install(None)

    return serve


@pytest.fixture
def stack(make_stack) -> Iterator[Stack]:
    """calsync served on a real loopback port, wired to the emulator, with jobs run on demand."""
    with make_stack() as served:
        yield served




def read_fixture(name: str) -> str:
    return (Path(__file__).parent / "data" / name).read_text()
