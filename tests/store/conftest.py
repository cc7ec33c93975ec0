"""Fixtures for these tests: the emulator's mailboxes (tests/support/mailboxes.py), for Graph-shaped events."""

from tests.support.mailboxes import mailboxes  # noqa: F401 - fixtures
