"""The tenant-wide connection through the JSON API (bearer token), against the emulator."""

from __future__ import annotations

from service.store import users as user_store
from tests.support.connect import emulated_user
from tests.support.tenant_admin import GLOBAL_ADMIN, active_subscriptions, connect_tenant, new_tenant


def test_the_api_reports_changes_and_opts_out(stack, ops_headers):
    tenant = new_tenant(stack)
    admin = emulated_user(stack, mail="admin@contoso.com", tenant_id=tenant, roles=[GLOBAL_ADMIN])
    ada = emulated_user(stack, mail="ada@contoso.com", tenant_id=tenant)
    connect_tenant(stack, admin["id"])
    stack.run_jobs()
    client = stack.client

    connection = client.get(f"/api/tenants/{tenant}/connection", headers=ops_headers).get_json()
    people = client.get(f"/api/tenants/{tenant}/connection/people", query_string={"q": "ada"},
                        headers=ops_headers).get_json()
    refused = client.put(f"/api/tenants/{tenant}/connection", json={"enrolment": "group"}, headers=ops_headers)
    unknown = client.post("/api/users/nobody@contoso.com/opt-out", headers=ops_headers)
    opted = client.post(f"/api/users/{ada['mail']}/opt-out", headers=ops_headers).get_json()

    assert connection["settings"]["mode"] == "tenant_wide" and connection["counts"]["tenant_wide"] == 2
    assert connection["scope"]["in_scope"] == 2
    assert [(p["email"], p["state"], p["state_words"], p["scope"]) for p in people["people"]] == [
        ("ada@contoso.com", "tenant_wide", "synced tenant-wide", "in_scope")]
    assert refused.status_code == 400 and refused.mimetype == "application/problem+json"
    assert unknown.status_code == 404
    assert opted == {"user_id": ada["id"], "opted_out": True, "pending": False}
    assert active_subscriptions(stack, ada["id"]) == []
    assert user_store.get(stack.runtime.db, ada["id"]).opted_out_at is not None
    assert client.get(f"/api/tenants/{tenant}/connection", headers={}).status_code == 401
