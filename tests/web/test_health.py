import socket
import threading
import time

import pytest
import requests

from service.app import create_app
from service.runtime import Runtime
from tests.support.serving import served_app

READY_WITHIN = 5.0   # seconds: a load balancer's probe gives up about then


def test_healthz_answers_while_the_process_lives(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_is_200_when_mongodb_and_redis_answer(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.get_json()["checks"] == {"mongodb": "ok", "redis": "ok"}


def test_readyz_names_redis_when_it_is_down_without_hanging(make_settings, db):
    """A port nothing listens on: a refused connection, reported as 503 within seconds (the runtime's own
    Redis client, its timeouts and its one retry) and never as a hang or a secret."""
    url = "redis://:hunter2-secret@127.0.0.1:1/0"
    with served_app(make_settings, db, None, redis_url=url) as (rt, base):
        assert rt.settings.redis_url == url
        started = time.monotonic()
        try:
            response = requests.get(f"{base}/readyz", timeout=READY_WITHIN)
        except requests.Timeout:
            pytest.fail(f"/readyz did not answer within {READY_WITHIN}s with Redis down")
        elapsed = time.monotonic() - started

    assert elapsed < READY_WITHIN
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["redis"]
    assert body["checks"]["mongodb"] == "ok"
    assert "hunter2" not in response.text


def test_readyz_names_mongodb_when_it_is_down(make_settings, redis_conn):
    settings = make_settings(mongodb_uri="mongodb://127.0.0.1:1/calsync")
    rt = Runtime(settings, redis_conn=redis_conn)
    app = create_app(runtime=rt)

    response = app.test_client().get("/readyz")
    rt.close()

    assert response.status_code == 503
    assert response.get_json()["failed"] == ["mongodb"]


def test_readyz_names_redis_that_accepts_and_never_answers_within_its_bound(make_settings, db):
    """A Redis that takes the connection and then says nothing (a hung server, a black-holing proxy): the probe
    gives up after its own short timeout, not the runtime's 5 s socket timeout and its retry."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_stay_silent():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_stay_silent, daemon=True)
    thread.start()
    url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    try:
        with served_app(make_settings, db, None, redis_url=url) as (_rt, base):
            started = time.monotonic()
            response = requests.get(f"{base}/readyz", timeout=READY_WITHIN * 3)
            elapsed = time.monotonic() - started
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in accepted:
            conn.close()
        listener.close()

    assert accepted, "the probe never reached the silent server"
    assert response.status_code == 503 and response.json()["failed"] == ["redis"]
    assert elapsed < 3.5, f"/readyz took {elapsed:.1f}s with a silent Redis"
