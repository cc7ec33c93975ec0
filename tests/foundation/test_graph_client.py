import json
import threading

import pytest
import requests
from flask import Flask, request
from werkzeug.serving import make_server

from service.graph import BatchItem, GraphClient, GraphError, Throttled, Unauthorized, retry_after_seconds
from tests.support.loopback import serving


@pytest.fixture
def scripted():
    """A loopback HTTP server answering with a scripted list of (status, headers, body)."""
    app = Flask(__name__)
    script, seen = [], []

    @app.route("/v1.0/<path:path>", methods=["GET", "PATCH", "POST"])
    def answer(path):
        seen.append({"path": path, "auth": request.headers.get("Authorization"), "json": request.get_json(silent=True)})
        status, headers, body = script.pop(0)
        return body, status, headers

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield script, seen, f"http://127.0.0.1:{server.server_port}/v1.0"
    server.shutdown()


def client_for(base_url, sleeps, tokens=None):
    tokens = tokens if tokens is not None else []

    def token(force_refresh=False):
        tokens.append(force_refresh)
        return f"token-{len(tokens)}"

    session = requests.Session()
    session.trust_env = False
    return GraphClient(session, base_url, token, timeout=5, sleep=sleeps.append)


def graph_error(code):
    return {"error": {"code": code, "message": "m", "innerError": {"request-id": "r", "date": "d"}}}


def test_throttled_requests_wait_the_fractional_retry_after_then_succeed(scripted):
    script, seen, url = scripted
    script += [(429, {"Retry-After": "0.25"}, graph_error("TooManyRequests")), (200, {}, {"id": "me"})]
    sleeps = []

    body = client_for(url, sleeps).get_json("me")

    assert body == {"id": "me"}
    assert sleeps == [0.25]
    assert len(seen) == 2


def test_a_long_retry_after_goes_back_to_the_job_instead_of_blocking(scripted):
    script, _, url = scripted
    script += [(503, {"Retry-After": "120"}, graph_error("serviceUnavailable"))]
    sleeps = []

    with pytest.raises(Throttled) as excinfo:
        client_for(url, sleeps).get_json("me")

    assert excinfo.value.retry_after == 120.0 and excinfo.value.status == 503
    assert sleeps == []


def test_401_refreshes_the_token_once_then_gives_up(scripted):
    script, seen, url = scripted
    script += [(401, {}, graph_error("InvalidAuthenticationToken"))] * 2
    tokens = []

    with pytest.raises(Unauthorized):
        client_for(url, [], tokens).get_json("me")

    assert tokens == [False, True]
    assert [s["auth"] for s in seen] == ["Bearer token-1", "Bearer token-2"]


def test_graph_error_bodies_become_codes_and_next_links_are_used_verbatim(scripted):
    script, seen, url = scripted
    script += [(410, {}, graph_error("syncStateNotFound"))]

    with pytest.raises(GraphError) as excinfo:
        client_for(url, []).get_json(f"{url}/me/calendarView/delta?$deltatoken=abc")

    assert (excinfo.value.status, excinfo.value.code) == (410, "syncStateNotFound")
    assert seen[0]["path"] == "me/calendarView/delta"


def test_unreachable_graph_is_a_status_0_error_after_bounded_retries():
    sleeps = []

    with pytest.raises(GraphError) as excinfo:
        client_for("http://127.0.0.1:1/v1.0", sleeps).get_json("me")

    assert excinfo.value.status == 0
    assert len(sleeps) == 3


@pytest.mark.parametrize(("raw", "seconds"), [("2", 2.0), ("2.128", 2.128), ("0", 0.0), ("soon", None), (None, None),
                                               ("nan", None), ("-3", 0.0)])
def test_retry_after_parsing(raw, seconds):
    assert retry_after_seconds(raw) == seconds


@pytest.fixture
def keep_alive():
    """A keep-alive loopback server recording which client port sent each request (the client's pool)."""
    seen, answers = [], {"flaky": [503]}

    def answer(path: str, client_port: int) -> tuple[int, dict[str, str], bytes]:
        name = path.rsplit("/", 1)[-1]
        seen.append((name, client_port))
        status = answers[name].pop(0) if answers.get(name) else 200
        return status, {"Retry-After": "0"}, json.dumps({"name": name}).encode()

    with serving(answer) as base_url:
        yield seen, f"{base_url}/v1.0"


