"""Fixtures for the sync tests: a fake Graph on loopback and connected users whose GraphClient points at it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests

from service.graph import GraphClient
from service.store import users
from service.workers import sync
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


@pytest.fixture
def graph_for_fake(fake_graph, monkeypatch):
    """Route sync's GraphClient construction to the fake Graph."""
    monkeypatch.setattr(sync, "graph_client", lambda rt, user_id: fake_client(fake_graph, user_id))
    return fake_graph


@pytest.fixture
def connected(rt, graph_for_fake):
    """connected(user_id) → a user known to the fake Graph and connected in our store."""

    def make(user_id: str = "user-1", mail: str | None = None) -> str:
        mail = mail or f"{user_id}@contoso.example"
        graph_for_fake.add_user(user_id, mail)
        users.upsert_from_graph(rt.db, {"id": user_id, "mail": mail, "displayName": user_id}, "tenant-1", "home")
        return user_id

    return make


def soon(days: float = 1, hours: float = 10) -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=days, hours=hours)
