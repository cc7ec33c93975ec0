"""Signed, expiring links in the digest: meeting dashboards, digest settings and unsubscribe."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

from itsdangerous import BadData, URLSafeTimedSerializer
from pymongo.database import Database

from service.config import Settings
from service.store import people as people_store

DASHBOARD_SALT = "calsync.meeting-dashboard"
SETTINGS_SALT = "calsync.digest-settings"
FEEDBACK_SALT = "calsync.tip-feedback"
DASHBOARD_MAX_AGE = timedelta(days=14)
SETTINGS_MAX_AGE = timedelta(days=90)
FEEDBACK_MAX_AGE = timedelta(days=30)
SAY_MAX_AGE = timedelta(days=90)


def _serializer(settings: Settings, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key, salt=salt)


def dashboard_token(settings: Settings, user_id: str, graph_id: str) -> str:
    return _serializer(settings, DASHBOARD_SALT).dumps({"u": user_id, "g": graph_id})


def read_dashboard_token(settings: Settings, token: str | None) -> tuple[str, str] | None:
    """(user_id, graph_id) from a valid, unexpired dashboard token, else None."""
    data = _load(settings, DASHBOARD_SALT, token, DASHBOARD_MAX_AGE)
    if isinstance(data, dict) and isinstance(data.get("u"), str) and isinstance(data.get("g"), str):
        return data["u"], data["g"]
    return None


def settings_token(settings: Settings, user_id: str) -> str:
    return _serializer(settings, SETTINGS_SALT).dumps({"u": user_id})


def read_settings_token(settings: Settings, token: str | None) -> str | None:
    data = _load(settings, SETTINGS_SALT, token, SETTINGS_MAX_AGE)
    return data["u"] if isinstance(data, dict) and isinstance(data.get("u"), str) else None


def _load(settings: Settings, salt: str, token: str | None, max_age: timedelta):
    if not token or len(token) > 2000:
        return None
    try:
        return _serializer(settings, salt).loads(token, max_age=int(max_age.total_seconds()))
    except BadData:
        return None


def base(settings: Settings) -> str:
    return settings.public_url.rstrip("/")


def dashboard_url(settings: Settings, event_key: str, user_id: str, graph_id: str) -> str:
    token = dashboard_token(settings, user_id, graph_id)
    return f"{base(settings)}/meetings/{quote(event_key, safe='')}?t={token}"


def exclude_url(settings: Settings, event_key: str, user_id: str, graph_id: str) -> str:
    """Where the user keeps a meeting (or its series) out of insights; the page asks before doing it."""
    token = dashboard_token(settings, user_id, graph_id)
    return f"{base(settings)}/meetings/{quote(event_key, safe='')}/exclude?t={token}"


def settings_url(settings: Settings, user_id: str) -> str:
    return f"{base(settings)}/digest/settings?t={settings_token(settings, user_id)}"


def unsubscribe_url(settings: Settings, user_id: str) -> str:
    return f"{base(settings)}/digest/unsubscribe?t={settings_token(settings, user_id)}"


def unsubscribe_prep_url(settings: Settings, user_id: str) -> str:
    """The prep mails' one-click unsubscribe (RFC 8058): turns prep mails off, the digest stays."""
    return f"{base(settings)}/digest/unsubscribe?list=prep&t={settings_token(settings, user_id)}"


def home_url(settings: Settings, user_id: str) -> str:
    """The user's page (their meetings, digest and prep times, settings), opened from a mail."""
    return f"{base(settings)}/connections/me?t={settings_token(settings, user_id)}"


def week_url(settings: Settings, user_id: str, week: str | None = None) -> str:
    """The person's "your week" page (default: this week in their zone)."""
    which = f"&week={week}" if week else ""
    return f"{base(settings)}/insights/week?t={settings_token(settings, user_id)}{which}"


def say_token(settings: Settings, person_id: str) -> str:
    return _serializer(settings, "say").dumps(person_id)


def read_say_token(settings: Settings, token: str | None) -> str | None:
    found = _load(settings, "say", token, SAY_MAX_AGE)
    return found if isinstance(found, str) else None


def say_url(settings: Settings, person_id: str) -> str:
    """The page where someone named in a mail chooses who may see tips about them (no sign-in: the link is theirs,
    sent only in mail addressed to them)."""
    return f"{base(settings)}/people/say?t={say_token(settings, person_id)}"


def say_url_for(db: Database, settings: Settings, email: str | None) -> str | None:
    """``say_url`` for the person the people directory holds under ``email``, if it describes them."""
    person = people_store.by_email(db, email) if email else None
    return say_url(settings, person["_id"]) if person else None


def preview_url(settings: Settings, user_id: str, day: str | None = None) -> str:
    """The digest of a local day (default today) as a web page, rendered on demand and never sent."""
    when = f"&date={day}" if day else ""
    return f"{base(settings)}/digest/preview?t={settings_token(settings, user_id)}{when}"


def feedback_token(settings: Settings, user_id: str, tip_key: str, person_id: str | None) -> str:
    return _serializer(settings, FEEDBACK_SALT).dumps({"u": user_id, "k": tip_key, "p": person_id})


def read_feedback_token(settings: Settings, token: str | None) -> tuple[str, str, str | None] | None:
    """(user id, tip key, person id) from a valid, unexpired feedback token, else None."""
    data = _load(settings, FEEDBACK_SALT, token, FEEDBACK_MAX_AGE)
    if isinstance(data, dict) and isinstance(data.get("u"), str) and isinstance(data.get("k"), str) \
            and (data.get("p") is None or isinstance(data.get("p"), str)):
        return data["u"], data["k"], data.get("p")
    return None


def feedback_url(settings: Settings, user_id: str, tip_key: str, person_id: str | None,
                 verdict: str | None = None) -> str:
    """Where "useful" or "not useful" on a tip goes (``verdict`` preselects one); the page asks once more before
    recording, because mail scanners open every link in a message: following a link decides nothing."""
    token = feedback_token(settings, user_id, tip_key, person_id)
    return f"{base(settings)}/digest/tips?{f'v={verdict}&' if verdict else ''}t={token}"


OPT_OUT_SALT = "calsync.opt-out"
OPT_OUT_MAX_AGE = timedelta(days=180)


def opt_out_token(settings: Settings, user_id: str) -> str:
    return _serializer(settings, OPT_OUT_SALT).dumps(user_id)


def read_opt_out_token(settings: Settings, token: str | None) -> str | None:
    """The user id a signed opt-out link was made for; None when forged or too old."""
    user_id = _load(settings, OPT_OUT_SALT, token, OPT_OUT_MAX_AGE)
    return user_id if isinstance(user_id, str) else None


def opt_out_url(settings: Settings, user_id: str) -> str:
    """The signed link in every mail and card footer: stop calsync reading my calendar and delete my data."""
    return f"{base(settings)}/opt-out?t={opt_out_token(settings, user_id)}"
