"""Each channel's state for a person, in words: what the settings page and the API show."""

from __future__ import annotations

from service.store import channels as store


def status_of(db, user) -> dict[str, str]:
    """Each channel's state for the person, in words: ok, not set up yet, or why it is unavailable."""
    links = {link["channel"]: link for link in store.links_for_user(db, user.id)}
    found = {store.EMAIL: "ok" if user.email else "unavailable: no email address"}
    teams_reason = store.teams_unavailable(db, user.tenant_id) if user.tenant_id else "unavailable: no tenant"
    link = links.get(store.TEAMS)
    found[store.TEAMS] = (teams_reason or (link["reason"] if link and link["status"] == store.DISABLED else
                                           "ok" if link else "ok: installed on first message"))
    workspace = store.workspace_for_tenant(db, user.tenant_id)
    link = links.get(store.SLACK)
    found[store.SLACK] = ("unavailable: calsync's Slack app is not installed for your organisation" if workspace is None
                          else workspace["reason"] if workspace["status"] == store.DISABLED
                          else link["reason"] if link and link["status"] == store.DISABLED
                          else "ok")
    return found


def view(db, user) -> dict:
    """What the settings page's channel section needs: the choice per kind and each channel's status."""
    return {"choice": store.choice(db, user.id, user.tenant_id), "status": status_of(db, user),
            "kinds": store.KINDS, "channels": store.CHANNELS}
