"""Where each kind of message goes (email, Teams, Slack), the links to a person's Teams chat and Slack DM, the
Slack workspaces that installed calsync, and one claim per message per channel.

- ``users.channels``: ``{kind: [channel, ...]}`` for kind in KINDS; absent: the tenant's default, else email.
- ``users.channel_notices``: ``{channel: told_at}``: the person was told once that a channel failed for good.
- ``channel_defaults``: ``{_id: tenant_id, channels: {kind: [...]}}``: an operator's default for a tenant.
- ``channel_links``: ``{_id: "<channel>:<user_id>", user_id, channel, status: ok|disabled, reason, ...}``: Teams
  keeps ``conversation_id`` and ``service_url``; Slack keeps ``team_id``, ``slack_user`` and ``dm_channel``.
- ``slack_workspaces``: ``{_id: team_id, tenant_id, team_name, bot_user_id, bot_token (encrypted), status}``.
- ``teams_tenants``: ``{_id: tenant_id, status: unavailable, reason, until}``: a tenant without admin consent
  is not asked again before ``until`` (nothing loops).
- ``channel_sends``: ``{_id: "<record>:<channel>", status: sending|sent|failed|gave_up, attempts, claimed_at,
  holder}``: ``holder`` is the RQ execution that claimed it (None outside a worker).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from service.store import as_utc, claims, utcnow

EMAIL, TEAMS, SLACK = "email", "teams", "slack"
CHANNELS = (EMAIL, TEAMS, SLACK)
KINDS = ("digest", "prep", "coaching", "reconnect")
DEFAULT = {kind: [EMAIL] for kind in KINDS}

OK, DISABLED = "ok", "disabled"
SENDING, SENT, FAILED, GAVE_UP = "sending", "sent", "failed", "gave_up"
STALE_CLAIM = timedelta(minutes=15)   # as digests: a worker that never reported back died

INDEXES = {
    "channel_links": [
        IndexModel([("user_id", ASCENDING)], name="user"),
        IndexModel([("team_id", ASCENDING), ("slack_user", ASCENDING)], name="slack_user", sparse=True),
    ],
    "slack_workspaces": [IndexModel([("tenant_id", ASCENDING)], name="tenant")],
    "channel_sends": [IndexModel([("user_id", ASCENDING)], name="user")],
}


def clean_choice(value: object) -> dict[str, list[str]] | None:
    """``{kind: [channel, ...]}`` with known kinds and channels, each list non-empty; None if malformed."""
    if not isinstance(value, dict) or not value or any(k not in KINDS for k in value):
        return None
    chosen = {}
    for kind, channels in value.items():
        if not isinstance(channels, list) or not channels or any(c not in CHANNELS for c in channels):
            return None
        chosen[kind] = [c for c in CHANNELS if c in channels]
    return chosen


def choice(db: Database, user_id: str, tenant_id: str | None = None) -> dict[str, list[str]]:
    """Every kind's channels for a person: their own choice, else their tenant's default, else email."""
    doc = db.users.find_one({"_id": user_id}, {"channels": 1, "tenant_id": 1}) or {}
    tenant = db.channel_defaults.find_one({"_id": tenant_id or doc.get("tenant_id")}) or {}
    return {**DEFAULT, **(tenant.get("channels") or {}), **(doc.get("channels") or {})}


def _chosen(db: Database, doc: dict, kind: str, tenant_id: str | None) -> list[str] | None:
    """The channels chosen for ``kind`` by the person (``doc``, their user document) or else by their tenant's
    operator; None when neither chose (email by default). The tenant is read only when the person chose nothing."""
    own = (doc.get("channels") or {}).get(kind)
    if own:
        return list(own)
    tenant = db.channel_defaults.find_one({"_id": tenant_id or doc.get("tenant_id")}, {f"channels.{kind}": 1}) or {}
    return (tenant.get("channels") or {}).get(kind) or None


def chose(db: Database, user_id: str, kind: str, tenant_id: str | None = None) -> bool:
    """Whether the person, or their tenant's operator, chose channels for ``kind`` (not email by default)."""
    doc = db.users.find_one({"_id": user_id}, {f"channels.{kind}": 1, "tenant_id": 1}) or {}
    return _chosen(db, doc, kind, tenant_id) is not None


