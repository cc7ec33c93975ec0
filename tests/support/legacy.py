"""A deployment from before calsync asked for immutable ids, rebuilt on top of a connected emulated user: stored
events (and what names them) under Outlook's regular ids, and a subscription created without the header."""

from __future__ import annotations

import secrets

from service.store import subscriptions as subscription_store
from service.store import utcnow
from service.store.records import Subscription
from service.subscriptions import mirror
from service.subscriptions.lifecycle import parse_time, subscription_body
from tests.support.emulated import Graph


def regular_graph(stack, user_id: str) -> Graph:
    """Graph as the user, without `Prefer: IdType="ImmutableId"`: Outlook's regular ids."""
    return Graph(stack.emulator, stack.emulator.control.token(user_id=user_id), immutable=False)


def make_legacy(stack, user_id: str) -> dict[str, str]:
    """Rewrite the user's store to regular ids (events, series references, exclusions, prep records), mark the user
    as not switched yet, and replace their subscription by one created without the header. Returns
    {regular id: immutable id}."""
    db, graph = stack.runtime.db, regular_graph(stack, user_id)
    stored = {d["graph_id"] for d in db.events.find({"user_id": user_id})}
    masters = {d["series_master_id"] for d in db.events.find({"user_id": user_id}) if d.get("series_master_id")}
    regular = {}
    for immutable in sorted(stored | masters):
        answer = graph.get(f"/me/events/{immutable}")
        assert answer.status_code == 200, answer.text
        regular[immutable] = answer.json()["id"]
    for immutable, rest in regular.items():
        db.events.update_one({"user_id": user_id, "graph_id": immutable}, {"$set": {"graph_id": rest}})
        db.events.update_many({"user_id": user_id, "series_master_id": immutable}, {"$set": {"series_master_id": rest}})
        db.exclusions.update_many({"user_id": user_id, "key": immutable}, {"$set": {"key": rest}})
        db.preps_sent.update_many({"user_id": user_id, "graph_id": immutable}, {"$set": {"graph_id": rest}})
    db.users.update_one({"_id": user_id}, {"$unset": {"graph_ids": ""}})
    legacy_subscription(stack, user_id, graph)
    return {rest: immutable for immutable, rest in regular.items()}


def legacy_subscription(stack, user_id: str, graph: Graph) -> Subscription:
    """calsync's subscription for the user, as an older release created it (no immutable-id header)."""
    runtime = stack.runtime
    old = subscription_store.for_user(runtime.db, user_id)
    if old is not None:
        assert graph.delete(f"/subscriptions/{old.id}").status_code in (204, 404)
        mirror.forget(runtime.redis, old.id)
    client_state = secrets.token_urlsafe(48)
    body = subscription_body(stack.settings, user_id, client_state, utcnow())
    created = graph.post("/subscriptions", body)
    assert created.status_code == 201, created.text
    user = runtime.db.users.find_one({"_id": user_id})
    record = Subscription(id=created.json()["id"], user_id=user_id, client_state=client_state,
                          tenant_id=user.get("tenant_id"), resource=body["resource"],
                          expires_at=parse_time(created.json()["expirationDateTime"], body["expirationDateTime"]),
                          created_at=utcnow())
    subscription_store.replace_for_user(runtime.db, record)
    mirror.remember(runtime.redis, record)
    return record
