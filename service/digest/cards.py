"""The digest and the prep note as chat messages: one outline, rendered as an Adaptive Card (Teams) and as
Block Kit (Slack), with a plain-text fallback.

Built from the same views as the mails (``Digest``, ``PrepMail``), so a card shows no more than the mail:
a private meeting's subject is already "Private meeting", hidden attendee lists are already a note, and
people who opted out or restricted their visibility never reach those views. Every ``Digest.sections``
entry is rendered generically (title, lines, tips, link). Buttons carry only an action and the keys the
interactivity endpoints check against the person who pressed them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from service import when
from service.digest.build import Digest, MeetingView, TipView

CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_VERSION = "1.5"
# Slack's documented limits (docs.slack.dev: Block Kit, the section block, chat.postMessage).
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_ACTIONS = 25
MAX_FALLBACK_TEXT = 4000   # chat.postMessage truncates text past 40,000; keep the notification short

EXCLUDE, NOT_USEFUL, STOP = "exclude", "not_useful", "stop"
ACTIONS = (EXCLUDE, NOT_USEFUL, STOP)


@dataclass
class Button:
    title: str
    action: str | None = None         # one of ACTIONS (posted back), or None for a link
    data: dict = field(default_factory=dict)
    url: str | None = None


@dataclass
class Part:
    kind: str                          # heading | text | buttons
    text: str = ""
    buttons: list[Button] = field(default_factory=list)
    subtle: bool = False


@dataclass
class Outline:
    title: str
    parts: list[Part]
    more_link: str | None = None       # where the whole message is, should a channel have to cut it short

    @property
    def text(self) -> str:
        """The plain-text fallback: every heading and text part, no buttons."""
        lines = [self.title] + [p.text for p in self.parts if p.kind != "buttons"]
        text = "\n".join(lines)
        return text if len(text) <= MAX_FALLBACK_TEXT else text[:MAX_FALLBACK_TEXT - 1] + "…"


def _tip_buttons(tips: list[TipView], kind: str) -> list[Button]:
    return [Button(f"Not useful: tip {n}" if len(tips) > 1 else "Not useful", NOT_USEFUL,
                   {"kind": kind, "tip": t.key, "person": t.person_id}) for n, t in enumerate(tips, start=1)]


def _tip_lines(tips: list[TipView]) -> str:
    numbered = len(tips) > 1
    return "\n".join(f"{n}. {t.text}" if numbered else f"• {t.text}" for n, t in enumerate(tips, start=1))


def _with(meeting: MeetingView) -> str:
    if meeting.note:
        return meeting.note[:1].upper() + meeting.note[1:] + "."
    if not meeting.attendees:
        return "Just you."
    names = [a.name + (f" ({a.domain})" if a.external else "") for a in meeting.internal + meeting.external_named]
    return "With " + ", ".join(names + [g.words for g in meeting.outsiders]) + "."


def digest_outline(digest: Digest) -> Outline:
    """The digest, top to bottom as the mail reads: summary, meetings, people, also, sections, links."""
    parts = [Part("text", f"{digest.day_words} (times in {digest.zone})", subtle=True),
             Part("text", digest.summary.words)]
    if digest.all_day:
        parts += [Part("heading", "All day"), Part("text", "\n".join(m.subject for m in digest.all_day))]
    if digest.meetings:
        parts.append(Part("heading", "Your meetings"))
    for m in digest.meetings:
        line = f"{when.clock(m.start)}–{when.clock(m.end)} {m.subject}" + (" (online)" if m.online else "")
        parts.append(Part("text", f"{line}\n{_with(m)}"))
        buttons = [Button("Dashboard", url=m.link)] if m.link else []
        buttons.append(Button("Exclude this meeting", EXCLUDE, {"kind": "digest", "meeting": m.key}))
        parts.append(Part("buttons", buttons=buttons))
    for heading, people in (("The people you meet today", digest.people), ("Also worth a thought", digest.also)):
        if people:
            parts.append(Part("heading", heading))
        for p in people:
            about = p.why if p.why else "; ".join(p.meetings)
            styles = ", ".join(p.styles)
            parts.append(Part("text", f"{p.name}" + (" (outside your organization)" if p.external else "")
                              + (f": {styles}" if styles else "") + (f"\n{about}" if about else "")
                              + (f"\n{_tip_lines(p.tips)}" if p.tips else "")))
            if p.tips:
                parts.append(Part("buttons", buttons=_tip_buttons(p.tips, "coaching")))
    for section in digest.sections:
        parts.append(Part("heading", section.title))
        body = "\n".join(section.lines + ([_tip_lines(section.tips)] if section.tips else []))
        if body:
            parts.append(Part("text", body))
        buttons = _tip_buttons(section.tips, "coaching")
        if section.link:
            buttons.append(Button(section.link[0], url=section.link[1]))
        if buttons:
            parts.append(Part("buttons", buttons=buttons))
    if digest.meet_most:
        parts.append(Part("text", "You meet most with " + ", ".join(c.name for c in digest.meet_most)
                          + " (last 30 days).", subtle=True))
    footer = [Button("Your page", url=digest.home_link)] if digest.home_link else []
    footer += [Button("Settings", url=digest.settings_link)] if digest.settings_link else []
    footer.append(Button("Stop these", STOP, {"kind": "digest"}))
    parts.append(Part("buttons", buttons=footer))
    title = f"Your day, {when.day(digest.local_date)}: {when.count(len(digest.meetings), 'meeting')}"
    return Outline(title, parts, more_link=digest.home_link or digest.settings_link)


def prep_outline(mail) -> Outline:
    """The prep note (a ``prep.PrepMail``, which imports this module): the meeting, who is in the room
    (inside, then outside), the group's notes."""
    parts = [Part("text", f"{mail.when} (times in {mail.zone})", subtle=True)]
    for heading, people in (("Who is in the room", mail.internal), ("From outside your organization",
                                                                     mail.external_named)):
        if people:
            parts.append(Part("heading", heading))
        for a in people:
            label = a.name + (f": {', '.join(a.styles)}" if a.styles else
                              "" if a.matched else " (not in the people directory)")
            parts.append(Part("text", label + (f"\n{_tip_lines(a.tips)}" if a.tips else "")))
            if a.tips:
                parts.append(Part("buttons", buttons=_tip_buttons(a.tips, "prep")))
    if mail.outsiders:
        parts.append(Part("text", ", ".join(g.words for g in mail.outsiders)))
    if mail.notes:
        parts += [Part("heading", "For the group"), Part("text", "\n".join(f"• {n}" for n in mail.notes))]
    buttons = [Button("Dashboard", url=mail.link)] if mail.link else []
    buttons += [Button("Exclude this meeting", EXCLUDE, {"kind": "prep", "meeting": mail.meeting_key}),
                Button("Stop these", STOP, {"kind": "prep"})]
    parts.append(Part("buttons", buttons=buttons))
    title = f"In {mail.minutes} minutes: {mail.subject}" + (" (online)" if mail.online else "")
    return Outline(title, parts, more_link=mail.link)


