"""Who may see what about a person: the one place every page asks.

A person's assessment results are shown on meeting dashboards, in digests and prep mails. Today they are
visible to everyone in the person's organisation. "The time side of coaching" lets each person choose their
visibility (``organization``, ``restricted``, ``private``): that choice is answered here, by ``visibility``,
and the pages show what it allows and say so through ``notice``; no page decides on its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from service.insights.org import Organization
from service.store.records import User

ORGANIZATION = "organization"
RESTRICTED = "restricted"
PRIVATE = "private"


@dataclass(frozen=True)
class Visibility:
    """What a viewer may see about one person, and who else can."""

    level: str                   # organization | restricted | private
    audience: str                # who can see this person's results, in words ("everyone in your organisation")
    shows_results: bool          # whether this viewer may see their assessment results (styles, tips)


EVERYONE_IN_ORGANISATION = Visibility(ORGANIZATION, "everyone in your organisation", True)


def visibility(viewer: User | None, person: dict | None, organization: Organization | None = None) -> Visibility:
    """What ``viewer`` may see about ``person`` (a people-directory entry, or None for someone not in it).

    Today: everyone in the organisation sees everyone's results. The person's own choice (stored with them)
    is read here when it exists.
    """
    return EVERYONE_IN_ORGANISATION


def notice(shown: Iterable[Visibility]) -> str | None:
    """One sentence for a page showing these people's results: who can see them (None when none are shown)."""
    audiences = sorted({v.audience for v in shown if v.shows_results})
    if not audiences:
        return None
    if len(audiences) == 1:
        return f"The assessment results shown here are visible to {audiences[0]}."
    return "The assessment results shown here are visible to: " + "; ".join(audiences) + ", depending on the person."
