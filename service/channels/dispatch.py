"""Send one message on each channel a person chose for its kind, exactly once per channel."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr

from service.channels import claims, slack, teams
from service.channels.errors import Busy, Unavailable
from service.store import channels as store
from service.store.records import User

log = logging.getLogger(__name__)

SENT = "sent"
NAMES = {store.EMAIL: "email", store.TEAMS: "Microsoft Teams", store.SLACK: "Slack"}
WHAT = {"digest": "daily digest", "prep": "meeting prep notes", "coaching": "coaching suggestions",
        "reconnect": "reconnect reminders"}


@dataclass
class Outgoing:
    kind: str                        # digest | prep | coaching | reconnect
    record: str                      # the message's own id (its digests_sent / preps_sent record)
    text: str                        # plain text: Slack's fallback, the Teams activity's text
    email: EmailMessage | None = None
    card: dict | None = None         # an Adaptive Card 1.5
    blocks: list | None = None       # Block Kit blocks
    settings_link: str | None = None


def _send_email(rt, user: User, message: Outgoing) -> None:
    if message.email is None:
        raise Unavailable("no email form of this message")
    rt.mailer.send(message.email)


SENDERS: dict[str, Callable] = {store.EMAIL: _send_email, store.TEAMS: teams.send, store.SLACK: slack.send}


def deliver(rt, user: User, kind: str, message: Outgoing, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """{channel: "sent" | "unavailable: <why>"} for every channel used (those chosen for ``kind``, but ``skip``);
    raises the first transient failure after every channel had its try, so the caller's job retries and the
    channels already sent are skipped."""
    chosen, notices = store.for_delivery(rt.db, user.id, kind, user.tenant_id)
    chosen = [c for c in chosen if c not in skip]
    results: dict[str, str] = {}
    retry: Exception | None = None
    for channel in chosen:
        results[channel], failure = _one(rt, user, channel, message)
        retry = retry or failure
    given_up = [c for c, r in results.items() if r != SENT and c != store.EMAIL and r.startswith("unavailable")]
    if given_up and store.EMAIL not in results and store.EMAIL not in skip:
        results[store.EMAIL], failure = _one(rt, user, store.EMAIL, message)
        retry = retry or failure
        for channel in given_up:
            if results[store.EMAIL] == SENT and store.notice_due(rt.db, user.id, channel):
                rt.mailer.send(fallback_notice(rt.settings.mail_from, user, channel, kind, results[channel],
                                               message.settings_link))
    for channel, result in results.items():
        if result == SENT and channel != store.EMAIL and channel in notices:
            store.clear_notice(rt.db, user.id, channel)      # it works again: a later failure is told again
    if retry is not None:
        raise retry
    return results


def deliver_many(rt, items: list[tuple[User, str, Outgoing]], concurrency: int = 8) -> list[dict | Exception]:
    """``deliver`` for each (user, kind, message), up to ``concurrency`` at a time on threads: a message's time is
    round trips (the store, Graph, the platform), so one job sends several while each waits. Each runs under the
    caller's claim holder (the job's RQ execution: contexts are copied), so the per-message, per-channel claims
    and their take-over work as for one. Returns each one's results, or the exception it raised."""
    def one(item):
        try:
            return deliver(rt, *item)
        except Exception as exc:   # noqa: BLE001 - the caller decides (a job raises the first, to be retried)
            return exc

    if len(items) <= 1 or concurrency <= 1:
        return [one(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(concurrency, len(items)), thread_name_prefix="deliver") as pool:
        futures = [pool.submit(contextvars.copy_context().run, one, item) for item in items]
        return [f.result() for f in futures]


def _one(rt, user: User, channel: str, message: Outgoing) -> tuple[str, Exception | None]:
    redis = getattr(rt, "redis", None)
    claimed, existing = store.claim_send_or_state(rt.db, message.record, channel, user.id, holder=claims.holder(),
                                                  holder_alive=claims.alive_in(redis))
    if not claimed:
        if existing["status"] in (store.SENT, store.GAVE_UP):
            return (SENT if existing["status"] == store.SENT else existing["reason"]), None
        return "in progress elsewhere", Busy(f"{channel} send of {message.record} is claimed by another worker")
    try:
        SENDERS[channel](rt, user, message)
    except Unavailable as exc:
        reason = exc.reason if exc.reason.startswith("unavailable") else f"unavailable: {exc.reason}"
        store.finish_send(rt.db, message.record, channel, store.GAVE_UP, reason=reason)
        log.info("%s for user %s not sent on %s: %s", message.kind, user.id, channel, reason)
        return reason, None
    except Exception as exc:   # noqa: BLE001 - recorded, then raised after the other channels had their try
        store.finish_send(rt.db, message.record, channel, store.FAILED, error=type(exc).__name__)
        log.warning("%s for user %s failed on %s (%s): will retry", message.kind, user.id, channel,
                    type(exc).__name__)
        return f"failed: {type(exc).__name__}", exc
    store.finish_send(rt.db, message.record, channel, store.SENT)
    return SENT, None


def sent_channels(results: dict[str, str]) -> list[str]:
    return [c for c in store.CHANNELS if results.get(c) == SENT]


def fallback_notice(sender: str, user: User, channel: str, kind: str, reason: str,
                    settings_link: str | None) -> EmailMessage:
    """The one mail that says a chosen channel failed for good and email stands in for it."""
    msg = EmailMessage()
    name = NAMES[channel]
    msg["Subject"] = f"calsync could not reach you on {name}"
    msg["From"] = sender
    msg["To"] = formataddr((user.name, user.email)) if user.name != user.email else user.email
    msg["Auto-Submitted"] = "auto-generated"
    text = (f"You asked for your {WHAT.get(kind, kind)} on {name}, but it could not be delivered there "
            f"({reason}).\n\nUntil that changes, it comes by email instead; this is the only time we say so.\n")
    if settings_link:
        text += f"\nChoose where messages go: {settings_link}\n"
    msg.set_content(text)
    return msg
