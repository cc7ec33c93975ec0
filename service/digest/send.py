"""Compose and send one user's digest for one local date, exactly once.

The ``digests_sent`` record is claimed before anything is sent; a failure marks it failed and re-raises
so RQ retries and the retry can claim it again. Days without meetings are recorded as skipped unless
the user asked for empty digests, so the tick does not enqueue them again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from pymongo.database import Database
from redis import Redis

from service import channels, outbox, when
from service.channels import claims
from service.config import Settings
from service.digest import cards, links, lookahead
from service.digest.build import Digest, PersonView, TipView, build_digest
from service.digest.render import coaching_message, message
from service.insights import coaching, days, meetings, org, visibility
from service.insights.collaborators import top_collaborators
from service.insights.matching import Directory, attendee_emails
from service.insights.people import styles
from service.mail import Mailer
from service.store import channels as channels_store
from service.store import coaching as coaching_store
from service.store import digests as digests_store
from service.store import users as users_store
from service.store import utcnow
from service.store.records import User

log = logging.getLogger(__name__)


def compose(db: Database, settings: Settings, user: User, day: date, now: datetime | None = None,
            record: bool = True, preview: bool = False) -> Digest:
    """Build a user's digest for a local day from the stores, links included (``record``: the tips shown count as
    shown; a preview passes False, and with ``preview`` says why it would not be sent, if it would not)."""
    zone = days.user_zone(user)
    start, end = days.day_bounds(zone, day)
    # A day either side catches all-day events stored at another zone's midnight.
    events = meetings.in_window(db, user.id, (start - timedelta(days=1)).astimezone(UTC),
                                (end + timedelta(days=1)).astimezone(UTC))
    directory = visibility.redact(Directory.for_emails(db, attendee_emails(events) | {user.email}), user,
                                  org.for_user(db, user))
    meet_most = top_collaborators(db, user, limit=3, now=now)
    chooser = coaching.TipChooser(db, user, day, styles(directory.person(user.email)))
    digest = build_digest(user, day, events, directory, meet_most, zone, org.for_user(db, user), choose=chooser.choose)
    met_today = {p.person_id for p in digest.people}
    digest.coaching = [s for s in coaching.suggest(db, user, day, now=now, limit=3, record=False, chooser=chooser,
                                                   skip=met_today) if s.reason == coaching.MET_OFTEN]
    digest.also = [PersonView(f"a{n}", s.name, s.email, s.person_id, s.labels, [TipView(s.tip, s.person_id)],
                              why=s.why) for n, s in enumerate(digest.coaching, start=1)]
    if record:
        coaching_store.record(db, user.id, day, chooser.shown)
    digest.sections += lookahead.sections(db, settings, user, day, now or utcnow())
    for meeting in digest.meetings + digest.all_day:
        meeting.link = links.dashboard_url(settings, meeting.key, user.id, meeting.event_id)
        meeting.exclude_link = links.exclude_url(settings, meeting.key, user.id, meeting.event_id)
    tips = [t for p in digest.people + digest.also for t in p.tips] + [t for s in digest.sections for t in s.tips]
    for number, tip in enumerate(tips, start=1):
        tip.number = number
        tip.useful = links.feedback_url(settings, user.id, tip.key, tip.person_id, coaching_store.USEFUL)
        tip.not_useful = links.feedback_url(settings, user.id, tip.key, tip.person_id, coaching_store.NOT_USEFUL)
        tip.rate = links.feedback_url(settings, user.id, tip.key, tip.person_id)
    digest.settings_link = links.settings_url(settings, user.id)
    digest.unsubscribe_link = links.unsubscribe_url(settings, user.id)
    digest.opt_out_link = links.opt_out_url(settings, user.id)
    digest.say_link = links.say_url_for(db, settings, user.email)
    digest.home_link = links.home_url(settings, user.id)
    if preview:
        digest.notice = preview_notice(user, digest)
    return digest


def preview_notice(user: User, digest: Digest) -> str:
    """What a preview says first: that it is one, and why this day's digest would not go out, if it would not."""
    chosen = when.weekdays(user.digest.days)
    if not user.digest.enabled:
        return "A preview: your daily digest is turned off, so this one would not be sent."
    if digest.local_date.weekday() not in user.digest.days:
        return (f"A preview: {digest.local_date:%A}s are not among your digest days ({chosen}), so this one "
                "would not be sent.")
    if digest.empty and not user.digest.send_empty:
        return "A preview: there are no meetings, and you get no digest on such days, so this one would not be sent."
    return "A preview of this day's digest: the one sent in the morning may differ if your calendar changes."