def reconnect_outline(name: str, link: str) -> Outline:
    """The reconnect reminder: what stopped, and the one link that fixes it."""
    parts = [Part("text", f"Hello {name}. calsync can no longer read your Microsoft 365 calendar: Microsoft asked "
                          "for you to sign in again. Until you reconnect, your meetings are not kept up to date."),
             Part("buttons", buttons=[Button("Reconnect", url=link), Button("Stop these", STOP,
                                                                           {"kind": "reconnect"})])]
    return Outline("Please reconnect your calendar", parts, more_link=link)


def coaching_outline(digest: Digest) -> Outline | None:
    """The digest's coaching on its own (for channels chosen for coaching but not for the digest): the tips for
    today's people, for people met often, and those of the added sections; None when there are none."""
    whole = digest_outline(digest)
    people = [p for p in digest.people + digest.also if p.tips]
    if not people and not any(s.tips for s in digest.sections):
        return None
    parts = []
    for p in people:
        parts += [Part("text", f"{p.name}" + (f" ({p.why})" if p.why else "") + f"\n{_tip_lines(p.tips)}"),
                  Part("buttons", buttons=_tip_buttons(p.tips, "coaching"))]
    for section in (s for s in digest.sections if s.tips):
        parts += [Part("heading", section.title), Part("text", _tip_lines(section.tips)),
                  Part("buttons", buttons=_tip_buttons(section.tips, "coaching"))]
    parts.append(Part("buttons", buttons=[Button("Stop these", STOP, {"kind": "coaching"})]))
    return Outline(f"Coaching for {when.day(digest.local_date)}", parts, more_link=whole.more_link)


