"""RQ entry points for the connection lifecycle."""

from __future__ import annotations

import logging
from datetime import timedelta
from email.message import EmailMessage

from service import runtime
from service.store import users, utcnow

log = logging.getLogger(__name__)

RECONNECT_MAIL_INTERVAL = timedelta(hours=24)


def send_reconnect_mail(user_id: str) -> bool:
    """Email a user who must reconnect a link to /connect, at most once per 24 h; True if a mail went out."""
    rt = runtime.current()
    now = utcnow()
    before = users.claim_reconnect_mail(rt.db, user_id, RECONNECT_MAIL_INTERVAL, now)
    if before is None:
        log.info("no reconnect mail for user %s (sent within 24 h, or no longer needed)", user_id)
        return False
    if not before.get("email"):
        log.warning("user %s must reconnect but has no email address", user_id)
        return False
    previous = (before.get("connection") or {}).get("reconnect_mail_sent_at")
    try:
        rt.mailer.send(reconnect_message(rt.settings.public_url, before))
    except BaseException:
        # Give the claim back so RQ's retry can send it; the error itself propagates to RQ.
        users.release_reconnect_mail(rt.db, user_id, now, previous)
        raise
    return True


def reconnect_message(public_url: str, user: dict) -> EmailMessage:
    """The plain-text reconnect mail: what stopped, why it matters, the one link to fix it."""
    link = f"{public_url.rstrip('/')}/connect"
    name = user.get("display_name") or user.get("email")
    message = EmailMessage()
    message["To"] = user["email"]
    message["Subject"] = "calsync: please reconnect your calendar"
    message.set_content(
        f"Hello {name},\n\n"
        "calsync can no longer read your Microsoft 365 calendar: Microsoft asked for you to sign in again\n"
        "(your password may have changed, or access was revoked). Until you reconnect, your meetings are\n"
        "not kept up to date and your daily digest may be incomplete.\n\n"
        f"Reconnect here (it takes a few seconds): {link}\n\n"
        "Your settings and history are kept. If you did not expect this, you can ignore this mail;\n"
        "we will not send another reminder for 24 hours.\n"
    )
    return message
