"""The people directory's unique multikey index on ``emails`` is what keeps an email to one person."""

from __future__ import annotations

import pytest

from service.insights.people import import_rows
from service.store import people as people_store
from tests.support.racing import race


def person(email: str, *aliases: str, name: str = "Someone") -> dict:
    return {"email": email, "aliases": list(aliases), "name": name,
            "assessments": {"disc": {"primary": "D"}}}


def test_the_index_refuses_an_email_that_another_person_holds_as_an_alias(db):
    import_rows(db, [(1, person("ana@contoso.com", "a.silva@contoso.com"))])

    summary = import_rows(db, [(1, person("a.silva@contoso.com", name="Other"))])

    assert summary.created == 0 and summary.updated == 1   # the alias names the existing person
    assert db.people.count_documents({}) == 1


@pytest.mark.wire
def test_two_imports_claiming_one_email_at_once_make_one_person_and_one_rejected_row(db, mongodb_uri):
    rejected_rows = []
    for n in range(60):
        shared = f"shared{n}@contoso.com"
        rows = ([(1, person(f"first{n}@contoso.com", shared, name="First"))],
                [(1, person(f"second{n}@contoso.com", shared, name="Second"))])
        summaries = race(mongodb_uri, *(lambda db, batch=batch: import_rows(db, batch) for batch in rows))

        rejected = [reason for s in summaries for _, reason in s.rejected]
        assert db.people.count_documents({"emails": shared}) == 1, shared
        # Sequentially the second row names the first person (they share an email) and updates it; when both
        # create at once, the index refuses one and that row is rejected with its reason.
        assert sum(s.created + s.updated for s in summaries) + len(rejected) == 2, (summaries, shared)
        rejected_rows += rejected
    assert all(reason == "an email is already used by another person" for reason in rejected_rows)
    assert people_store.by_email(db, "shared0@contoso.com") is not None
