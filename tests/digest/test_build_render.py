from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from service.digest.build import Section, TipView, build_digest
from service.digest.render import render_html, render_text
from service.insights.collaborators import Collaborator
from service.insights.matching import Directory, attendee_emails
from service.insights.tips import Tip
from tests.support.factories import add_event, add_people, add_user, attendee

DAY = date(2026, 3, 8)  # spring-forward day in New York


def _digest(db, events, user):
    directory = Directory.for_emails(db, attendee_emails(events) | {user.email})
    return build_digest(user, DAY, events, directory, [Collaborator("ana@example.com", "Ana", "x", 2.0, 3, 90)])


def test_digest_lists_the_local_day_in_local_time_skipping_cancelled_and_declined(db):
    user = add_user(db, time_zone="America/New_York")
    add_people(db)
    ny = lambda h, m=0: datetime(2026, 3, 8, h, m, tzinfo=UTC) + timedelta(hours=4)  # noqa: E731 (EDT)
    events = [
        add_event(db, user.id, "late", ny(16), ny(17), subject="Planning",
                  attendees=[attendee("ana@example.com"), attendee("stranger@partner.example", "Sam")]),
        add_event(db, user.id, "early", datetime(2026, 3, 8, 6, 0, tzinfo=UTC),  # 01:00 EST
                  datetime(2026, 3, 8, 6, 30, tzinfo=UTC), subject="Early call",
                  attendees=[attendee("cy@example.com")]),
        add_event(db, user.id, "cancelled", ny(9), ny(10), subject="Gone", is_cancelled=True),
        add_event(db, user.id, "declined", ny(11), ny(12), subject="Nope",
                  attendees=[attendee("me@example.com", response="declined"), attendee("ben@example.com")]),
        add_event(db, user.id, "holiday", datetime(2026, 3, 8, 5, 0, tzinfo=UTC),
                  datetime(2026, 3, 9, 4, 0, tzinfo=UTC), subject="Offsite", is_all_day=True,
                  start_tz="Eastern Standard Time"),
        add_event(db, user.id, "tomorrow", datetime(2026, 3, 9, 4, 30, tzinfo=UTC),  # 00:30 EDT next day
                  datetime(2026, 3, 9, 5, 0, tzinfo=UTC), subject="Tomorrow"),
        add_event(db, user.id, "yesterday", datetime(2026, 3, 8, 4, 0, tzinfo=UTC),  # 23:00 EST the 7th
                  datetime(2026, 3, 8, 4, 59, tzinfo=UTC), subject="Yesterday"),
    ]

    digest = _digest(db, events, user)

    assert [(m.subject, m.start.strftime("%H:%M")) for m in digest.meetings] == [
        ("Early call", "01:00"), ("Planning", "16:00")]
    assert [m.subject for m in digest.all_day] == ["Offsite"]
    planning = digest.meetings[1]
    ana, sam = planning.attendees
    assert ana.styles == ["DISC D (Dominance)", "Enneagram 8 (The Challenger)"]
    assert (sam.matched, sam.tips, sam.styles, sam.external) == (False, [], [], False)
    # Tips are once per person, in the people section (Cy first: met first), not under each meeting.
    assert ana.tips == [] and [p.name for p in digest.people] == ["Cy", "Ana"]
    person = digest.people[1]
    assert 1 <= len(person.tips) <= 2 and ana.anchor == person.anchor
    # The user is an S; Ana a D: the first tip is the S+D pairing.
    assert person.tips[0].text.startswith("Say your concern early")
    assert person.meetings == ["16:00 Planning"]
    assert digest.meet_most[0].name == "Ana"
    assert digest.summary.words == ("2 meetings with 3 people, 1 h 30 min in all; heaviest stretch 16:00–17:00 "
                                    "(1 h); and 1 all-day event.")


def test_rendered_digest_has_text_and_self_contained_html(db):
    user = add_user(db, time_zone="America/New_York")
    add_people(db)
    start = datetime(2026, 3, 8, 14, 0, tzinfo=UTC)
    event = add_event(db, user.id, "e1", start, start + timedelta(minutes=45),
                      subject="Budget <review> & plan", attendees=[attendee("ben@example.com")])
    digest = _digest(db, [event], user)
    digest.meetings[0].link = "https://calsync.example/meetings/abc?t=tok"
    digest.unsubscribe_link = "https://calsync.example/digest/unsubscribe?t=tok"

    text, html = render_text(digest), render_html(digest)

    assert "10:00-10:45  Budget <review> & plan" in text
    assert "You meet most with Ana (last 30 days)." in text
    assert "Budget &lt;review&gt; &amp; plan" in html
    assert "<img" not in html and "<link" not in html and "<style" not in html
    assert re.search(r'style="[^"]+"', html)
    assert 'href="https://calsync.example/meetings/abc?t=tok"' in html
    urls = re.findall(r'(?:href|src)="([^"]+)"', html)
    assert all(url.startswith("https://calsync.example/") for url in urls if not url.startswith("#"))
    # In-mail links from an attendee to their tips, and semantic headings for screen readers.
    assert 'href="#p1"' in html and 'id="p1"' in html
    assert html.count("<h1") == 1 and "<h2" in html and "<h3" in html


def test_a_section_added_by_another_part_reads_the_same_in_html_and_text(db):
    user = add_user(db, time_zone="America/New_York")
    digest = _digest(db, [], user)
    tip = TipView(Tip("disc", "C", "Send the agenda the day before."), useful="https://calsync.example/f?t=u",
                  not_useful="https://calsync.example/f?t=n", rate="https://calsync.example/f?t=r", number=1)
    digest.sections.append(Section("week-ahead", "Next week", ["22 h of meetings; Tuesday is the heaviest."],
                                   [tip], ("Your week", "https://calsync.example/week?t=w")))

    text, html = render_text(digest), render_html(digest)

    assert 'class="section week-ahead"' in html and ">Next week</h2>" in html
    assert "22 h of meetings; Tuesday is the heaviest." in html and "Send the agenda the day before." in html
    assert 'href="https://calsync.example/week?t=w"' in html and 'href="https://calsync.example/f?t=n"' in html
    assert "NEXT WEEK\n22 h of meetings; Tuesday is the heaviest." in text
    assert "* Send the agenda the day before. [1]" in text and "[1] https://calsync.example/f?t=r" in text
    assert "Your week: https://calsync.example/week?t=w" in text
