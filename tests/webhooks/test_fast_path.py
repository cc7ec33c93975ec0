"""Graph's notification POSTs are answered in front of Flask (service/webhooks/fast.py); every answer must
be the one the Flask view gives. A query string sends a POST through Flask, so each case is posted both
ways and the two answers compared: status, body, every header (X-Request-Id echoed by both)."""

from __future__ import annotations

import io
import json

import pytest

from service import metrics
from tests.support.notifications import STATE_A, SUB_A, change, subscribe

CASES = {
    "accepted": json.dumps({"value": [change(SUB_A, STATE_A)]}),
    "wrong clientState": json.dumps({"value": [change(SUB_A, "not-the-state")]}),
    "unknown subscription": json.dumps({"value": [change("33333333-cccc-4ccc-8ccc-000000000003", STATE_A)]}),
    "not JSON": "{value: [",
    "not a collection": json.dumps([1, 2]),
    "lifecycle shape on the changes route": json.dumps({"value": [{"subscriptionId": SUB_A, "clientState": STATE_A,
                                                                   "lifecycleEvent": "missed"}]}),
    "empty": "",
}


def answer(response) -> tuple:
    headers = sorted((k, v) for k, v in response.headers.items())
    return response.status_code, response.get_data(), headers


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("path", ["/webhooks/graph", "/webhooks/graph/lifecycle"])
def test_the_fast_path_answers_as_the_flask_view_does(client, db, case, path):
    subscribe(db, SUB_A, "user-a", STATE_A)
    headers = {"Content-Type": "application/json", "X-Request-Id": "req-1"}
    fast = client.post(path, data=CASES[case], headers=headers)
    flask = client.post(f"{path}?via=flask", data=CASES[case], headers=headers)
    assert answer(fast) == answer(flask)
    assert fast.headers["X-Request-Id"] == "req-1"


@pytest.mark.parametrize("length", ["abc", "-5", "0", "3"])
def test_odd_content_lengths_get_the_answer_flask_gives(client, db, length):
    body = CASES["accepted"].encode()

    def send(path):
        environ = {"CONTENT_LENGTH": length, "HTTP_X_REQUEST_ID": "r"}
        return client.post(path, input_stream=io.BytesIO(body), environ_overrides=environ)

    assert answer(send("/webhooks/graph")) == answer(send("/webhooks/graph?via=flask"))


def test_too_large_and_https_answers_match_too(client, app, db):
    limit = app.extensions["calsync.settings"].max_notification_bytes
    body = json.dumps({"value": [change(SUB_A, STATE_A)], "pad": "x" * limit})
    for base in ("http://localhost", "https://localhost"):
        fast = client.post("/webhooks/graph", data=body, base_url=base, headers={"X-Request-Id": "r"})
        flask = client.post("/webhooks/graph?via=flask", data=body, base_url=base, headers={"X-Request-Id": "r"})
        assert fast.status_code == 413 and answer(fast) == answer(flask)
    assert "Strict-Transport-Security" in fast.headers


def test_the_fast_path_counts_the_request_as_flask_would(client, db):
    subscribe(db, SUB_A, "user-a", STATE_A)
    labels = ("webhooks.changes", "POST", "202")
    before = metrics.HTTP_REQUESTS.labels(*labels)._value.get()
    assert client.post("/webhooks/graph", data=CASES["accepted"]).status_code == 202
    assert client.post("/webhooks/graph?via=flask", data=CASES["accepted"]).status_code == 202
    assert metrics.HTTP_REQUESTS.labels(*labels)._value.get() == before + 2
