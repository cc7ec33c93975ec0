"""The real MSAL client gets tokens from the emulated identity platform and uses them on the emulated Graph."""

from __future__ import annotations

import msal
import requests

from service.config import DEV_CLIENT_ID, DEV_CLIENT_SECRET
from tests.support.emulated import event_body

REDIRECT = "http://localhost:8000/auth/callback"
CONSENT_REDIRECT = "http://localhost:8000/admin/consent/callback"
SCOPES = ["Calendars.Read", "User.Read"]


def session(emu) -> requests.Session:
    http = requests.Session()
    http.trust_env = False
    http.verify = emu.ca_bundle
    return http


def msal_app(emu, tenant: str) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        DEV_CLIENT_ID, client_credential=DEV_CLIENT_SECRET, authority=f"{emu.authority_host}/{tenant}",
        validate_authority=False, instance_discovery=False, http_client=session(emu))


def sign_in(emu, url: str, user_id: str) -> dict:
    result = emu.control.request("POST", "/identity/sign-in", {"url": url, "user_id": user_id})
    return result["params"]


def test_msal_user_token_reads_graph(world, emu):
    app = msal_app(emu, "common")
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT, response_mode="form_post")
    result = app.acquire_token_by_auth_code_flow(flow, sign_in(emu, flow["auth_uri"], world.ada["id"]))
    assert "access_token" in result, result
    graph = world.graph(result["access_token"])
    assert graph.get("/me").json()["id"] == world.ada["id"]
    emu.control.create_event(world.ada["id"], event_body("x", "2030-03-04T09:00:00", "2030-03-04T10:00:00"))
    entries, _, _ = graph.delta_all(f"{emu.graph_url}/me/calendarView/delta?startDateTime=2030-03-01T00:00:00Z"
                                    "&endDateTime=2030-04-01T00:00:00Z")
    assert [e["subject"] for e in entries] == ["x"]
    assert graph.get(f"/users/{world.bob['id']}/events/x").status_code == 403


def test_msal_app_token_after_admin_consent_reads_any_mailbox(world, emu):
    tenant = world.tenant["id"]
    url = f"{emu.base_url}/{tenant}/adminconsent?client_id={DEV_CLIENT_ID}&redirect_uri={CONSENT_REDIRECT}"
    assert sign_in(emu, url, world.ada["id"])["admin_consent"] == "True"
    result = msal_app(emu, tenant).acquire_token_for_client(["https://graph.microsoft.com/.default"])
    assert "access_token" in result, result
    graph = world.graph(result["access_token"])
    assert graph.get(f"/users/{world.bob['id']}").json()["mail"] == "bob@contoso.com"
    assert graph.get("/me").status_code == 400


def test_settings_overrides_point_calsync_at_the_emulator(emu):
    from service.config import Settings

    settings = Settings().with_overrides(**emu.settings_overrides())
    assert settings.graph_url == f"{emu.base_url}/v1.0"
    assert settings.authority == f"{emu.base_url}/common"
    assert settings.ca_bundle == emu.ca_bundle
