"""Outbound webhook tests: calsync may call loopback receivers here (CALSYNC_OUTBOUND_ALLOW_PRIVATE), with a
short timeout so slow receivers cost a second, not ten."""

from __future__ import annotations

import pytest

from tests.support.receiver import running_receiver


@pytest.fixture
def settings(make_settings):
    return make_settings(outbound_allow_private=True, outbound_timeout=1.0)


@pytest.fixture
def receiver():
    with running_receiver() as served:
        yield served


@pytest.fixture
def endpoint(rt, client, ops_headers, receiver):
    """An endpoint registered through the ops API for every event type: (id, secret)."""
    answer = client.post("/ops/api/webhooks", headers=ops_headers,
                         json={"url": receiver.url, "description": "coaching product"})
    assert answer.status_code == 201, answer.get_json()
    body = answer.get_json()
    return body["endpoint"]["id"], body["secret"]
