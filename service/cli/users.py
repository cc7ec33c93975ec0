"""``calsync users list``: who is connected, and why the others are not."""

from __future__ import annotations

import click

from service.cli.context import needs_data, runtime_from_env
from service.cli.output import echo_table, moment
from service.store import users
from service.store.records import connection_words


def register(cli: click.Group) -> None:
    cli.add_command(users_group)


@click.group("users", help="Connected users and their connection status.")
def users_group() -> None:
    pass


@users_group.command("list")
@click.option("--status", default=None, help="Only this connection status (connected, needs_reconnect, ...).")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 100_000))
@needs_data()
def list_users(status: str | None, limit: int) -> None:
    """Every user by email: connection status and why, since when, last sync and its result."""
    rt = runtime_from_env()
    rows = [(u.email or u.id, u.display_name or "", connection_words(u.connection.status),
             u.connection.reason if u.connection.status != "connected" else "", moment(u.connection.since, "-"),
             moment(u.sync.last_sync_at), u.sync.last_result or "")
            for u in users.listing(rt.db, status, limit)]
    echo_table(["EMAIL", "NAME", "STATUS", "WHY", "SINCE", "LAST SYNC", "RESULT"], rows, empty="no users")
