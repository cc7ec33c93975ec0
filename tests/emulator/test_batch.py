"""`POST /v1.0/$batch` (graph/json-batching): up to 20 requests, each answered as it would be alone, correlated by
id, dependsOn with 424, and throttling counted per request (a 429 inside the batch, with its own Retry-After)."""

from __future__ import annotations

import pytest

from tests.support.emulated import assert_graph_error, sub_body


def _probe(rid: str, user_id: str) -> dict:
    return {"id": rid, "method": "GET", "url": f"/users/{user_id}/calendars?$top=1&$select=id"}


def _batch(graph, requests: list[dict]):
    return graph.post("/$batch", {"requests": requests})


def test_each_request_is_answered_as_alone_and_correlated_by_id(world, receiver):
    ada, bob = world.ada["id"], world.bob["id"]
    alone = world.app_graph.get(f"/users/{ada}/calendars?$top=1&$select=id").json()
    requests = [_probe("1", ada), _probe("2", bob), _probe("3", "nobody@contoso.com"),
                {"id": "4", "method": "POST", "url": "subscriptions", "headers": {"Content-Type": "application/json"},
                 "body": sub_body(receiver, resource=f"users/{ada}/events")}]
    response = _batch(world.app_graph, requests)
    assert response.status_code == 200, response.text
    answers = {r["id"]: r for r in response.json()["responses"]}
    assert set(answers) == {"1", "2", "3", "4"}
    assert answers["1"]["status"] == 200 and answers["1"]["body"]["value"] == alone["value"]
    assert answers["2"]["status"] == 200
    assert answers["3"]["status"] == 404 and answers["3"]["body"]["error"]["code"] == "ErrorInvalidUser"
    assert answers["4"]["status"] == 201 and answers["4"]["body"]["resource"] == f"users/{ada}/events"
    assert answers["1"]["headers"]["Content-Type"].startswith("application/json")
    assert [s["id"] for s in world.handle.control.subscriptions()] == [answers["4"]["body"]["id"]]
    # Each individual request went through the app (its log, limits and faults); the batch is logged too.
    log = world.handle.control.graph_requests()
    inner = [(r["method"], r["path"], r["status"]) for r in log if r["in_batch"]]
    assert sorted(inner) == sorted([("GET", f"/v1.0/users/{ada}/calendars", 200),
                                    ("GET", f"/v1.0/users/{bob}/calendars", 200),
                                    ("GET", "/v1.0/users/nobody@contoso.com/calendars", 404),
                                    ("POST", "/v1.0/subscriptions", 201)])
    assert [r["path"] for r in log if r["path"] == "/v1.0/$batch"] == ["/v1.0/$batch"]


def test_responses_may_come_in_another_order_than_the_requests(world):
    ids = [str(n) for n in range(1, 13)]
    response = _batch(world.app_graph, [_probe(rid, world.ada["id"]) for rid in ids])
    answered = [r["id"] for r in response.json()["responses"]]
    assert sorted(answered) == sorted(ids) and answered != ids   # the server's order: callers go by id


def test_the_token_of_the_batch_applies_to_each_request(world):
    response = _batch(world.ada_graph, [_probe("mine", world.ada["id"]), _probe("bobs", world.bob["id"])])
    answers = {r["id"]: r for r in response.json()["responses"]}
    assert answers["mine"]["status"] == 200
    assert answers["bobs"]["status"] == 403 and answers["bobs"]["body"]["error"]["code"] == "ErrorAccessDenied"
    anonymous = world.graph(None)
    answers = _batch(anonymous, [_probe("1", world.ada["id"])]).json()["responses"]
    assert answers[0]["status"] == 401


@pytest.mark.parametrize(("requests", "why"), [
    ([_probe(str(n), "x") for n in range(21)], "at most 20"),
    ([_probe("a", "x"), _probe("A", "y")], "not unique"),
    ([{"id": "1", "method": "POST", "url": "/subscriptions", "body": {}}], "Content-Type"),
    ([_probe("1", "x") | {"dependsOn": ["9"]}], "depends on"),
    ([_probe("1", "x") | {"dependsOn": ["2"]}, _probe("2", "x") | {"dependsOn": ["1"]}], "cycle"),
    ([{"id": "1", "method": "GET", "url": "https://graph.microsoft.com/v1.0/me"}], "relative"),
    ([{"id": "1", "method": "FETCH", "url": "/me"}], "method"),
    ([], "empty"),
])
def test_a_malformed_batch_is_a_400(world, requests, why):
    body = assert_graph_error(_batch(world.app_graph, requests), 400, "BadRequest")
    assert why in body["error"]["message"]


