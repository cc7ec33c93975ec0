"""Who is synced, and what survives a change: opt-out (signed link, connection page), opt-in, a group's members,
joiners and leavers from users/delta, switching a tenant to per-user and back, a revoked consent."""

from __future__ import annotations

from urllib.parse import urlsplit

from rq import Queue

from service import queues
from service.digest import links
from service.store import tenantwide
from service.store import users as user_store
from service.tenantwide.enrolment import sweep
from tests.support.connect import connect_session, connect_user, emulated_user
from tests.support.tenant_admin import (
    GLOBAL_ADMIN,
    active_subscriptions,
    connect_tenant,
    meeting_soon,
    new_tenant,
    save_settings,
)


def _org(stack, *names: str) -> tuple[str, dict, dict]:
    tenant = new_tenant(stack)
    admin = emulated_user(stack, mail="admin@contoso.com", tenant_id=tenant, roles=[GLOBAL_ADMIN])
    people = {name: emulated_user(stack, mail=f"{name}@contoso.com", tenant_id=tenant) for name in names}
    return tenant, admin, people


def test_a_signed_opt_out_link_deletes_the_subscription_and_data_and_enrolment_leaves_them_out(stack):
    tenant, admin, people = _org(stack, "alice")
    alice = people["alice"]
    stack.emulator.control.create_event(alice["id"], meeting_soon())
    connect_tenant(stack, admin["id"])
    stack.run_jobs()
    db = stack.runtime.db
    assert db.events.count_documents({"user_id": alice["id"]}) == 1 and active_subscriptions(stack, alice["id"])

    link = links.opt_out_url(stack.settings, alice["id"])
    page = stack.client.get(link.removeprefix(stack.settings.public_url))
    done = stack.client.post("/opt-out", data={"t": dict(p.split("=", 1) for p in [urlsplit(link).query])["t"]})

    assert page.status_code == 200 and done.status_code == 200 and "You have opted out" in done.text
    assert active_subscriptions(stack, alice["id"]) == []
    assert db.events.count_documents({"user_id": alice["id"]}) == 0
    record = user_store.get(db, alice["id"])
    assert record.opted_out_at is not None and not record.connected
    stack.runtime.tenant_wide.sync_directory(tenant)     # the next directory round does not bring her back
    stack.run_jobs()
    assert active_subscriptions(stack, alice["id"]) == [] and not user_store.get(db, alice["id"]).connected


def test_a_forged_opt_out_link_changes_nothing(stack):
    answer = stack.client.post("/opt-out", data={"t": "forged"})
    assert answer.status_code == 400


def test_a_per_user_connection_is_opted_out_the_same_way(stack):
    erin = emulated_user(stack, mail="erin@fabrikam.com", tenant_id=new_tenant(stack, "Fabrikam"))
    stack.emulator.control.create_event(erin["id"], meeting_soon())
    user_id, session = connect_session(stack, erin["id"])
    stack.run_jobs()
    assert active_subscriptions(stack, erin["id"])
    token = session.get(f"{stack.url}/connections/me", timeout=10).text.split('name="csrf_token" value="')[1]
    answer = session.post(f"{stack.url}/connections/me/opt-out", data={"csrf_token": token.split('"')[0]},
                          timeout=30)
    assert answer.status_code == 200
    assert active_subscriptions(stack, erin["id"]) == []
    assert stack.runtime.db.events.count_documents({"user_id": user_id}) == 0
    assert user_store.get(stack.runtime.db, user_id).opted_out_at is not None


def test_enrolment_by_group_and_opt_in(stack):
    control = stack.emulator.control
    tenant, admin, people = _org(stack, "alice", "bob", "carol")
    team = control.request("POST", "/groups", {"tenant_id": tenant, "display_name": "Pilot"})
    nested = control.request("POST", "/groups", {"tenant_id": tenant, "display_name": "Pilot EU"})
    control.request("POST", f"/groups/{team['id']}/members", {"add": [people["alice"]["id"], nested["id"]]})
    control.request("POST", f"/groups/{nested['id']}/members", {"add": [people["bob"]["id"]]})

    connect_tenant(stack, admin["id"], enrolment="group", group_id=team["id"])
    stack.run_jobs()
    db = stack.runtime.db
    enrolled = set(tenantwide.app_user_ids(db, tenant))
    assert enrolled == {people["alice"]["id"], people["bob"]["id"]}      # nested members count; carol is out

    tenantwide.update_settings(db, tenant, {"opt": "opt_in"})
    stack.runtime.tenant_wide.enrol_tenant(tenant)
    stack.run_jobs()
    assert all(not user_store.get(db, p["id"]).connected for p in (people["alice"], people["bob"]))
    stack.runtime.tenant_wide.opt_in(people["bob"]["id"])
    stack.run_jobs()
    assert user_store.get(db, people["bob"]["id"]).connected
    assert len(active_subscriptions(stack, people["bob"]["id"])) == 1


def test_joiners_and_leavers_come_from_users_delta(stack):
    control = stack.emulator.control
    tenant, admin, people = _org(stack, "alice")
    connect_tenant(stack, admin["id"])
    stack.run_jobs()
    db = stack.runtime.db
    dana = emulated_user(stack, mail="dana@contoso.com", tenant_id=tenant)
    control.request("PATCH", f"/users/{people['alice']['id']}", {"account_enabled": False})

    stack.runtime.tenant_wide.sync_directory(tenant)
    stack.run_jobs()

    assert user_store.get(db, dana["id"]).tenant_wide and len(active_subscriptions(stack, dana["id"])) == 1
    assert not user_store.get(db, people["alice"]["id"]).connected
    assert active_subscriptions(stack, people["alice"]["id"]) == []
    assert tenantwide.member(db, dana["id"])["mail"] == "dana@contoso.com"


