"""The customer admin's view and its bad inputs: only an admin of the tenant, only their tenant; counts, search,
paging and CSV; forged, replayed and cross-tenant consent callbacks."""

from __future__ import annotations

import csv
import io
from urllib.parse import parse_qs, urlsplit

from service.store import tenantwide
from tests.support.connect import emulated_user
from tests.support.tenant_admin import (
    PRIVILEGED_ROLE_ADMIN,
    admin_session,
    connect_tenant,
    csrf_token,
    grant_consent,
    new_tenant,
)

JSON = {"Accept": "application/json"}


def test_a_person_without_an_admin_role_is_refused(stack):
    tenant = new_tenant(stack)
    plain = emulated_user(stack, mail="plain@contoso.com", tenant_id=tenant)
    session, answer = admin_session(stack, plain["id"])
    assert answer.status_code == 403 and "administrator" in answer.text
    assert session.get(f"{stack.url}/admin/tenant", headers=JSON, timeout=10).status_code == 403
    assert session.post(f"{stack.url}/admin/tenant/disconnect", data={"csrf_token": csrf_token(stack, session)},
                        timeout=10).status_code == 403
    assert stack.runtime.db.tenants.count_documents({}) == 0


def test_a_replayed_or_forged_consent_callback_is_refused(stack):
    tenant = new_tenant(stack)
    admin = emulated_user(stack, mail="admin@contoso.com", tenant_id=tenant, roles=[PRIVILEGED_ROLE_ADMIN])
    session, _ = admin_session(stack, admin["id"])
    first = grant_consent(stack, session, admin["id"])
    callback = first.url
    replay = session.get(callback, timeout=10)
    forged = session.get(f"{stack.url}/admin/consent/callback?admin_consent=True&tenant={tenant}&state=forged",
                         timeout=10)
    assert first.status_code == 200 and replay.status_code == 400 and forged.status_code == 400


def test_a_consent_for_another_tenant_is_refused(stack):
    tenant, other = new_tenant(stack), new_tenant(stack, "Fabrikam")
    admin = emulated_user(stack, mail="admin@contoso.com", tenant_id=tenant, roles=[PRIVILEGED_ROLE_ADMIN])
    session, _ = admin_session(stack, admin["id"])
    started = session.get(f"{stack.url}/admin/consent", allow_redirects=False, timeout=10)
    state = parse_qs(urlsplit(started.headers["Location"]).query)["state"][0]
    answer = session.get(f"{stack.url}/admin/consent/callback?admin_consent=True&tenant={other}&state={state}",
                         timeout=10)
    assert answer.status_code == 403 and "another organisation" in answer.text
    assert stack.runtime.db.tenants.find_one({"_id": other}) is None


def test_a_consent_callback_microsoft_did_not_send_records_nothing(stack):
    tenant = new_tenant(stack)
    admin = emulated_user(stack, mail="admin@contoso.com", tenant_id=tenant, roles=[PRIVILEGED_ROLE_ADMIN])
    session, _ = admin_session(stack, admin["id"])
    started = session.get(f"{stack.url}/admin/consent", allow_redirects=False, timeout=10)
    state = parse_qs(urlsplit(started.headers["Location"]).query)["state"][0]
    answer = session.get(f"{stack.url}/admin/consent/callback?admin_consent=True&tenant={tenant}&state={state}",
                         timeout=10)      # a valid state, but the admin never consented at Microsoft
    assert answer.status_code == 400 and "not confirmed" in answer.text
    assert stack.runtime.db.tenants.find_one({"_id": tenant, "consented_at": {"$exists": True}}) is None


def test_the_admin_sees_counts_a_searchable_paged_list_and_a_csv_of_their_tenant_only(stack):
    tenant, other = new_tenant(stack), new_tenant(stack, "Fabrikam")
    admin = emulated_user(stack, mail="admin@contoso.com", tenant_id=tenant, roles=[PRIVILEGED_ROLE_ADMIN])
    for n in range(60):
        emulated_user(stack, mail=f"p{n:02d}@contoso.com", tenant_id=tenant)
    emulated_user(stack, mail="=cmd@fabrikam.com", tenant_id=other)
    session = connect_tenant(stack, admin["id"])
    stack.runtime.tenant_wide.sync_directory(tenant)   # enrolled; the mailboxes' probes are left queued

    first = session.get(f"{stack.url}/admin/tenant", headers=JSON, timeout=10).json()
    second = session.get(f"{stack.url}/admin/tenant", params={"after": first["next"]}, headers=JSON,
                         timeout=10).json()
    found = session.get(f"{stack.url}/admin/tenant", params={"q": "p1"}, headers=JSON, timeout=10).json()
    exported = list(csv.reader(io.StringIO(session.get(f"{stack.url}/admin/tenant/people.csv", timeout=10).text)))

    assert first["tenant_id"] == tenant and first["counts"]["tenant_wide"] == 61
    assert len(first["people"]) == 50 and len(second["people"]) == 11 and second["next"] is None
    assert {p["email"] for p in found["people"]} == {f"p1{n}@contoso.com" for n in range(10)}
    assert exported[0] == ["email", "name", "state", "reason", "scope", "last_sync"] and len(exported) == 62
    assert all("fabrikam" not in row[0] for row in exported)
    assert first["settings"]["mode"] == "tenant_wide" and tenantwide.settings(stack.runtime.db, other)[
        "mode"] == "per_user"
