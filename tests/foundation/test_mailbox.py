"""Outlook's per-mailbox limits held across clients: at most 4 requests in flight per mailbox, and a 429 pauses
that mailbox (only that one) for its Retry-After. A real loopback server counts what arrives at once."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from harness.waiting import wait_until
from service.graph import GraphClient, Throttled
from service.mailbox import MailboxGate


class CountingServer:
    """Answers ``/users/{id}/x`` slowly and records the most requests it held at once per user."""

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.now: dict[str, int] = defaultdict(int)
        self.peak: dict[str, int] = defaultdict(int)
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self.throttle_next: dict[str, float] = {}   # mailbox -> Retry-After for its next request

    def __call__(self, environ, start_response):
        mailbox = Request(environ).path.split("/")[2]
        with self.lock:
            self.arrivals[mailbox].append(time.monotonic())
            retry_after = self.throttle_next.pop(mailbox, None)
            self.now[mailbox] += 1
            self.peak[mailbox] = max(self.peak[mailbox], self.now[mailbox])
        try:
            if retry_after is not None:
                body = {"error": {"code": "ApplicationThrottled",
                                  "message": "Application is over its MailboxConcurrency limit."}}
                return Response(json.dumps(body), 429, {"Retry-After": str(retry_after)},
                                content_type="application/json")(environ, start_response)
            time.sleep(self.delay)
            return Response("{}", content_type="application/json")(environ, start_response)
        finally:
            with self.lock:
                self.now[mailbox] -= 1


@pytest.fixture
def server():
    app = CountingServer()
    http = make_server("127.0.0.1", 0, app, threaded=True)
    app.url = f"http://127.0.0.1:{http.server_port}/"
    thread = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield app
    http.shutdown()
    thread.join(5)
    http.server_close()


def hammer(server, gate, mailboxes: list[str], per_mailbox: int = 16, threads_per_mailbox: int = 8) -> list:
    """Threads with their own clients and sessions (as separate workers would) call each mailbox at once."""
    errors = []

    def run(mailbox: str) -> None:
        client = GraphClient(requests.Session(), server.url, token=lambda force_refresh=False: "t",
                             gate=gate, mailbox=mailbox)
        for _ in range(per_mailbox // threads_per_mailbox):
            try:
                client.get_json(f"users/{mailbox}/x")
            except Throttled as exc:
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(m,)) for m in mailboxes for _ in range(threads_per_mailbox)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return errors


def test_without_the_gate_one_mailbox_gets_more_than_four_requests_at_once(server):
    assert hammer(server, None, ["ana"]) == []
    assert server.peak["ana"] > 4    # the problem the gate exists for


def test_the_gate_keeps_every_mailbox_at_four_in_flight_across_clients(server, redis_conn):
    gates = [MailboxGate(redis_conn, max_wait=20) for _ in range(2)]   # two "workers", one Redis

    errors = []
    threads = [threading.Thread(target=lambda g=g: errors.extend(hammer(server, g, ["ana", "ben"])))
               for g in gates]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert errors == []
    assert len(server.arrivals["ana"]) == 32 and len(server.arrivals["ben"]) == 32
    assert server.peak["ana"] == 4 and server.peak["ben"] == 4
    assert gates[0].in_flight("ana") == 0   # every slot given back


def test_a_429_pauses_that_mailbox_for_its_retry_after_and_no_other(server, redis_conn):
    gate = MailboxGate(redis_conn, max_wait=5)
    server.throttle_next["ana"] = 1.5
    first = GraphClient(requests.Session(), server.url, token=lambda force_refresh=False: "t",
                        gate=gate, mailbox="ana")
    throttled_at = time.monotonic()
    first.get_json("users/ana/x")            # 429, waits its Retry-After, then succeeds

    assert len(server.arrivals["ana"]) == 2
    assert server.arrivals["ana"][1] - server.arrivals["ana"][0] >= 1.4
    server.throttle_next["ana"] = 2.0
    with pytest.raises(Throttled):            # a second client's 429: the pause is shared...
        GraphClient(requests.Session(), server.url, token=lambda force_refresh=False: "t", gate=gate,
                    mailbox="ana", max_inline_wait=0.5).get_json("users/ana/x")
    assert gate.paused_for("ana") > 1.0
    before = len(server.arrivals["ana"])
    other = GraphClient(requests.Session(), server.url, token=lambda force_refresh=False: "t",
                        gate=MailboxGate(redis_conn, max_wait=0.5), mailbox="ana")
    with pytest.raises(Throttled) as caught:  # ...so another client does not even send while it lasts
        other.get_json("users/ana/x")
    assert caught.value.code == "MailboxBusy" and caught.value.retry_after >= 1.0
    assert len(server.arrivals["ana"]) == before
    GraphClient(requests.Session(), server.url, token=lambda force_refresh=False: "t", gate=gate,
                mailbox="ben").get_json("users/ben/x")     # a different mailbox is not paused
    assert len(server.arrivals["ben"]) == 1
    assert time.monotonic() - throttled_at < 10


def test_a_killed_holders_slot_expires(redis_conn, monkeypatch):
    gate = MailboxGate(redis_conn, max_wait=0.2)
    monkeypatch.setattr("service.mailbox.LEASE_SECONDS", 1)
    holders = [gate.slot("ana") for _ in range(4)]
    for holder in holders:
        holder.__enter__()                    # four slots taken and never given back (a SIGKILL)
    with pytest.raises(Exception, match="mailbox busy"):
        with gate.slot("ana"):
            pass
    wait_until(lambda: gate.in_flight("ana") == 0, timeout=10,
               message="the four leases to expire on Redis's clock")
    with gate.slot("ana"):
        assert gate.in_flight("ana") == 1
