"""Meeting dashboard: who is in the room, their styles, the style mix as an SVG chart, group notes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from pymongo.database import Database

from service.insights.matching import (
    HIDDEN_NOTE,
    Directory,
    Match,
    attendee_emails,
    attendees_hidden,
    match_attendees,
    self_emails,
)
from service.insights.org import Organization
from service.insights.people import frameworks, style_label, styles
from service.insights.tips import group_notes
from service.store import users as users_store

BAR_HEIGHT = 22
BAR_GAP = 8
LABEL_WIDTH = 170
CHART_WIDTH = 520
DEFAULT_COLOR = "#6a737d"


@dataclass
class Mix:
    framework: str
    label: str
    counts: dict[str, int]
    notes: list[str]
    svg: str


@dataclass
class Dashboard:
    event: dict
    people: list[tuple[Match, list[str]]]          # attendee and their style labels
    mixes: list[Mix] = field(default_factory=list)
    unmatched: int = 0
    outside: list[tuple[Match, list[str]]] = field(default_factory=list)   # from outside the organization
    note: str | None = None      # "attendee list hidden by the organizer"


def style_counts(matches: list[Match]) -> dict[str, Counter]:
    """framework → Counter of style codes among the matched attendees."""
    counts: dict[str, Counter] = {}
    for match in matches:
        for framework, code in styles(match.person).items():
            counts.setdefault(framework, Counter())[code] += 1
    return counts


def mix_svg(framework: str, counts: dict[str, int]) -> str:
    """A horizontal bar chart of one framework's style mix, as standalone inline SVG."""
    spec = frameworks()[framework]
    codes = list(spec["categories"])
    shown_codes = [c for c in codes if counts.get(c)] if len(codes) > 9 else codes
    top = max(counts.values(), default=0) or 1
    height = len(shown_codes) * (BAR_HEIGHT + BAR_GAP) + BAR_GAP
    title = f"{spec['label']} style mix"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="style-mix" data-framework="{escape(framework)}" '
        f'width="{CHART_WIDTH}" height="{height}" viewBox="0 0 {CHART_WIDTH} {height}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    scale = (CHART_WIDTH - LABEL_WIDTH - 40) / top
    for row, code in enumerate(shown_codes):
        y = BAR_GAP + row * (BAR_HEIGHT + BAR_GAP)
        n = counts.get(code, 0)
        color = spec.get("colors", {}).get(code, DEFAULT_COLOR)
        label = escape(style_label(framework, code).removeprefix(spec["label"] + " "))
        parts.append(
            f'<text x="0" y="{y + 16}" font-family="Arial, sans-serif" font-size="13" fill="#24292e">{label}</text>'
            f'<rect class="bar" data-code="{escape(code)}" x="{LABEL_WIDTH}" y="{y}" width="{n * scale:.1f}" '
            f'height="{BAR_HEIGHT}" rx="3" fill="{escape(color)}"/>'
            f'<text x="{LABEL_WIDTH + n * scale + 6:.1f}" y="{y + 16}" font-family="Arial, sans-serif" '
            f'font-size="13" fill="#24292e">{n}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def build_dashboard(db: Database, event: dict, organization: Organization | None = None) -> Dashboard:
    """Everyone in the meeting (the calendar's owner included), their styles and the group's mix; those from
    outside the owner's ``organization`` listed apart."""
    directory = Directory.for_emails(db, attendee_emails([event]))
    owner = users_store.get(db, event.get("user_id") or "")
    hidden = attendees_hidden(event, self_emails(owner, directory) if owner else set())
    everyone = match_attendees(event, set(), directory)
    if hidden:   # only the organizer can be seen: no one else, and no mix of a group nobody knows
        organizer = ((event.get("organizer") or {}).get("email") or "").lower()
        everyone = [m for m in everyone if m.email == organizer]
    people = [(m, [style_label(f, c) for f, c in styles(m.person).items()]) for m in everyone]
    outside = [p for p in people if organization is not None and organization.is_external(p[0].email)]
    dashboard = Dashboard(event, [p for p in people if p not in outside],
                          unmatched=sum(1 for m in everyone if m.person is None), outside=outside,
                          note=HIDDEN_NOTE if hidden else None)
    if hidden:
        return dashboard
    for framework, counter in sorted(style_counts(everyone).items()):
        counts = dict(counter)
        dashboard.mixes.append(
            Mix(framework, frameworks()[framework]["label"], counts, group_notes(framework, counts),
                mix_svg(framework, counts))
        )
    return dashboard