def for_delivery(db: Database, user_id: str, kind: str, tenant_id: str | None = None) -> tuple[list[str], set[str]]:
    """(the channels chosen for ``kind``, the channels whose fall-back notice is pending) in one read of the person
    (and of their tenant's default only when they chose nothing for ``kind``): what ``choice`` and ``clear_notice``
    would read, at the cost of one round trip per message instead of three."""
    doc = db.users.find_one({"_id": user_id}, {f"channels.{kind}": 1, "tenant_id": 1, "channel_notices": 1}) or {}
    return _chosen(db, doc, kind, tenant_id) or list(DEFAULT.get(kind, [EMAIL])), set(doc.get("channel_notices") or ())


def set_choice(db: Database, user_id: str, chosen: dict[str, list[str]]) -> None:
    db.users.update_one({"_id": user_id}, {"$set": {f"channels.{kind}": v for kind, v in chosen.items()}})


def set_tenant_default(db: Database, tenant_id: str, chosen: dict[str, list[str]]) -> None:
    db.channel_defaults.update_one({"_id": tenant_id},
                                   {"$set": {f"channels.{kind}": v for kind, v in chosen.items()}}, upsert=True)


def notice_due(db: Database, user_id: str, channel: str, now: datetime | None = None) -> bool:
    """True once per failing channel: claims the notice that it fell back to email."""
    result = db.users.update_one({"_id": user_id, f"channel_notices.{channel}": {"$exists": False}},
                                 {"$set": {f"channel_notices.{channel}": now or utcnow()}})
    return result.modified_count == 1


def clear_notice(db: Database, user_id: str, channel: str) -> None:
    db.users.update_one({"_id": user_id}, {"$unset": {f"channel_notices.{channel}": ""}})


# --- links to a person's chat ----------------------------------------------------------------------

def link(db: Database, channel: str, user_id: str) -> dict | None:
    return db.channel_links.find_one({"_id": f"{channel}:{user_id}"})


def save_link(db: Database, channel: str, user_id: str, **fields) -> None:
    db.channel_links.update_one({"_id": f"{channel}:{user_id}"},
                                {"$set": {"user_id": user_id, "channel": channel, "status": OK, "reason": None,
                                          "updated_at": utcnow(), **fields}}, upsert=True)


def disable_link(db: Database, channel: str, user_id: str, reason: str, **fields) -> None:
    db.channel_links.update_one({"_id": f"{channel}:{user_id}"},
                                {"$set": {"user_id": user_id, "channel": channel, "status": DISABLED,
                                          "reason": reason, "updated_at": utcnow(), **fields}}, upsert=True)


def forget_link(db: Database, channel: str, user_id: str) -> None:
    db.channel_links.delete_one({"_id": f"{channel}:{user_id}"})


def user_for_slack(db: Database, team_id: str, slack_user: str) -> str | None:
    doc = db.channel_links.find_one({"channel": SLACK, "team_id": team_id, "slack_user": slack_user})
    return doc["user_id"] if doc else None


def links_for_user(db: Database, user_id: str) -> list[dict]:
    return list(db.channel_links.find({"user_id": user_id}))


def delete_for_user(db: Database, user_id: str) -> int:
    return (db.channel_links.delete_many({"user_id": user_id}).deleted_count
            + db.channel_sends.delete_many({"user_id": user_id}).deleted_count)


# --- Slack workspaces and Teams tenants ----------------------------------------------------------