def not_sent_reason(user: User, day: date) -> str | None:
    """Why no digest goes out on this local day whatever the calendar holds (a day the user did not choose)."""
    return "not-a-digest-day" if day.weekday() not in user.digest.days else None


def skip_reason(user: User | None) -> str | None:
    if user is None:
        return "unknown-user"
    if not user.connected:
        return "not-connected"
    if not user.digest.enabled:
        return "disabled"
    if not user.email:
        return "no-email"
    return None


def deliver(db: Database, settings: Settings, mailer: Mailer, user_id: str, local_date: str,
            now: datetime | None = None, redis: Redis | None = None, rt=None) -> str:
    """Send the digest unless it was already handled; returns sent, skipped:<why> or already-handled.

    It goes on each channel the user chose for digests (``service.channels``; email by default), once per
    channel: a retry after one channel failed for now sends only on the channels not yet sent."""
    day = date.fromisoformat(local_date)
    user = users_store.get(db, user_id)
    beats = redis if redis is not None else getattr(rt, "redis", None)   # where RQ's executions live
    claim = digests_store.claim(db, user_id, local_date, now, holder=claims.holder(),
                                holder_alive=claims.alive_in(beats))
    if claim is None:
        log.info("digest %s for user %s already handled", local_date, user_id)
        return "already-handled"
    reason = skip_reason(user) or not_sent_reason(user, day)
    if reason:
        digests_store.finish(db, user_id, local_date, digests_store.SKIPPED, reason=reason)
        return f"skipped:{reason}"
    try:
        digest = compose(db, settings, user, day, now)
        if digest.empty and not user.digest.send_empty:
            digests_store.finish(db, user_id, local_date, digests_store.SKIPPED, reason="no-meetings")
            return "skipped:no-meetings"
        email = message(digest, settings.mail_from)
        sender = rt or Parts(db, settings, mailer, redis)
        results = channels.deliver(sender, user, "digest", outgoing(digest, email, claim["_id"]))
        coaching_alone(sender, user, digest, claim["_id"], skip=tuple(results))
    except BaseException as exc:
        digests_store.finish(db, user_id, local_date, digests_store.FAILED, error=type(exc).__name__)
        raise
    sent_at = utcnow()
    used = channels.sent_channels(results)
    digests_store.finish(db, user_id, local_date, digests_store.SENT, sent_at=sent_at,
                         message_id=email["Message-ID"], meetings=len(digest.meetings), channels=results)
    if redis is not None:
        outbox.digest_sent(db, redis, user_id, local_date, sent_at, len(digest.meetings), channels=used)
    log.info("digest %s sent to user %s (%d meetings) by %s", local_date, user_id, len(digest.meetings),
             ", ".join(used))
    return "sent"


def coaching_alone(sender, user: User, digest: Digest, record: str, skip: tuple[str, ...]) -> dict[str, str]:
    """The digest's coaching as a message of its own, on the channels chosen for coaching that did not get the
    digest (where the digest went, its coaching went with it). By email only when coaching's channels were
    chosen (by the person or their tenant's operator): email is everyone's default, and a person who only moved
    the digest to Teams or Slack already has its coaching there."""
    outline = cards.coaching_outline(digest)
    if outline is None:
        return {}
    if channels_store.EMAIL not in skip and not channels_store.chose(sender.db, user.id, "coaching", user.tenant_id):
        skip += (channels_store.EMAIL,)
    email = None if channels_store.EMAIL in skip else coaching_message(digest, sender.settings.mail_from)
    blocks, text = cards.block_kit(outline)
    return channels.deliver(sender, user, "coaching", channels.Outgoing(
        "coaching", f"{record}:coaching", text, email=email, card=cards.adaptive_card(outline), blocks=blocks,
        settings_link=digest.settings_link), skip=skip)


@dataclass
class Parts:
    """What sending by email needs, for callers without a Runtime (Teams and Slack need one)."""

    db: Database
    settings: Settings
    mailer: Mailer
    redis: Redis | None = None


def outgoing(digest: Digest, email, record: str) -> channels.Outgoing:
    """The digest in every channel's form: the mail, an Adaptive Card, Block Kit and plain text."""
    outline = cards.digest_outline(digest)
    blocks, text = cards.block_kit(outline)
    return channels.Outgoing("digest", record, text, email=email, card=cards.adaptive_card(outline),
                             blocks=blocks, settings_link=digest.settings_link)