def test_a_503_retry_takes_a_new_connection_without_closing_the_pool_other_threads_use(keep_alive):
    seen, url = keep_alive
    session = requests.Session()
    session.trust_env = False
    others = 3
    warm = threading.Barrier(others + 1)

    def warm_up():
        with session.get(f"{url}/warm", stream=True, timeout=5) as response:
            warm.wait(5)  # every thread holds its connection at once, so the pool ends up with four
            response.content  # noqa: B018

    threads = [threading.Thread(target=warm_up) for _ in range(others)]
    for thread in threads:
        thread.start()
    warm_up()
    for thread in threads:
        thread.join()
    pooled = {port for _, port in seen}

    results, go, done = [], threading.Event(), threading.Barrier(others + 1)

    def other_thread():
        go.wait(5)
        client = GraphClient(session, url, lambda force_refresh=False: "t", timeout=5)
        results.extend(client.get_json("other")["name"] for _ in range(3))
        done.wait(5)

    def while_backing_off(seconds):
        go.set()       # the other threads send while this one waits to retry after its 503
        done.wait(5)

    threads = [threading.Thread(target=other_thread) for _ in range(others)]
    for thread in threads:
        thread.start()
    flaky = GraphClient(session, url, lambda force_refresh=False: "t", timeout=5, sleep=while_backing_off)
    body = flaky.get_json("flaky")
    for thread in threads:
        thread.join()

    (first, _), (retry, retry_port) = [(n, p) for n, p in seen if n == "flaky"]
    assert body == {"name": "flaky"} and results == ["other"] * 3 * others
    assert {port for name, port in seen if name == "other"} <= pooled  # nobody lost a pooled connection
    assert retry_port not in pooled  # the retry after the 503 came on a connection of its own
    session.close()


def _answer(rid, status, body=None, headers=None):
    return {"id": rid, "status": status, "headers": headers or {"Content-Type": "application/json"},
            **({"body": body} if body is not None else {})}


def test_a_batch_answers_by_id_and_sends_the_throttled_requests_again_in_a_new_batch(scripted):
    script, seen, url = scripted
    script += [(200, {}, json.dumps({"responses": [   # answered in another order than sent, as Graph may
        _answer("b", 429, graph_error("TooManyRequests"), {"Retry-After": "0.5"}),
        _answer("c", 404, graph_error("ErrorInvalidUser")),
        _answer("a", 200, {"value": [{"id": "cal"}]})]})),
        (200, {}, json.dumps({"responses": [_answer("b", 200, {"value": []})]}))]
    sleeps = []

    answers = client_for(url, sleeps).batch([BatchItem("a", "GET", "users/1/calendars"),
                                             BatchItem("b", "GET", "/users/2/calendars"),
                                             BatchItem("c", "GET", "users/3/calendars")])

    assert answers["a"] == {"value": [{"id": "cal"}]} and answers["b"] == {"value": []}
    assert isinstance(answers["c"], GraphError)
    assert (answers["c"].status, answers["c"].code) == (404, "ErrorInvalidUser")
    assert sleeps == [0.5]   # the longest Retry-After among the throttled, then only they again
    assert [r["url"] for r in seen[0]["json"]["requests"]] == ["/users/1/calendars", "/users/2/calendars",
                                                               "/users/3/calendars"]
    assert all(r["headers"]["Prefer"] == 'IdType="ImmutableId"' for r in seen[0]["json"]["requests"])
    assert [r["id"] for r in seen[1]["json"]["requests"]] == ["b"]


def test_a_request_of_a_batch_throttled_longer_than_the_inline_wait_is_throttled_alone(scripted):
    script, seen, url = scripted
    script += [(200, {}, json.dumps({"responses": [
        _answer("a", 200, {"value": []}),
        _answer("b", 429, graph_error("TooManyRequests"), {"Retry-After": "30"})]}))]
    sleeps = []

    answers = client_for(url, sleeps).batch([BatchItem("a", "GET", "users/1/calendars"),
                                             BatchItem("b", "GET", "users/2/calendars")])

    assert answers["a"] == {"value": []}
    assert isinstance(answers["b"], Throttled) and answers["b"].retry_after == 30
    assert sleeps == [] and len(seen) == 1


def test_a_batch_holds_one_to_twenty_requests_with_distinct_ids(scripted):
    _, seen, url = scripted
    client = client_for(url, [])
    with pytest.raises(ValueError):
        client.batch([BatchItem(str(n), "GET", "me") for n in range(21)])
    with pytest.raises(ValueError):
        client.batch([BatchItem("a", "GET", "me"), BatchItem("A", "GET", "me")])
    with pytest.raises(ValueError):
        client.batch([])
    assert seen == []
