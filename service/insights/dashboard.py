"""Meeting dashboard: who is in the room, their styles and tips for working with them (the viewer marked
"you"), the style mix as an SVG chart (styles nobody has are left out), group notes, and who can see the
results shown (``service.insights.visibility`` decides, per person)."""

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
    has_own_name,
    match_attendees,
    self_emails,
)
from service.insights.org import Organization
from service.insights.people import frameworks, style_label, styles
from service.insights.tips import Tip, group_notes, tips_for
from service.insights.visibility import EVERYONE_IN_ORGANISATION, Visibility, notice, visibility
from service.store import users as users_store
from service.store.records import User

BAR_HEIGHT = 22
BAR_GAP = 8
LABEL_WIDTH = 140
CHART_WIDTH = 360       # drawn at this size on a phone and a desktop alike (the page caps it), so text stays 13 px
DEFAULT_COLOR = "#6a737d"


@dataclass
class Mix:
    framework: str
    label: str
    counts: dict[str, int]
    notes: list[str]
    svg: str


@dataclass
class Row:
    """One attendee as the viewer sees them."""

    match: Match
    labels: list[str]                          # their style labels (empty when not shown or not known)
    tips: list[Tip] = field(default_factory=list)
    you: bool = False                          # the viewer themself
    seen: Visibility = EVERYONE_IN_ORGANISATION

    @property
    def name(self) -> str:
        """Their name, or their address when they have none of their own ("External" for external@… is not)."""
        return self.match.name if has_own_name(self.match) else self.match.email

    @property
    def status(self) -> str:
        """What the styles column says when there are no labels."""
        if not self.seen.shows_results:
            return "not shared with you"
        return "not in the directory" if self.match.person is None else "no assessment"


@dataclass
class Dashboard:
    event: dict
    people: list[Row]                          # inside the organization
    mixes: list[Mix] = field(default_factory=list)
    unmatched: int = 0
    outside: list[Row] = field(default_factory=list)   # from outside the organization
    notice: str | None = None                  # who can see the results shown
    note: str | None = None                    # "attendee list hidden by the organizer"


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
    shown_codes = [c for c in codes if counts.get(c)]      # a style nobody in the room has is no row
    top = max(counts.values(), default=0) or 1
    height = len(shown_codes) * (BAR_HEIGHT + BAR_GAP) + BAR_GAP
    title = f"{spec['label']} style mix: " + ", ".join(
        f"{counts[c]} {style_label(framework, c).removeprefix(spec['label'] + ' ')}" for c in shown_codes)
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
            f'<text x="0" y="{y + 16}" font-family="Arial, sans-serif" font-size="13" '
            f'fill="currentColor">{label}</text>'
            f'<rect class="bar" data-code="{escape(code)}" x="{LABEL_WIDTH}" y="{y}" width="{n * scale:.1f}" '
            f'height="{BAR_HEIGHT}" rx="3" fill="{escape(color)}"/>'
            f'<text x="{LABEL_WIDTH + n * scale + 6:.1f}" y="{y + 16}" font-family="Arial, sans-serif" '
            f'font-size="13" fill="currentColor">{n}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def build_dashboard(db: Database, event: dict, organization: Organization | None = None,
                    viewer: User | None = None) -> Dashboard:
    """Everyone in the meeting (the calendar's owner included), their styles and, for the ``viewer``, tips for
    working with each; those from outside the owner's ``organization`` listed apart. The style mix counts only
    the results the viewer may see. When the organizer hid the attendee list, only the organizer is shown, and
    there is no mix of a group nobody knows."""
    directory = Directory.for_emails(db, attendee_emails([event]) | ({viewer.email} if viewer else set()))
    owner = users_store.get(db, event.get("user_id") or "")
    hidden = attendees_hidden(event, self_emails(owner, directory) if owner else set())
    everyone = match_attendees(event, set(), directory)
    if hidden:
        organizer = ((event.get("organizer") or {}).get("email") or "").lower()
        everyone = [m for m in everyone if m.email == organizer]
    me = self_emails(viewer, directory) if viewer else set()
    mine = styles(directory.person(viewer.email)) if viewer else {}
    seed = f"dashboard:{event.get('graph_id')}"
    rows = []
    for match in everyone:
        seen = visibility(viewer, match.person, organization)
        you = match.email in me or bool(match.person and set(match.person.get("emails", [])) & me)
        labels = [style_label(f, c) for f, c in styles(match.person).items()] if seen.shows_results else []
        tips = tips_for(match.person, mine, f"{seed}:{match.email}") if seen.shows_results and not you else []
        rows.append(Row(match, labels, tips, you, seen))
    rows.sort(key=lambda r: not r.you)                     # the viewer first
    outside = [r for r in rows if organization is not None and organization.is_external(r.match.email)]
    visible = [r.match for r in rows if r.seen.shows_results]
    dashboard = Dashboard(event, [r for r in rows if r not in outside],
                          unmatched=sum(1 for m in everyone if m.person is None), outside=outside,
                          notice=notice(r.seen for r in rows if r.labels), note=HIDDEN_NOTE if hidden else None)
    if hidden:
        return dashboard
    for framework, counter in sorted(style_counts(visible).items()):
        counts = dict(counter)
        dashboard.mixes.append(
            Mix(framework, frameworks()[framework]["label"], counts, group_notes(framework, counts),
                mix_svg(framework, counts))
        )
    return dashboard
