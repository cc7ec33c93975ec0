"""Fixtures for these tests: the emulator's mailboxes (tests/support/mailboxes.py), and ``rt`` is their runtime
(Graph through the emulator) in every test here."""

import pytest

from tests.support.mailboxes import graph_rt, mailbox, mailboxes  # noqa: F401 - fixtures


@pytest.fixture
def rt(graph_rt):  # noqa: F811 - graph_rt is the fixture imported above
    return graph_rt
