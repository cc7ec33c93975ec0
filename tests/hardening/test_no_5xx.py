"""No 5xx for any input: hypothesis draws hostile requests against every route of the production app
(enumerated from ``app.url_map``), with real Redis and the test's MongoDB, and every answer must be a
deliberate status, with no traceback logged.

Short profile by default (``CASES`` below); ``CALSYNC_FUZZ=long`` runs 100,000 cases.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, seed, settings

from tests.support.fuzz import LONG, Attack, attacks

CASES = 100_000 if LONG else 2_000


def deliberate(status: int, headers) -> bool:
    """2xx, 3xx, a 4xx, or the designed 503 with Retry-After."""
    return status < 500 or (status == 503 and "Retry-After" in headers)


def play(client, attack: Attack):
    return client.open(attack.path, method=attack.method, query_string=attack.query,
                       headers=attack.headers, data=attack.body)


@pytest.mark.slow
def test_every_route_answers_hostile_requests_deliberately_and_logs_no_traceback(fuzz_app, tracebacks):
    app, context = fuzz_app
    client = app.test_client()
    seen: dict[int, int] = {}
    started = time.monotonic()

    @seed(16)
    @settings(max_examples=CASES, deadline=None, database=None, derandomize=not LONG,
              suppress_health_check=list(HealthCheck))
    @given(attack=attacks(context))
    def check(attack: Attack):
        tracebacks.records.clear()
        response = play(client, attack)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert deliberate(response.status_code, response.headers), (response.status_code, tracebacks.text())
        assert not tracebacks.records, tracebacks.text()
        if response.status_code >= 400 and response.mimetype == "text/html":
            assert b"Traceback" not in response.data

    check()
    print(f"fuzz: {sum(seen.values())} requests over {len(context.rules)} routes in "
          f"{time.monotonic() - started:.1f}s; statuses {dict(sorted(seen.items()))}")
    assert sum(seen.values()) >= CASES * 0.9
