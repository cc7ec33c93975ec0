"""Fixtures for the sync tests: a fake Graph on loopback and connected users whose GraphClient points at it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import requests

from service.graph import GraphClient
from service.runtime import Runtime
from service.store import users
from service.workers import context
from tests.workers.fakegraph import running_fake_graph


@pytest.fixture
def fake_graph():
    with running_fake_graph() as fake:
        yield fake


def fake_client(fake, user_id: str, sleep=None) -> GraphClient:
    """A GraphClient acting as ``user_id`` against the fake (its token is ``tok-<user_id>``)."""
    session = requests.Session()
    session.trust_env = False
    return GraphClient(session, f"{fake.url}/v1.0", token=lambda force_refresh=False: f"tok-{user_id}",
                       timeout=5, **({"sleep": sleep} if sleep else {}))


@dataclass
class GraphRoute:
    """How the runtime reaches Graph as a user; a test may swap ``factory`` (a waiting or refusing client)."""

    factory: Callable[[str], GraphClient]


@pytest.fixture
def graph_route(fake_graph) -> GraphRoute:
    return GraphRoute(lambda user_id: fake_client(fake_graph, user_id))


@pytest.fixture
def rt(settings, db, redis_conn, graph_route):
    """The sync tests' runtime: Graph is the loopback fake, through ``graph_route``."""
    runtime = Runtime(settings, db=db, redis_conn=redis_conn, graph_for=lambda user_id: graph_route.factory(user_id))
    context.install(runtime)
    yield runtime
    context.install(None)


@pytest.fixture
def connected(rt, fake_graph):
    """connected(user_id) → a user known to the fake Graph and connected in our store."""

    def make(user_id: str = "user-1", mail: str | None = None) -> str:
        mail = mail or f"{user_id}@contoso.example"
        fake_graph.add_user(user_id, mail)
        users.upsert_from_graph(rt.db, {"id": user_id, "mail": mail, "displayName": user_id}, "tenant-1", "home")
        return user_id

    return make


def soon(days: float = 1, hours: float = 10) -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=days, hours=hours)