def test_switching_to_per_user_and_back_loses_nothing(stack):
    tenant, admin, people = _org(stack, "alice", "bob")
    alice, bob = people["alice"], people["bob"]
    for person in (alice, bob):
        stack.emulator.control.create_event(person["id"], meeting_soon())
    connect_user(stack, bob["id"])
    session = connect_tenant(stack, admin["id"])
    stack.run_jobs()
    db = stack.runtime.db

    assert save_settings(stack, session, mode="per_user").status_code == 303
    stack.run_jobs()
    bob_subs = active_subscriptions(stack, bob["id"])
    assert user_store.get(db, bob["id"]).token_source == "user" and user_store.get(db, bob["id"]).connected
    assert len(bob_subs) == 1 and bob_subs[0]["creatorId"] == bob["id"]          # his own token again
    assert not user_store.get(db, alice["id"]).connected and active_subscriptions(stack, alice["id"]) == []
    assert db.events.count_documents({"user_id": {"$in": [alice["id"], bob["id"]]}}) == 2   # history kept

    assert save_settings(stack, session, mode="tenant_wide").status_code == 303
    stack.run_jobs()
    for person in (alice, bob):
        record = user_store.get(db, person["id"])
        subs = active_subscriptions(stack, person["id"])
        assert record.tenant_wide and record.connected and len(subs) == 1 and subs[0]["creatorId"] != person["id"]
    assert db.events.count_documents({"user_id": {"$in": [alice["id"], bob["id"]]}}) == 2


def test_a_revoked_consent_waits_for_the_admin_with_one_mail_and_no_retry_loop(stack, smtp_inbox):
    control = stack.emulator.control
    tenant, admin, people = _org(stack, "alice", "bob")
    connect_tenant(stack, admin["id"])
    stack.run_jobs()
    control.request("POST", "/identity/require-service-principal", {"enabled": True})
    control.request("POST", "/identity/consents/revoke", {"tenant": tenant, "client_id": stack.settings.client_id})
    stack.runtime.app_tokens.forget(tenant)

    for person in people.values():
        queues.enqueue(stack.runtime.redis, queues.SYNC, queues.SYNC_USER, person["id"])
    stack.run_jobs()
    stack.runtime.tenant_wide.sync_directory(tenant)
    stack.run_jobs()

    db = stack.runtime.db
    assert {user_store.get(db, p["id"]).connection.status for p in people.values()} == {"needs_admin"}
    mails = [m for m in smtp_inbox.messages if m["To"] == "admin@contoso.com"]
    assert len(mails) == 1 and "consent was removed" in mails[0]["Subject"]
    for name in queues.ALL:
        assert Queue(name, connection=stack.runtime.redis).count == 0
        assert Queue(name, connection=stack.runtime.redis).failed_job_registry.count == 0

    # The admin consents again: everyone resumes.
    connect_tenant(stack, admin["id"])
    stack.run_jobs()
    assert {user_store.get(db, p["id"]).connection.status for p in people.values()} == {"connected"}


def test_switching_to_per_user_queues_the_people_and_switching_straight_back_keeps_them(stack, ops_headers):
    tenant, admin, people = _org(stack, "alice", "bob")
    connect_tenant(stack, admin["id"])
    stack.run_jobs()
    db = stack.runtime.db
    everyone = [admin["id"], *(p["id"] for p in people.values())]
    before = {i: [s["id"] for s in active_subscriptions(stack, i)] for i in everyone}

    off = stack.client.put(f"/api/tenants/{tenant}/connection", json={"mode": "per_user"}, headers=ops_headers)
    waiting = Queue(queues.MAINTENANCE, connection=stack.runtime.redis).count
    on = stack.client.put(f"/api/tenants/{tenant}/connection", json={"mode": "tenant_wide"}, headers=ops_headers)
    stack.run_jobs()

    assert off.status_code == 200 and on.status_code == 200
    assert waiting == 1                     # three people, one job: nobody was let go inside the request
    for user_id in everyone:
        record = user_store.get(db, user_id)
        assert record.tenant_wide and record.connected
    assert {i: [s["id"] for s in active_subscriptions(stack, i)] for i in everyone} == before   # never let go


def test_a_switch_to_per_user_whose_jobs_were_lost_is_finished_by_the_hourly_sweep_once(stack, ops_headers):
    tenant, admin, people = _org(stack, "alice")
    alice = people["alice"]
    connect_tenant(stack, admin["id"])
    stack.run_jobs()
    db, redis = stack.runtime.db, stack.runtime.redis

    stack.client.put(f"/api/tenants/{tenant}/connection", json={"mode": "per_user"}, headers=ops_headers)
    Queue(queues.MAINTENANCE, connection=redis).empty()           # the leave jobs are lost with Redis
    stack.run_jobs()
    still = user_store.get(db, alice["id"]).connected and len(active_subscriptions(stack, alice["id"])) == 1
    first = sweep(db, redis)
    stack.run_jobs()
    second = sweep(db, redis)

    assert still and first == 1
    assert not user_store.get(db, alice["id"]).connected and active_subscriptions(stack, alice["id"]) == []
    assert second == 0                     # nobody left to let go: nothing queued again