# --- Adaptive Card 1.5 (Teams) ----------------------------------------------------------------------

def adaptive_card(outline: Outline) -> dict:
    """An Adaptive Card 1.5; buttons are Action.Execute (Universal Actions), links Action.OpenUrl."""
    body: list[dict] = [{"type": "TextBlock", "text": outline.title, "size": "Large", "weight": "Bolder",
                         "wrap": True, "style": "heading"}]
    for part in outline.parts:
        if part.kind == "heading":
            body.append({"type": "TextBlock", "text": part.text, "size": "Medium", "weight": "Bolder",
                         "wrap": True, "spacing": "Large", "style": "heading"})
        elif part.kind == "text":
            block = {"type": "TextBlock", "text": part.text, "wrap": True}
            body.append({**block, "isSubtle": True} if part.subtle else block)
        else:
            body.append({"type": "ActionSet", "actions": [_card_action(b) for b in part.buttons]})
    return {"type": "AdaptiveCard", "$schema": CARD_SCHEMA, "version": CARD_VERSION, "body": body,
            "fallbackText": outline.text, "speak": outline.title}


def _card_action(button: Button) -> dict:
    if button.url:
        return {"type": "Action.OpenUrl", "title": button.title, "url": button.url}
    return {"type": "Action.Execute", "title": button.title, "verb": button.action,
            "data": {"action": button.action, **button.data}}


# --- Block Kit (Slack) ----------------------------------------------------------------------------

def mrkdwn_escape(text: str) -> str:
    """Slack's three control characters (docs.slack.dev: formatting text, escaping)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _sections(text: str) -> list[dict]:
    """One section per 3,000 characters of (escaped) text, cut at a line break where one is near."""
    escaped, blocks = mrkdwn_escape(text), []
    while escaped:
        cut = len(escaped) if len(escaped) <= MAX_SECTION_TEXT else (
            escaped.rfind("\n", 0, MAX_SECTION_TEXT) if escaped.rfind("\n", 0, MAX_SECTION_TEXT) > 0
            else MAX_SECTION_TEXT)
        if cut < len(escaped):   # never split an escape such as &amp;
            amp = escaped.rfind("&", max(0, cut - 5), cut)
            cut = amp if amp > 0 and ";" not in escaped[amp:cut] else cut
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": escaped[:cut]}})
        escaped = escaped[cut:].lstrip("\n")
    return blocks


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def block_kit(outline: Outline) -> tuple[list[dict], str]:
    """(blocks, text): at most 50 blocks, each section's text within 3,000 characters, a plain-text fallback.
    A message that would need more ends with a link to where the whole of it is."""
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text",
                                                      "text": _shorten(outline.title, MAX_HEADER_TEXT)}}]
    for part in outline.parts:
        if part.kind == "heading":
            blocks += _sections(f"*{part.text}*")
        elif part.kind == "text":
            blocks += ([{"type": "context", "elements": [{"type": "mrkdwn", "text": b["text"]["text"]}]}
                        for b in _sections(part.text)] if part.subtle else _sections(part.text))
        else:
            elements = [_slack_button(b, n) for n, b in enumerate(part.buttons[:MAX_ACTIONS])]
            blocks.append({"type": "actions", "elements": elements})
    if len(blocks) > MAX_BLOCKS:
        blocks = blocks[:MAX_BLOCKS - 1]
        more = f"<{outline.more_link}|The rest is on your page>" if outline.more_link else "The rest is in your email."
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "More than fits here. " + more}})
    for n, block in enumerate(blocks):
        if block["type"] == "actions":
            block["block_id"] = f"b{n}"
            for m, element in enumerate(block["elements"]):
                element["action_id"] = f"{element['action_id']}:{n}:{m}"   # unique within the message
    return blocks, outline.text


def _slack_button(button: Button, n: int) -> dict:
    element = {"type": "button", "text": {"type": "plain_text", "text": _shorten(button.title, MAX_BUTTON_TEXT)}}
    if button.url:
        return {**element, "url": button.url, "action_id": "link"}
    value = json.dumps({"action": button.action, **button.data}, separators=(",", ":"))
    if len(value) > MAX_BUTTON_VALUE:
        raise ValueError("a button's value is over Slack's 2,000 characters")
    return {**element, "action_id": button.action, "value": value}
