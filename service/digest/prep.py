"""Meeting prep: a mail N minutes before each meeting that has someone from the people directory in it, with
each matched attendee's styles and tips, the group's notes and the dashboard link.

The tick (every minute) reads every user's meetings starting within the longest lead time, through the
events' ``start`` index, so its cost follows the meetings starting soon, not the number of users or events.
Each prep whose moment has come becomes one ``send_prep`` job for the occurrence (user, meeting, start).
The job decides again from the stores and claims a ``preps_sent`` record before sending, so a prep goes out
once under retries, several workers and two schedulers. A meeting moved to another time is another
occurrence: the job planned for the old time finds nothing there ("moved"), and the tick plans the new time
when it comes. Cancelled, declined, excluded and started meetings get none. Lead times are subtracted from
the UTC start, so daylight-saving changes in the user's zone move nothing; times are shown in that zone.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formataddr

from pymongo.database import Database
from redis import Redis
from rq.exceptions import DuplicateJobError

from service import channels, queues, when
from service.channels import claims
from service.config import Settings
from service.digest import cards, links
from service.digest.build import TIPS_PER_PERSON, AttendeeView, SplitsAttendees, attendee_view
from service.digest.render import environment
from service.insights import coaching, days, meetings, org, visibility
from service.insights.dashboard import style_counts
from service.insights.matching import (
    HIDDEN_NOTE,
    Directory,
    Match,
    attendee_emails,
    attendees_hidden,
    match_attendees,
    self_emails,
    user_response,
)
from service.insights.people import frameworks, styles
from service.insights.tips import group_notes, size_notes
from service.mail import Mailer
from service.store import as_utc, exclusions, utcnow
from service.store import coaching as coaching_store
from service.store import events as events_store
from service.store import preps as preps_store
from service.store import users as users_store
from service.store.records import PREP_MINUTES, PrepMeetings, User

log = logging.getLogger(__name__)

LONGEST_LEAD = timedelta(minutes=PREP_MINUTES[1])
PREP_DUE = "meeting.prep_due"


@dataclass(frozen=True)
class Due:
    user_id: str
    meeting: str          # the meeting's iCalUId (the Graph id when it has none)
    start: datetime       # UTC

    @property
    def record_id(self) -> str:
        return preps_store.record_id(self.user_id, self.meeting, self.start)


@dataclass
class PrepMail(SplitsAttendees):
    record_id: str
    user_id: str
    email: str
    name: str
    subject: str
    start: datetime                # local, aware
    end: datetime
    zone: str
    minutes: int
    online: bool
    attendees: list[AttendeeView]
    notes: list[str] = field(default_factory=list)
    link: str | None = None
    settings_link: str | None = None
    unsubscribe_link: str | None = None    # RFC 8058 one-click: turns prep mails off
    opt_out_link: str | None = None        # signed: stop calsync altogether and delete my data
    say_link: str | None = None            # signed, if the people directory holds the user: who sees tips about them
    meeting_key: str | None = None         # the stored event's id: what a card's "exclude" button names

    @property
    def when(self) -> str:
        """"Wed 1 Jul, 10:00–10:30"."""
        return when.span(self.start, self.end, self.start.tzinfo)


def meeting_id(event: dict) -> str:
    return event.get("ical_uid") or event.get("graph_id") or ""


def prep_due_payload(user_id: str, meeting: str, event_id: str, start: datetime, emails: list[str]) -> dict:
    """The minimal ``meeting.prep_due`` outbound event: who, which meeting, when, and the matched attendees'
    addresses; never a subject, body or anything a private meeting hides."""
    return {"type": PREP_DUE, "user_id": user_id, "meeting_key": meeting, "event_id": event_id,
            "start": as_utc(start).isoformat().replace("+00:00", "Z"), "attendees": sorted(set(emails))}


# ------------------------------------------------------------------ deciding

def chosen(user: User, others: list[Match], organization: org.Organization, hidden: bool = False) -> bool:
    """Whether the user's choice of meetings takes this one (a meeting whose attendee list is ``hidden`` has no
    known size: it is no one-to-one and no meeting of at least K people)."""
    kind = user.prep.meetings
    if kind == PrepMeetings.ONE_ON_ONE:
        return len(others) == 1 and not hidden
    if kind == PrepMeetings.EXTERNAL:
        return any(organization.is_external(o.email) for o in others)
    if kind == PrepMeetings.MIN_SIZE:
        return len(others) + 1 >= user.prep.min_size and not hidden
    return True


def user_reason(user: User | None) -> str | None:
    """Why a user gets no prep at all, or None."""
    if user is None:
        return "unknown-user"
    if not user.connected:
        return "not-connected"
    if not user.prep.enabled:
        return "off"
    if not user.email:
        return "no-email"
    return None


def meeting_reason(user: User, event: dict, directory: Directory, organization: org.Organization,
                   now: datetime) -> str | None:
    """Why this meeting gets no prep, or None (it gets one)."""
    if event.get("is_cancelled"):
        return "cancelled"
    if event.get("is_all_day"):
        return "all-day"
    if as_utc(event["start"]) <= now:
        return "started"
    me = self_emails(user, directory)
    if user_response(event, me) == "declined":
        return "declined"
    others = match_attendees(event, me, directory)
    if not chosen(user, others, organization, attendees_hidden(event, me)):
        return "not-chosen"
    if not any(o.person is not None for o in others):
        return "no-match"
    return None


def due_preps(db: Database, now: datetime) -> list[Due]:
    """Every prep whose moment has come and that is not recorded yet: one range of the ``start`` index, the
    users it names by _id, their exclusions and one directory query."""
    soon = events_store.starting_between(db, now, now + LONGEST_LEAD)
    users = users_store.for_prep(db, {e["user_id"] for e in soon})
    by_user: dict[str, list[dict]] = {}
    for event in soon:
        user = users.get(event["user_id"])
        if user is None or user_reason(user) or as_utc(event["start"]) - timedelta(minutes=user.prep.minutes) > now:
            continue
        by_user.setdefault(user.id, []).append(event)
    directory = Directory.for_emails(db, attendee_emails(e for found in by_user.values() for e in found)
                                     | {users[u].email for u in by_user})
    tenant_domains: dict[str | None, list[str]] = {}
    due: list[Due] = []
    for user_id, found in by_user.items():
        user, excluded = users[user_id], exclusions.for_user(db, user_id)
        organization = org.for_user(db, user, tenant_domains)
        for event in meetings.usable(found, excluded):
            if meeting_reason(user, event, directory, organization, now) is None:
                due.append(Due(user_id, meeting_id(event), as_utc(event["start"])))
    done = preps_store.recorded(db, [d.record_id for d in due])
    return [d for d in due if d.record_id not in done]


def job_id(due: Due) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"prep-{due.record_id}")


def tick(db: Database, redis: Redis, now: datetime | None = None) -> int:
    """Enqueue send_prep for every prep due now; returns how many were enqueued."""
    enqueued = 0
    for due in due_preps(db, (now or utcnow()).astimezone(UTC)):
        try:
            queues.enqueue(redis, queues.PREP, queues.SEND_PREP, due.user_id, due.meeting, due.start.isoformat(),
                           job_id=job_id(due), unique=True, job_timeout=120)
            enqueued += 1
        except DuplicateJobError:
            continue  # queued by another tick or just ran; the preps_sent record decides
    if enqueued:
        log.info("prep tick enqueued %d prep mail(s)", enqueued)
    return enqueued


# ------------------------------------------------------------------ sending

def _occurrence(db: Database, user_id: str, meeting: str, start: datetime) -> tuple[dict | None, str | None]:
    """(the meeting's usable copy at ``start``, None) or (None, why not: gone, moved, excluded)."""
    copies = events_store.by_ical_uids(db, user_id, [meeting])
    if not copies:
        single = events_store.get(db, user_id, meeting)
        copies = [single] if single is not None and not single.get("ical_uid") else []
    if not copies:
        return None, "gone"
    here = [c for c in copies if as_utc(c.get("start")) == start]
    if not here:
        return None, "moved"
    kept = meetings.usable(here, exclusions.for_user(db, user_id))
    return (kept[0], None) if kept else (None, "excluded")


def compose(db: Database, settings: Settings, user: User, event: dict, directory: Directory,
            organization: org.Organization, record_id: str) -> PrepMail:
    """The prep mail for one meeting: attendees (inside, then outside the organization) with their styles
    and tips, the style mix's notes and a tip for the meeting's size."""
    zone = days.user_zone(user)
    me = self_emails(user, directory)
    my_styles = styles(directory.person(user.email))
    start = as_utc(event["start"])
    seed = f"prep:{start.date().isoformat()}:{event.get('graph_id')}"
    others = match_attendees(event, me, directory)
    local_day = start.astimezone(zone).date()
    chooser = coaching.TipChooser(db, user, local_day, my_styles)   # the day's history and "not useful" verdicts
    attendees = [attendee_view(m, my_styles, f"{seed}:{m.email}", organization,
                               choose=lambda person: chooser.choose(person, TIPS_PER_PERSON)) for m in others]
    for tip in [t for a in attendees for t in a.tips]:
        tip.useful = links.feedback_url(settings, user.id, tip.key, tip.person_id, coaching_store.USEFUL)
        tip.not_useful = links.feedback_url(settings, user.id, tip.key, tip.person_id, coaching_store.NOT_USEFUL)
        tip.rate = links.feedback_url(settings, user.id, tip.key, tip.person_id)
    coaching_store.record(db, user.id, local_day, chooser.shown)
    notes = []
    hidden = attendees_hidden(event, me)
    everyone = [] if hidden else match_attendees(event, set(), directory)
    for framework, counter in sorted(style_counts(everyone).items()):
        notes += group_notes(framework, dict(counter)) if framework in frameworks() else []
    notes += [HIDDEN_NOTE.capitalize() + "."] if hidden else [tip.text for tip in size_notes(len(others) + 1)]
    return PrepMail(
        record_id=record_id, user_id=user.id, email=user.email, name=user.name, subject=meetings.subject_of(event),
        start=start.astimezone(zone), end=as_utc(event["end"]).astimezone(zone), zone=zone.key,
        minutes=user.prep.minutes or 0, online=bool(event.get("is_online_meeting")), attendees=attendees,
        notes=notes, link=links.dashboard_url(settings, str(event["_id"]), user.id, event["graph_id"]),
        meeting_key=str(event["_id"]),
        settings_link=links.settings_url(settings, user.id),
        unsubscribe_link=links.unsubscribe_prep_url(settings, user.id),
        opt_out_link=links.opt_out_url(settings, user.id), say_link=links.say_url_for(db, settings, user.email))


def message(mail: PrepMail, sender: str, domain: str = "calsync") -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = f"Prep: {mail.subject} at {when.clock(mail.start)}"
    msg["From"] = sender
    msg["To"] = formataddr((mail.name, mail.email)) if mail.name != mail.email else mail.email
    msg["Message-ID"] = f"<prep-{mail.record_id}@{domain}>"
    if mail.unsubscribe_link:   # RFC 8058 one-click, as the digest: a mail provider's button turns prep mails off
        msg["List-Unsubscribe"] = f"<{mail.unsubscribe_link}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(environment().get_template("prep.txt").render(p=mail))
    msg.add_alternative(environment().get_template("prep.html").render(p=mail), subtype="html")
    return msg


def deliver(db: Database, settings: Settings, mailer: Mailer, user_id: str, meeting: str, start_iso: str,
            now: datetime | None = None, notify: Callable[[dict], None] | None = None, rt=None) -> str:
    """Send one prep unless it was handled already; returns sent, skipped:<why> or already-handled.

    It goes on each channel the user chose for preps (``service.channels``; email by default), once per
    channel. ``notify`` receives the ``meeting.prep_due`` payload (with the channels used) once it is sent.
    """
    start = as_utc(datetime.fromisoformat(start_iso))
    now = (now or utcnow()).astimezone(UTC)
    claim = preps_store.claim(db, user_id, meeting, start, now, holder=claims.holder(),
                              holder_alive=claims.alive_in(getattr(rt, "redis", None)))
    if claim is None:
        return "already-handled"
    record = claim["_id"]
    user = users_store.get(db, user_id)
    event, reason = (None, user_reason(user)) if user_reason(user) else _occurrence(db, user_id, meeting, start)
    if event is not None:
        organization = org.for_user(db, user)
        directory = visibility.redact(Directory.for_emails(db, attendee_emails([event]) | {user.email}), user,
                                      organization)
        reason = meeting_reason(user, event, directory, organization, now)
    if reason:
        preps_store.finish(db, record, preps_store.SKIPPED, reason=reason)
        log.info("prep for user %s skipped: %s", user_id, reason)
        return f"skipped:{reason}"
    try:
        mail = compose(db, settings, user, event, directory, organization, record)
        email = message(mail, settings.mail_from)
        results = channels.deliver(rt or Parts(db, settings, mailer), user, "prep", outgoing(mail, email))
    except BaseException as exc:
        preps_store.finish(db, record, preps_store.FAILED, error=type(exc).__name__)
        raise
    used = channels.sent_channels(results)
    preps_store.finish(db, record, preps_store.SENT, sent_at=utcnow(), message_id=email["Message-ID"],
                       graph_id=event["graph_id"], channels=results)
    log.info("prep sent to user %s (%d attendee(s)) by %s", user_id, len(mail.attendees), ", ".join(used))
    if notify is not None:
        # outbound: meeting.prep_due; people who do not share their results with this user are not named
        notify({**prep_due_payload(user_id, meeting, event["graph_id"], start,
                                   [a.email for a in mail.attendees
                                    if a.matched and not (directory.person(a.email) or {}).get("hidden")]),
                "channels": used})
    return "sent"


@dataclass
class Parts:
    """What sending by email needs, for callers without a Runtime (Teams and Slack need one)."""

    db: Database
    settings: Settings
    mailer: Mailer


def outgoing(mail: PrepMail, email: EmailMessage) -> channels.Outgoing:
    """The prep note in every channel's form: the mail, an Adaptive Card, Block Kit and plain text."""
    outline = cards.prep_outline(mail)
    blocks, text = cards.block_kit(outline)
    return channels.Outgoing("prep", mail.record_id, text, email=email, card=cards.adaptive_card(outline),
                             blocks=blocks, settings_link=mail.settings_link)
