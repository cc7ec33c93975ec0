"""The person the API tests ask about: me@example.com in Paris, with the people directory loaded."""

from __future__ import annotations

import pytest

from tests.support.factories import add_people, add_user


@pytest.fixture
def me(db):
    add_people(db)
    return add_user(db, time_zone="Europe/Paris")
