"""`POST /v1.0/$batch`: JSON batching, as Microsoft documents it (graph/json-batching, graph/throttling).

- The body is one JSON object whose ``requests`` holds up to 20 individual requests (``MAX_REQUESTS``), each
  with ``id`` (a string, unique in the batch, not case-sensitive), ``method``, ``url`` (relative to the version:
  ``/users`` for ``https://graph.microsoft.com/v1.0/users``), optional ``headers`` (required with a ``body``,
  which then needs a ``Content-Type``), optional ``body`` and optional ``dependsOn`` (ids of requests of the same
  batch). A malformed batch (more than 20, duplicate ids, an unknown dependency, …) is answered ``400``; a
  parseable one ``200``, whatever its requests answered.
- The answer's ``responses`` carry ``id``, ``status``, ``headers`` and ``body`` per request, "in a different
  order than the requests" possibly: here in the order they ran, which is not the order they were sent (the
  server chooses; callers correlate by ``id``).
- "If an individual request fails, any request that depends on that request fails with status code 424 (Failed
  Dependency)."
- "Requests in a batch are evaluated individually against the applicable throttling limits and if any request
  exceeds the limits, it fails with a status of 429", with its own ``Retry-After`` among its headers.
  (graph/throttling's "Throttling and batching" also says the batch itself then fails with 424; json-batching,
  revised later, says a parseable batch is 200 and only its responses carry the failures: the emulator answers
  200, as json-batching does.)

Each request runs through this same Flask app (its routes, authentication, per-mailbox limits, subscription
write limit, faults and request log), with the batch's ``Authorization``, so a request answers in a batch
exactly what it answers alone.
"""

from __future__ import annotations

import base64
import json

from flask import Blueprint, current_app, jsonify, request

from emulator.errors import GraphError, bad_request, error_body

MAX_REQUESTS = 20
METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})
# Headers of an individual answer that describe the batch's transport, not the request (Graph leaves them out).
HOP_HEADERS = frozenset({"content-length", "connection", "transfer-encoding", "date", "server"})
BATCH_MARK = "emulator.batch"   # WSGI environ key: the request ran inside a $batch (the request log says so)


def _malformed(message: str) -> GraphError:
    return bad_request(message, "BadRequest")


def _parse(payload: object) -> list[dict]:
    """The individual requests of a batch body, checked; GraphError 400 when the batch is malformed."""
    if not isinstance(payload, dict) or not isinstance(payload.get("requests"), list):
        raise _malformed("Invalid batch payload format: a JSON object with a 'requests' array is expected.")
    items = payload["requests"]
    if not items:
        raise _malformed("Invalid batch payload format: 'requests' is empty.")
    if len(items) > MAX_REQUESTS:
        raise _malformed(f"Invalid batch payload format: a batch holds at most {MAX_REQUESTS} requests "
                         f"({len(items)} given).")
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            raise _malformed("Invalid batch payload format: each request must be a JSON object.")
        rid, method, url = item.get("id"), item.get("method"), item.get("url")
        if not isinstance(rid, str) or not rid.strip():
            raise _malformed("Invalid batch payload format: every request needs a string 'id'.")
        if rid.lower() in seen:
            raise _malformed(f"Invalid batch payload format: the request id '{rid[:40]}' is not unique.")
        seen.add(rid.lower())
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise _malformed(f"Invalid batch payload format: request '{rid[:40]}' has no valid 'method'.")
        if not isinstance(url, str) or not url.strip() or "://" in url:
            raise _malformed(f"Invalid batch payload format: request '{rid[:40]}' needs a relative 'url'.")
        headers = item.get("headers")
        if headers is not None and (not isinstance(headers, dict)
                                    or not all(isinstance(v, str) for v in headers.values())):
            raise _malformed(f"Invalid batch payload format: request '{rid[:40]}' has invalid 'headers'.")
        if "body" in item and item["body"] is not None:
            if not any(str(k).lower() == "content-type" for k in (headers or {})):
                raise _malformed(f"Invalid batch payload format: request '{rid[:40]}' has a body but no "
                                 "Content-Type header.")
        depends = item.get("dependsOn")
        if depends is not None and (not isinstance(depends, list) or not all(isinstance(d, str) for d in depends)):
            raise _malformed(f"Invalid batch payload format: 'dependsOn' of request '{rid[:40]}' must be an "
                             "array of request ids.")
    for item in items:
        for dep in item.get("dependsOn") or []:
            if dep.lower() not in seen or dep.lower() == item["id"].lower():
                raise _malformed(f"Invalid batch payload format: request '{item['id'][:40]}' depends on "
                                 f"'{dep[:40]}', which is not another request of the batch.")
    return items


def _order(items: list[dict]) -> list[dict]:
    """The order the requests run in: a request after every request it depends on; otherwise the server's
    choice (here by id), which need not be the order they were sent in. A cycle makes the batch malformed."""
    by_id = {item["id"].lower(): item for item in items}
    done: list[dict] = []
    placed: set[str] = set()
    pending = sorted(by_id)
    while pending:
        ready = [rid for rid in pending
                 if all(d.lower() in placed for d in by_id[rid].get("dependsOn") or [])]
        if not ready:
            raise _malformed("Invalid batch payload format: the requests' dependsOn form a cycle.")
        for rid in ready:
            done.append(by_id[rid])
            placed.add(rid)
        pending = [rid for rid in pending if rid not in placed]
    return done


def _failed_dependency(rid: str) -> dict:
    return {"id": rid, "status": 424, "headers": {"Content-Type": "application/json"},
            "body": error_body("FailedDependency", "A request this request depends on failed.")}


def _run(item: dict, authorization: str | None) -> dict:
    """One individual request through the app itself; its answer as a batch response."""
    url = item["url"].strip()
    path = "/v1.0" + (url if url.startswith("/") else "/" + url)
    if path.split("?", 1)[0].rstrip("/").lower() == "/v1.0/$batch":
        return {"id": item["id"], "status": 400, "headers": {"Content-Type": "application/json"},
                "body": error_body("BadRequest", "A batch cannot contain another batch.")}
    headers = dict(item.get("headers") or {})
    if authorization:
        headers["Authorization"] = authorization
    body = item.get("body")
    data = None
    if body is not None:
        content_type = next(v for k, v in headers.items() if k.lower() == "content-type")
        data = json.dumps(body).encode() if "json" in content_type.lower() else base64.b64decode(str(body))
    client = current_app.test_client()
    response = client.open(path, method=item["method"].upper(), headers=headers, data=data,
                           environ_overrides={BATCH_MARK: True})
    answer: dict = {"id": item["id"], "status": response.status_code,
                    "headers": {k: v for k, v in response.headers.items() if k.lower() not in HOP_HEADERS}}
    raw = response.get_data()
    if raw:
        if response.is_json:
            answer["body"] = json.loads(raw)
        else:
            answer["body"] = base64.b64encode(raw).decode()
    return answer


def add_batch_route(bp: Blueprint) -> None:
    """``POST /$batch`` on the Graph blueprint (the batch itself is logged and faulted as any request is)."""

    @bp.post("/$batch")
    def batch():
        items = _order(_parse(request.get_json(silent=True)))
        authorization = request.headers.get("Authorization")
        status: dict[str, int] = {}
        responses = []
        for item in items:
            failed = [d for d in item.get("dependsOn") or [] if not 200 <= status.get(d.lower(), 0) < 300]
            answer = _failed_dependency(item["id"]) if failed else _run(item, authorization)
            status[item["id"].lower()] = answer["status"]
            responses.append(answer)
        return jsonify({"responses": responses})
