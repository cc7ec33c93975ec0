"""The requests issue 16 found answering 500 under gunicorn, each now a deliberate 4xx with no traceback."""

from __future__ import annotations

import base64
import json

import pytest

from tests.support.fuzz import CLIENT_STATE, SUBSCRIPTION_ID, USER_ID


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8", "surrogatepass")).decode().rstrip("=")


def raw_json(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


KNOWN = {
    "lifecycleEvent as a list": ("POST", "/webhooks/graph/lifecycle", "", "none",
                                 b'{"value":[{"subscriptionId":"x","lifecycleEvent":[0]}]}', "application/json"),
    "lone surrogate subscriptionId": ("POST", "/webhooks/graph", "", "none", json.dumps({"value": [{
        "subscriptionId": "\ud800", "clientState": CLIENT_STATE, "changeType": "updated"}]}).encode(),
        "application/json"),
    "lone surrogate in raw UTF-8": ("POST", "/webhooks/graph", "", "none", raw_json(
        '{"value":[{"subscriptionId":"\ud800","changeType":"updated"}]}'), "application/json"),
    "lone surrogate clientState": ("POST", "/webhooks/graph", "", "none", json.dumps({"value": [{
        "subscriptionId": SUBSCRIPTION_ID, "clientState": "\udfff", "changeType": "updated"}]}).encode(),
        "application/json"),
    "non-ASCII CSRF field on an ops form": ("POST", f"/ops/users/{USER_ID}/resync", "", "ops-session",
                                            "csrf_token=é日本".encode(), "application/x-www-form-urlencoded"),
    "non-ASCII CSRF field on the ops login": ("POST", "/ops/login", "", "ops-session", b"csrf_token=%C3%A9&token=x",
                                              "application/x-www-form-urlencoded"),
    "limit of ² on the API": ("GET", "/api/people", "limit=%C2%B2", "bearer", b"", None),
    "limit of ² on the ops listing": ("GET", "/ops/api/subscriptions", "limit=%C2%B2", "bearer", b"", None),
    "days of ٣ on collaborators": ("GET", f"/api/users/{USER_ID}/collaborators", "days=%D9%A3", "bearer", b"", None),
    "year 9999 with an offset": ("GET", f"/api/users/{USER_ID}/meetings", "start=9999-12-31T23:59:59-05:00",
                                 "bearer", b"", None),
    "year 0001 with an offset": ("GET", f"/api/users/{USER_ID}/meetings", "end=0001-01-01T00:00:00%2B05:00",
                                 "bearer", b"", None),
    "year 9999 start plus a week": ("GET", f"/api/users/{USER_ID}/meetings", "start=9999-12-30T00:00:00Z",
                                    "bearer", b"", None),
    "meetings cursor at year 9999": ("GET", f"/api/users/{USER_ID}/meetings",
                                     "cursor=" + cursor('["9999-12-31T23:59:59-05:00","x"]'), "bearer", b"", None),
    "ops cursor at year 0001": ("GET", "/ops/api/subscriptions",
                                "cursor=" + cursor('["after","0001-01-01T00:00:00+05:00","x"]'), "bearer", b"", None),
    "cursor of nested brackets": ("GET", "/api/people", "cursor=" + cursor("[" * 5000), "bearer", b"", None),
    "ops cursor of nested brackets": ("GET", "/ops/api/subscriptions", "cursor=" + cursor("[" * 1500),
                                      "bearer", b"", None),
    "cursor with a lone surrogate": ("GET", "/api/people", "cursor=" + cursor('["\\ud800"]'), "bearer", b"", None),
    "people body of nested brackets": ("POST", "/api/people", "", "bearer", b"[" * 5000 + b"]" * 5000,
                                       "application/json"),
    "people body nested just past the limit": ("POST", "/api/people", "", "bearer",
                                               b'{"people": [{"email": "a@b.c", "assessments": ' + b"[" * 40
                                               + b"]" * 40 + b"}]}", "application/json"),
    "email with a lone surrogate": ("POST", "/api/people", "", "bearer", b'{"email": "\\ud800@contoso.com"}',
                                    "application/json"),
    "name with a lone surrogate": ("POST", "/api/people", "", "bearer",
                                   b'[{"email": "a@contoso.com", "name": "x\\udc00"}]', "application/json"),
    "an integer past 64 bits": ("POST", "/api/people", "", "bearer",
                                b'{"email": "b@contoso.com", "assessments": {"disc": ' + b"9" * 30 + b"}}",
                                "application/json"),
}


@pytest.mark.parametrize("case", list(KNOWN), ids=list(KNOWN))
def test_a_known_crash_is_now_a_deliberate_client_error(fuzz_app, tracebacks, case):
    app, context = fuzz_app
    method, path, query, auth, body, content_type = KNOWN[case]
    headers = {}
    if auth == "bearer":
        headers["Authorization"] = f"Bearer {context.ops_token}"
    elif auth == "ops-session":
        headers["Cookie"] = context.cookies["ops"]
    if content_type:
        headers["Content-Type"] = content_type

    response = app.test_client().open(path, method=method, query_string=query, headers=headers, data=body)

    assert response.status_code < 500, (response.status_code, tracebacks.text())
    assert tracebacks.records == [], tracebacks.text()
    assert b"Traceback" not in response.data
