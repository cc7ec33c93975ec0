"""Shared fixtures: real Redis, real RQ workers, real loopback HTTP and SMTP, mongomock with real indexes."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import mongomock
import pytest
import redis
from werkzeug.serving import make_server

from service import create_app, runtime, store
from service.config import Settings
from service.embedded import start_embedded_redis
from service.runtime import Runtime
from service.workers.inprocess import work_burst

OPS_TOKEN = "test-ops-token-0123456789abcdef"


# --- Redis ---------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """127.0.0.1:6379 on a dedicated database if it answers, else an embedded redis-server. Never skips."""
    database = int(os.environ.get("CALSYNC_TEST_REDIS_DB", "9"))
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


# --- MongoDB (in-memory, with the production indexes) ---------------------------------------------

@pytest.fixture
def db():
    database = mongomock.MongoClient(tz_aware=True)["calsync_test"]
    store.init_db(database)
    return database


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

    inbox = Inbox("127.0.0.1", _free_port())
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
def make_settings(tmp_path, redis_url, _smtp_server):
    def make(**overrides) -> Settings:
        base = Settings(
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
    runtime.install(rt)
    yield rt
    runtime.install(None)


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
    from emulator.testing import running_emulator

    with running_emulator(tmp_path / "emulator") as handle:
        yield handle


class _Deferred:
    """A WSGI app filled in after the server is bound (the app's settings need the port)."""

    app = None

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


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
        holder = _Deferred()
        server = make_server("127.0.0.1", 0, holder, threaded=True)
        url = f"http://127.0.0.1:{server.server_port}"
        settings = make_settings(public_url=url, **emulator.settings_overrides(), **overrides)
        rt = Runtime(settings, db=db, redis_conn=redis_conn)
        runtime.install(rt)
        holder.app = create_app(runtime=rt)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield Stack(settings, rt, holder.app, url, emulator, run_jobs)
        finally:
            server.shutdown()
            thread.join(timeout=5)
            runtime.install(None)

    return serve


@pytest.fixture
def stack(make_stack) -> Iterator[Stack]:
    """calsync served on a real loopback port, wired to the emulator, with jobs run on demand."""
    with make_stack() as served:
        yield served


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_fixture(name: str) -> str:
    return (Path(__file__).parent / "data" / name).read_text()