def save_workspace(db: Database, team_id: str, tenant_id: str | None, team_name: str, bot_user_id: str,
                   bot_token: str, now: datetime | None = None) -> None:
    """``bot_token`` arrives encrypted (channels.slack encrypts it with the token keys)."""
    db.slack_workspaces.update_one({"_id": team_id}, {"$set": {
        "tenant_id": tenant_id, "team_name": team_name, "bot_user_id": bot_user_id, "bot_token": bot_token,
        "status": OK, "reason": None, "installed_at": now or utcnow()}}, upsert=True)


def workspace(db: Database, team_id: str) -> dict | None:
    return db.slack_workspaces.find_one({"_id": team_id})


def workspace_for_tenant(db: Database, tenant_id: str | None) -> dict | None:
    if not tenant_id:
        return None
    return db.slack_workspaces.find_one({"tenant_id": tenant_id}, sort=[("installed_at", -1)])


def disable_workspace(db: Database, team_id: str, reason: str) -> None:
    db.slack_workspaces.update_one({"_id": team_id}, {"$set": {"status": DISABLED, "reason": reason}})


def teams_unavailable(db: Database, tenant_id: str, now: datetime | None = None) -> str | None:
    doc = db.teams_tenants.find_one({"_id": tenant_id})
    if doc and as_utc(doc["until"]) > (now or utcnow()):
        return doc["reason"]
    return None


def mark_teams_unavailable(db: Database, tenant_id: str, reason: str, until: datetime) -> None:
    db.teams_tenants.update_one({"_id": tenant_id}, {"$set": {"reason": reason, "until": until}}, upsert=True)


def clear_teams_unavailable(db: Database, tenant_id: str) -> None:
    db.teams_tenants.delete_one({"_id": tenant_id})


# --- one send per message per channel ------------------------------------------------------------

def claim_send(db: Database, record: str, channel: str, user_id: str, now: datetime | None = None,
               holder: str | None = None, holder_alive: Callable[[str], bool] | None = None) -> bool:
    """The right to send ``record`` on ``channel``: False once sent or given up, or while another worker sends.

    ``holder`` names who sends (the worker's running execution); a claim whose recorded holder is no longer
    alive (``holder_alive``) is taken over at once: its worker died mid-send. One without a holder, or without
    a way to tell, is taken over once ``STALE_CLAIM`` old."""
    return claim_send_or_state(db, record, channel, user_id, now, holder, holder_alive)[0]


def claim_send_or_state(db: Database, record: str, channel: str, user_id: str, now: datetime | None = None,
                        holder: str | None = None, holder_alive: Callable[[str], bool] | None = None,
                        ) -> tuple[bool, dict | None]:
    """``claim_send``, and the claim found when it is not ours (None if it was ours to take): whether it was
    sent or given up, or is in progress elsewhere. A first send costs one round trip (the insert)."""
    now = now or utcnow()
    key = f"{record}:{channel}"
    try:
        db.channel_sends.insert_one({"_id": key, "user_id": user_id, "status": SENDING, "attempts": 1,
                                     "claimed_at": now, "holder": holder})
        return True, None
    except DuplicateKeyError:
        pass
    existing = db.channel_sends.find_one({"_id": key})
    if existing is None:
        return False, {"status": SENDING}
    if not claims.retakeable(existing, now, STALE_CLAIM, holder, holder_alive):
        return False, existing
    taken = db.channel_sends.find_one_and_update(
        {"_id": key, "status": existing["status"], "claimed_at": existing["claimed_at"]},
        {"$set": {"status": SENDING, "claimed_at": now, "holder": holder}, "$inc": {"attempts": 1}},
        return_document=ReturnDocument.AFTER) is not None
    return taken, None if taken else {"status": SENDING}


def finish_send(db: Database, record: str, channel: str, status: str, **fields) -> None:
    db.channel_sends.update_one({"_id": f"{record}:{channel}"},
                                {"$set": {"status": status, "finished_at": utcnow(), **fields}})
