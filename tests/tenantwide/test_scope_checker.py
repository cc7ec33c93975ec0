"""The scope checker under Exchange Online's RBAC for Applications: mailboxes in the scope are synced, others are
reported out of scope and left alone; after the admin changes the scope and says so, they are probed again; and a
tenant-wide Entra grant of Calendars.Read adds to RBAC and defeats the scoping (the README's warning)."""

from __future__ import annotations

from rq import Queue

from service import queues
from tests.support.connect import emulated_user
from tests.support.tenant_admin import GLOBAL_ADMIN, active_subscriptions, connect_tenant, csrf_token, new_tenant


def _scoped_org(stack):
    control = stack.emulator.control
    tenant = new_tenant(stack)
    admin = emulated_user(stack, mail="admin@contoso.com", tenant_id=tenant, roles=[GLOBAL_ADMIN])
    sales = emulated_user(stack, mail="sales@contoso.com", tenant_id=tenant)
    ceo = emulated_user(stack, mail="ceo@contoso.com", tenant_id=tenant)
    control.request("PUT", "/scopes", {"tenant_id": tenant, "kind": "rbac", "user_ids": [admin["id"], sales["id"]]})
    return tenant, admin, sales, ceo


def _scope(stack, user: dict) -> str | None:
    return (stack.runtime.db.users.find_one({"_id": user["id"]}) or {}).get("scope", {}).get("state")


def test_an_rbac_scope_limits_the_mailboxes_and_a_policy_change_is_probed_again(stack):
    control = stack.emulator.control
    tenant, admin, sales, ceo = _scoped_org(stack)
    session = connect_tenant(stack, admin["id"])
    # The admin removes the tenant-wide Entra grant of Calendars.Read, as the README says: RBAC alone decides.
    control.request("POST", "/identity/consents/revoke", {"tenant": tenant, "client_id": stack.settings.client_id,
                                                          "roles": ["Calendars.Read"]})
    stack.runtime.app_tokens.forget(tenant)
    stack.run_jobs()

    assert (_scope(stack, sales), _scope(stack, ceo)) == ("in_scope", "out_of_scope")
    assert len(active_subscriptions(stack, sales["id"])) == 1 and active_subscriptions(stack, ceo["id"]) == []
    test = control.request("GET", "/scopes/test", params={"tenant_id": tenant, "resource": ceo["mail"]})
    assert test["InScope"] is False and test["EntraGrant"] is False
    # Left alone: nothing queued, nothing failed, for the out-of-scope mailbox.
    assert all(Queue(n, connection=stack.runtime.redis).count == 0 for n in queues.ALL)

    control.request("PUT", "/scopes", {"tenant_id": tenant, "kind": "rbac",
                                       "user_ids": [admin["id"], sales["id"], ceo["id"]]})
    answer = session.post(f"{stack.url}/admin/tenant/policy-changed", data={"csrf_token": csrf_token(stack, session)},
                          allow_redirects=False, timeout=10)
    stack.run_jobs()

    assert answer.status_code == 303 and _scope(stack, ceo) == "in_scope"
    assert len(active_subscriptions(stack, ceo["id"])) == 1
    scheduled = Queue(queues.SUBSCRIPTIONS, connection=stack.runtime.redis).scheduled_job_registry.count
    assert scheduled == 3      # each mailbox is probed once more after Exchange's hour


def test_a_tenant_wide_entra_grant_defeats_the_rbac_scope(stack):
    tenant, admin, sales, ceo = _scoped_org(stack)
    connect_tenant(stack, admin["id"])         # .default grants Calendars.Read tenant-wide in Entra
    stack.run_jobs()

    assert _scope(stack, ceo) == "in_scope" and len(active_subscriptions(stack, ceo["id"])) == 1
    test = stack.emulator.control.request("GET", "/scopes/test", params={"tenant_id": tenant, "resource": ceo["mail"]})
    assert test == {"Resource": "ceo@contoso.com", "InScope": True, "EntraGrant": True}
