"""Fixtures for these tests: the emulator's mailboxes (tests/support/mailboxes.py) and, for the files not yet
moved to it, the loopback fake Graph (tests/support/fakegraph.py)."""

from tests.support.fakegraph import connected, fake_graph, graph_route, rt  # noqa: F401 - fixtures
from tests.support.mailboxes import graph_rt, mailbox, mailboxes  # noqa: F401 - fixtures
