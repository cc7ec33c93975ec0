"""Fixtures for these tests: the emulator's mailboxes (tests/support/mailboxes.py)."""

from tests.support.mailboxes import graph_rt, mailbox, mailboxes  # noqa: F401 - fixtures
