"""Who may see what about a person: the one place every page asks.

A person's assessment results are shown on meeting dashboards, in digests and prep mails. Today they are
visible to everyone in the person's organisation. "The time side of coaching" lets each person choose their
visibility (``organization``, ``restricted``, ``private``): that choice is answered here, by ``visibility``,
and the pages show what it allows and say so through ``notice``; no page decides on its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from service.insights.matching import Directory
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
NOT_OUTSIDE = Visibility(ORGANIZATION, "everyone in their organisation", False)
CHOSEN = "the people they chose and their manager"
NOBODY = Visibility(PRIVATE, "nobody: they keep their results private", False)


def visibility(viewer: User | None, person: dict | None, organization: Organization | None = None) -> Visibility:
    """What ``viewer`` may see about ``person`` (a people-directory entry, or None for someone not in it), by the
    person's choice stored with them: ``organization`` (the default) shows their results to colleagues, and to
    people from outside unless they turned ``external_tips`` off; ``restricted`` only to the ``viewers`` they
    list and their ``manager``; ``private`` to nobody. ``organization`` is the viewer's (their tenant's
    domains): a person outside it is external to the viewer. The person always sees their own results."""
    if not person:
        return EVERYONE_IN_ORGANISATION
    viewer_email = (viewer.email if viewer else "").strip().lower()
    if viewer_email and viewer_email in (person.get("emails") or []):
        return EVERYONE_IN_ORGANISATION
    level = person.get("visibility") or ORGANIZATION
    if level == PRIVATE:
        return NOBODY
    if level == RESTRICTED:
        allowed = {*(person.get("viewers") or []), (person.get("manager") or "").lower()} - {""}
        return Visibility(RESTRICTED, CHOSEN, bool(viewer_email) and viewer_email in allowed)
    outside = organization is not None and organization.is_external(person.get("primary_email"))
    if outside and person.get("external_tips") is False:
        return NOT_OUTSIDE
    return EVERYONE_IN_ORGANISATION


def shows(viewer: User | None, person: dict | None, organization: Organization | None = None) -> bool:
    """Whether tips and styles about ``person`` may be shown to ``viewer``."""
    return visibility(viewer, person, organization).shows_results


def notice(shown: Iterable[Visibility]) -> str | None:
    """One sentence for a page showing these people's results: who can see them (None when none are shown)."""
    audiences = sorted({v.audience for v in shown if v.shows_results})
    if not audiences:
        return None
    if len(audiences) == 1:
        return f"The assessment results shown here are visible to {audiences[0]}."
    return "The assessment results shown here are visible to: " + "; ".join(audiences) + ", depending on the person."


def redact(directory: Directory, viewer: User | None, organization: Organization | None = None) -> Directory:
    """The directory as ``viewer`` may see it: people who do not show their results to the viewer keep their
    name and addresses (they are in the meeting) but lose their assessments, so no style, tip or mix is drawn
    from them on any surface built from it (digest, prep, coaching, API, outbound payloads, channel messages)."""
    return Directory(person if shows(viewer, person, organization) else {**person, "assessments": {},
                                                                          "hidden": True}
                     for person in directory.people())
