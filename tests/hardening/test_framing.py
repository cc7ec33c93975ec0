"""Framing attacks against the Procfile's own gunicorn on loopback, with real Redis and the wire server:
malformed chunked bodies, lying lengths, oversized bodies. Every answer is a deliberate 4xx (413 for the
oversized ones) or 2xx, the server keeps serving, and its log holds no traceback."""

from __future__ import annotations

import http.client
import os
import socket
import sys
from collections import Counter
from pathlib import Path

import hypothesis
import pytest
import requests

from harness.loopback import free_port
from harness.topology import Topology
from harness.waiting import wait_until
from service.app import create_app
from tests.support.fuzz import LONG, attacks, make_context, seed
from tests.support.serving import OPS_TOKEN
from tests.support.topology import ready

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 4096   # CALSYNC_MAX_NOTIFICATION_BYTES for this server, so "too large" is cheap to send
AUTH = f"Authorization: Bearer {OPS_TOKEN}\r\n"

CHUNKED = "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: {ctype}\r\nTransfer-Encoding: chunked\r\n\r\n"
CASES = {
    # name: (path, raw bytes after the headers, content type)
    "negative chunk size": ("/webhooks/graph", b"-1\r\n{}\r\n0\r\n\r\n", "application/json"),
    "garbage chunk size": ("/webhooks/graph", b"zz\r\n{}\r\n0\r\n\r\n", "application/json"),
    "huge chunk size": ("/webhooks/graph", b"FFFFFFFFFFFFFFFFFFFFFFFF\r\n{}\r\n0\r\n\r\n", "application/json"),
    "chunk longer than declared": ("/webhooks/graph", b"2\r\n{}}}}}\r\n0\r\n\r\n", "application/json"),
    "chunk without terminator": ("/webhooks/graph", b"2\r\n{}XX0\r\n\r\n", "application/json"),
    "bad chunk extension": ("/webhooks/graph/lifecycle", b"2;\x00=\x01\r\n{}\r\n0\r\n\r\n", "application/json"),
    "truncated chunked body": ("/webhooks/graph", b"a\r\n{\"val", "application/json"),
    "garbage chunk on the people API": ("/api/people", b"-5\r\n[]\r\n0\r\n\r\n", "application/json"),
    "garbage chunk on an ops form": ("/ops/login", b"q\r\ntoken=x\r\n0\r\n\r\n", "application/x-www-form-urlencoded"),
    "garbage chunk on the settings form": ("/digest/settings", b"1x\r\nt=x\r\n0\r\n\r\n",
                                           "application/x-www-form-urlencoded"),
    "oversized chunked webhook": ("/webhooks/graph", b"".join([b"400\r\n" + b" " * 1024 + b"\r\n"] * 8) + b"0\r\n\r\n",
                                  "application/json"),
}
RAW = {
    # name: the whole request
    "negative Content-Length": b"POST /webhooks/graph HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}",
    "non-numeric Content-Length": b"POST /api/people HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
    "two Content-Lengths": (b"POST /webhooks/graph HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                            b"Content-Length: 9\r\n\r\n{}"),
    "Content-Length and chunked": (b"POST /webhooks/graph HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"),
    "unknown transfer coding": (b"POST /webhooks/graph HTTP/1.1\r\nHost: x\r\n"
                                b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
    "short body for its length": b"POST /api/people HTTP/1.1\r\nHost: x\r\n" + AUTH.encode()
                                 + b"Content-Type: application/json\r\nContent-Length: 500\r\n\r\n[{}",
    "oversized webhook by length": (b"POST /webhooks/graph HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                    + f"Content-Length: {LIMIT * 4}\r\n\r\n".encode() + b" " * (LIMIT * 4)),
    "oversized API body by length": (b"POST /api/people HTTP/1.1\r\nHost: x\r\n" + AUTH.encode()
                                     + b"Content-Type: application/json\r\nContent-Length: 17000000\r\n\r\n[]"),
    "non-ASCII request target": "GET /api/users/é\ud800 HTTP/1.1\r\nHost: x\r\n\r\n".encode("utf-8", "surrogatepass"),
    "control bytes in a header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: \x01\x02\x7f\r\n\r\n",
    "no Host, HTTP/1.0": b"GET /ops/api/health HTTP/1.0\r\n\r\n",
}
EXPECTED_413 = {"oversized chunked webhook", "oversized webhook by length", "oversized API body by length"}


def play(port: int, attack) -> tuple[int, dict]:
    """One drawn attack over HTTP/1.1 to the server; (status, headers)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest(attack.method, attack.target, skip_host="Host" in attack.headers,
                              skip_accept_encoding=True)
        for name, value in attack.headers.items():
            connection.putheader(name, value.encode("latin-1"))
        connection.putheader("Content-Length", str(len(attack.body)))
        connection.endheaders(attack.body)
        response = connection.getresponse()
        response.read()
        return response.status, dict(response.headers)
    finally:
        connection.close()


def exchange(port: int, request: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes, half-close, and read the whole answer (the server may close early)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server answered and closed before reading everything (an oversized body)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return answer


def status_of(answer: bytes) -> int | None:
    line = answer.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) >= 2 and line[1].isdigit() else None


@pytest.fixture
def gunicorn(tmp_path, mongodb_uri, redis_url, db):
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CALSYNC_") and k not in ("MONGODB_URI", "REDIS_URL")}
    env.update({"PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", "PYTHONPATH": str(ROOT),
                "MONGODB_URI": mongodb_uri, "REDIS_URL": redis_url, "CALSYNC_OPS_TOKEN": OPS_TOKEN,
                "CALSYNC_PUBLIC_URL": f"http://127.0.0.1:{port}", "CALSYNC_DATA_DIR": str(tmp_path / "var"),
                "CALSYNC_MAX_NOTIFICATION_BYTES": str(LIMIT), "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port}"})
    (tmp_path / "logs").mkdir()
    topology = Topology(env, tmp_path / "logs")
    seeded = seed(db)
    topology.start("web")
    try:
        wait_until(lambda: ready(f"http://127.0.0.1:{port}"), timeout=60, interval=0.2, message="gunicorn to be ready")
    except AssertionError as exc:
        topology.stop()
        raise AssertionError(f"{exc}\n{topology.tail()}") from None
    try:
        yield port, topology, seeded
    finally:
        assert topology.stop() == []


@pytest.mark.wire
def test_malformed_framing_gets_a_deliberate_answer_and_no_traceback(gunicorn):
    port, topology, _ = gunicorn
    answers = {}
    for name, (path, tail, ctype) in CASES.items():
        head = CHUNKED.format(path=path, auth=AUTH if path.startswith(("/api", "/ops")) else "", ctype=ctype)
        answers[name] = status_of(exchange(port, head.encode() + tail))
    for name, request in RAW.items():
        answers[name] = status_of(exchange(port, request))
    still = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code
    log = (topology.log_dir / "web.1.log").read_text(errors="replace")

    print("framing: " + ", ".join(f"{name} -> {status}" for name, status in answers.items()))
    bad = {name: status for name, status in answers.items() if status is None or status >= 500}
    assert bad == {}, f"{bad}\n{log[-4000:]}"
    assert {name for name, status in answers.items() if status == 413} >= EXPECTED_413, answers
    assert still == 200
    assert "Traceback" not in log and "Error handling request" not in log, log[-4000:]


@pytest.mark.wire
def test_drawn_hostile_requests_through_gunicorn_get_deliberate_answers(gunicorn, settings):
    """A sample of the in-process suite's requests, through the real server's parser and encodings."""
    port, topology, seeded = gunicorn
    context = make_context(create_app(settings), settings, seeded)
    seen = Counter()

    @hypothesis.seed(1616)
    @hypothesis.settings(max_examples=5_000 if LONG else 200, deadline=None, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(attack=attacks(context))
    def check(attack):
        status, headers = play(port, attack)
        seen[status] += 1
        assert status < 500 or (status == 503 and "Retry-After" in headers), (status, attack)

    check()
    log = (topology.log_dir / "web.1.log").read_text(errors="replace")
    print(f"gunicorn fuzz: {sum(seen.values())} requests; statuses {dict(sorted(seen.items()))}")
    assert "Traceback" not in log and "Error handling request" not in log, log[-4000:]
