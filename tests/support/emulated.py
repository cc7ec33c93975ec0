"""Helpers for the emulator's own tests: a webhook receiver, a tenant with users and their Graph clients,
Graph-shaped request bodies and error checks."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import requests
from werkzeug.serving import WSGIRequestHandler
from werkzeug.wrappers import Request, Response

from emulator.testing import EmulatorHandle

PT = "Pacific Standard Time"


class _Quiet(WSGIRequestHandler):
    def log_request(self, code="-", size="-"):
        pass


@dataclass
class Receiver:
    """A plain-HTTP loopback webhook endpoint that records what the emulator POSTs to it.

    ``validation`` decides how it answers the handshake: echo (correct), wrong, json, status500, slow.
    ``statuses`` is a queue of status codes for notification POSTs (then ``default_status``).
    """

    url: str = ""
    validation: str = "echo"
    statuses: list[int] = field(default_factory=list)
    default_status: int = 202
    delay: float = 0.0
    posts: list[dict] = field(default_factory=list)
    validations: list[dict] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def __call__(self, environ, start_response):
        request = Request(environ)
        token = request.args.get("validationToken")
        if token is not None:
            return self._validate(request, token)(environ, start_response)
        body = json.loads(request.get_data() or b"{}")
        with self.cond:
            status = self.statuses.pop(0) if self.statuses else self.default_status
            self.posts.append({"path": request.path, "body": body, "status": status, "at": time.monotonic()})
            self.cond.notify_all()
        if self.delay:
            time.sleep(self.delay)
        return Response("", status=status)(environ, start_response)

    def _validate(self, request: Request, token: str) -> Response:
        with self.cond:
            self.validations.append({"path": request.path, "token": token, "query": request.query_string.decode(),
                                     "content_type": request.headers.get("Content-Type")})
        if self.validation == "wrong":
            return Response(token + "x", content_type="text/plain")
        if self.validation == "json":
            return Response(json.dumps(token), content_type="application/json")
        if self.validation == "status500":
            return Response(token, status=500, content_type="text/plain")
        if self.validation == "slow":
            time.sleep(1.5)
        return Response(token, content_type="text/plain; charset=utf-8")

    def notifications(self, path: str | None = None) -> list[dict]:
        with self.cond:
            return [n for p in self.posts if path is None or p["path"] == path for n in p["body"]["value"]]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                assert remaining > 0, "timed out waiting for the receiver"
                self.cond.wait(remaining)


IMMUTABLE_IDS = 'IdType="ImmutableId"'


def _prefer_immutable(kwargs: dict, immutable: bool) -> dict:
    """Ask for immutable ids (as calsync does on every request), keeping any other Prefer the test gives."""
    if not immutable:
        return kwargs
    headers = dict(kwargs.get("headers") or {})
    headers["Prefer"] = ", ".join(p for p in (headers.get("Prefer"), IMMUTABLE_IDS) if p)
    return kwargs | {"headers": headers}


class Graph:
    """A tiny Graph client: a Bearer token, the emulator's CA, nothing from the environment. It asks for immutable
    ids unless ``immutable=False`` (then Outlook's regular ids, which change when an item moves)."""

    def __init__(self, handle: EmulatorHandle, token: str | None, immutable: bool = True):
        self.base = handle.graph_url
        self.immutable = immutable
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = handle.ca_bundle
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, **kwargs) -> requests.Response:
        url = path if path.startswith("https://") else self.base + path
        return self.session.get(url, timeout=10, **_prefer_immutable(kwargs, self.immutable))

    def post(self, path: str, body: dict | None = None, **kwargs) -> requests.Response:
        return self.session.post(self.base + path, json=body, timeout=15, **_prefer_immutable(kwargs, self.immutable))

    def patch(self, path: str, body: dict, **kwargs) -> requests.Response:
        return self.session.patch(self.base + path, json=body, timeout=15,
                                  **_prefer_immutable(kwargs, self.immutable))

    def delete(self, path: str) -> requests.Response:
        return self.session.delete(self.base + path, timeout=10)

    def delta_all(self, url: str, page_size: int | None = None) -> tuple[list[dict], str, int]:
        """Follow nextLinks to the end of a round: (entries, deltaLink, pages)."""
        headers = {"Prefer": f"odata.maxpagesize={page_size}"} if page_size else {}
        entries, pages = [], 0
        while True:
            response = self.get(url, headers=headers)
            assert response.status_code == 200, response.text
            body = response.json()
            pages += 1
            entries.extend(body["value"])
            assert not ("@odata.nextLink" in body and "@odata.deltaLink" in body)
            if "@odata.deltaLink" in body:
                return entries, body["@odata.deltaLink"], pages
            url = body["@odata.nextLink"]


@dataclass
class World:
    tenant: dict
    ada: dict
    bob: dict
    ada_graph: Graph
    app_graph: Graph
    handle: EmulatorHandle

    def graph(self, token: str | None, immutable: bool = True) -> Graph:
        return Graph(self.handle, token, immutable)


def event_body(subject: str, start: str, end: str, tz: str = PT, **extra) -> dict:
    return {"subject": subject, "start": {"dateTime": start, "timeZone": tz},
            "end": {"dateTime": end, "timeZone": tz}, **extra}


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def assert_graph_error(response: requests.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert {"request-id", "date"} <= set(body["error"]["innerError"])
    return body


def iso(minutes: float, now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return (now + dt.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


def sub_body(receiver, **extra) -> dict:
    return {"changeType": "created,updated,deleted", "notificationUrl": f"{receiver.url}/notify?tenant=x",
            "lifecycleNotificationUrl": f"{receiver.url}/lifecycle", "resource": "me/events",
            "expirationDateTime": iso(4000), "clientState": "s3cret", **extra}


def subscribe(world, receiver, **extra) -> dict:
    response = world.ada_graph.post("/subscriptions", sub_body(receiver, **extra))
    assert response.status_code == 201, response.text
    return response.json()