def test_not_json_is_a_400(world):
    response = world.app_graph.session.post(world.app_graph.base + "/$batch", data="nope", timeout=10,
                                            headers={"Content-Type": "application/json"})
    assert_graph_error(response, 400, "BadRequest")


def test_a_request_whose_dependency_failed_is_424(world):
    requests = [_probe("1", "nobody@contoso.com"), _probe("2", world.ada["id"]) | {"dependsOn": ["1"]},
                _probe("3", world.ada["id"]), _probe("4", world.bob["id"]) | {"dependsOn": ["3"]}]
    answers = {r["id"]: r for r in _batch(world.app_graph, requests).json()["responses"]}
    assert answers["1"]["status"] == 404
    assert answers["2"]["status"] == 424 and answers["2"]["body"]["error"]["code"] == "FailedDependency"
    assert answers["3"]["status"] == 200 and answers["4"]["status"] == 200
    ran = [r["path"] for r in world.handle.control.graph_requests() if r["in_batch"]]
    assert len(ran) == 3   # the request that depended on a failure never ran


def test_each_request_counts_against_the_throttling_limits(world, receiver):
    """A batch of three subscription creates against a limit of two writes per 20 s: two are created, the third is
    a 429 carrying its own Retry-After; the batch itself is a 200."""
    world.handle.control.set_limits(subscription_writes_per_20_seconds=2)
    requests = [{"id": str(n), "method": "POST", "url": "/subscriptions",
                 "headers": {"Content-Type": "application/json"},
                 "body": sub_body(receiver, resource=f"users/{user['id']}/events")}
                for n, user in enumerate([world.ada, world.bob, world.ada], start=1)]
    response = _batch(world.app_graph, requests)
    assert response.status_code == 200
    statuses = sorted(r["status"] for r in response.json()["responses"])
    assert statuses[:2] in ([201, 201], [201, 409]) and statuses[2] == 429
    throttled = next(r for r in response.json()["responses"] if r["status"] == 429)
    assert float(throttled["headers"]["Retry-After"]) > 0
    assert throttled["body"]["error"]["code"] == "TooManyRequests"
    assert world.handle.control.limits()["throttled"]["SubscriptionWriteRate"] == 1


def test_a_fault_on_one_mailbox_is_that_request_s_answer(world):
    world.handle.control.set_faults(rate_429=1.0, retry_after="3", path_prefix=f"/users/{world.bob['id']}/")
    answers = {r["id"]: r for r in _batch(world.app_graph, [_probe("a", world.ada["id"]),
                                                            _probe("b", world.bob["id"])]).json()["responses"]}
    assert answers["a"]["status"] == 200
    assert answers["b"]["status"] == 429 and answers["b"]["headers"]["Retry-After"] == "3"



def test_microsofts_sdk_batches_against_the_emulator(world, emu):
    """msgraph-sdk's own batch classes (msgraph-core's BatchRequestContent and BatchRequestBuilder) build and send
    the request and read the statuses by id: the emulator's $batch takes what Microsoft's client sends. (The
    bodies are read from the raw answer: this msgraph-core reads a JSON object body as bytes, into None.)"""
    from msgraph_core.requests.batch_request_builder import BatchRequestBuilder
    from msgraph_core.requests.batch_request_content import BatchRequestContent
    from msgraph_core.requests.batch_request_item import BatchRequestItem

    from tests.support.sdk_contract import run, sdk_client

    ada, bob, nobody = world.ada["id"], world.bob["id"], "nobody@contoso.com"
    client, adapter, recorder = sdk_client(emu.graph_url, emu.ca_bundle,
                                           emu.control.token(tenant_id=world.tenant["id"]))
    items = {user_id: BatchRequestItem(client.users.by_user_id(user_id).calendars.to_get_request_information())
             for user_id in (ada, bob, nobody)}

    async def batch():
        answers = await BatchRequestBuilder(adapter).post(BatchRequestContent({i.id: i for i in items.values()}))
        return answers.get_response_status_codes()

    statuses = run(batch(), recorder)

    assert statuses == {items[ada].id: 200, items[bob].id: 200, items[nobody].id: 404}
    [exchange] = recorder.exchanges
    assert exchange.method == "POST" and exchange.path == "/v1.0/$batch" and exchange.status == 200
    bodies = {answer["id"]: answer["body"] for answer in exchange.body["responses"]}
    for user_id in (ada, bob):
        assert bodies[items[user_id].id]["value"] == world.app_graph.get(f"/users/{user_id}/calendars").json()["value"]
    assert bodies[items[nobody].id]["error"]["code"] == "ErrorInvalidUser"
