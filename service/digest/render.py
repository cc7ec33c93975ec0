"""Digest text and HTML (inline CSS, table layout, no external images), and the multipart message."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from service import when
from service.digest.build import Digest

TEMPLATES = Path(__file__).parent / "templates"


def clock(value: datetime) -> str:
    """A local time as people read it ("18:31")."""
    return when.clock(value)


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=StrictUndefined,
    )
    env.globals["clock"] = clock
    env.globals["when"] = when
    return env


def render_text(digest: Digest, coaching: bool = False) -> str:
    return environment().get_template("digest.txt").render(d=digest, coaching=coaching)


def render_html(digest: Digest, coaching: bool = False) -> str:
    return environment().get_template("digest.html").render(d=digest, coaching=coaching)


def subject(digest: Digest) -> str:
    """"Your day, Wed 1 Jul: 3 meetings" ("Preview:" first for a preview)."""
    text = f"Your day, {when.day(digest.local_date)}: {when.count(len(digest.meetings), 'meeting')}"
    return f"Preview: {text}" if digest.notice else text


def message(digest: Digest, sender: str, domain: str = "calsync", preview: bool = False) -> EmailMessage:
    """The multipart/alternative email for a digest, with one-click unsubscribe headers (a preview asked for
    gets a message id of its own, so it never stands for the day's digest)."""
    msg = EmailMessage()
    msg["Subject"] = subject(digest)
    msg["From"] = sender
    msg["To"] = formataddr((digest.name, digest.email)) if digest.name != digest.email else digest.email
    msg["Message-ID"] = make_msgid("preview", domain) if preview else \
        f"<digest-{digest.user_id}-{digest.local_date.isoformat()}@{domain}>"
    if digest.unsubscribe_link:
        msg["List-Unsubscribe"] = f"<{digest.unsubscribe_link}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(render_text(digest))
    msg.add_alternative(render_html(digest), subtype="html")
    return msg


def coaching_message(digest: Digest, sender: str, domain: str = "calsync") -> EmailMessage:
    """The digest's coaching alone as an email (people and sections with tips, their feedback links), for a
    person who chose coaching by email and the digest elsewhere. No List-Unsubscribe: the digest's would turn
    the digest off; the footer links to where messages go."""
    msg = EmailMessage()
    msg["Subject"] = f"Coaching for {when.day(digest.local_date)}"
    msg["From"] = sender
    msg["To"] = formataddr((digest.name, digest.email)) if digest.name != digest.email else digest.email
    msg["Message-ID"] = f"<coaching-{digest.user_id}-{digest.local_date.isoformat()}@{domain}>"
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(render_text(digest, coaching=True))
    msg.add_alternative(render_html(digest, coaching=True), subtype="html")
    return msg
