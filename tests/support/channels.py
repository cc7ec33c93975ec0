"""Set-up shared by the channel tests: a person known to the emulator and to calsync, with a meeting today."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.store import channels as channels_store
from service.store import users
from tests.support.connect import emulated_user, sign_in_at_emulator
from tests.support.factories import add_event, add_user

INSTALL_ROLE = "TeamsAppInstallation.ReadWriteSelfForUser.All"


def person(stack, channels: dict | None = None, mail: str | None = None) -> tuple[dict, object]:
    """(the emulator's user, calsync's user) with one meeting today (UTC), choosing ``channels``."""
    emu = emulated_user(stack, mail=mail)
    add_user(stack.runtime.db, user_id=emu["id"], email=emu["mail"], time_zone="UTC")
    stack.runtime.db.users.update_one({"_id": emu["id"]}, {"$set": {"tenant_id": emu["tenant_id"]}})
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    add_event(stack.runtime.db, emu["id"], "m1", now, now + timedelta(minutes=30), subject="Quarterly planning",
              attendees=[{"name": "Ana", "email": "ana@example.com", "type": "required", "response": "accepted"}])
    if channels:
        channels_store.set_choice(stack.runtime.db, emu["id"], channels)
    return emu, users.get(stack.runtime.db, emu["id"])


def grant_teams_install(stack, admin: dict) -> None:
    """calsync's registration asks for the install permission, and the tenant's admin consents to it."""
    control = stack.emulator.control
    control.request("POST", "/identity/apps", {
        "client_id": stack.settings.client_id, "client_secret": stack.settings.client_secret,
        "redirect_uris": [f"{stack.url}/auth/callback", f"{stack.url}/admin/consent/callback"],
        "roles": ["Calendars.Read", INSTALL_ROLE]})
    url = (f"{stack.emulator.base_url}/{admin['tenant_id']}/adminconsent?client_id={stack.settings.client_id}"
           f"&redirect_uri={stack.url}/admin/consent/callback&state=s")
    assert "admin_consent=True" in sign_in_at_emulator(stack, url, admin["id"])
    stack.runtime.app_tokens.forget(admin["tenant_id"])
