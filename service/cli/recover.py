"""``calsync recover``: after MongoDB was restored from an older backup (run ``calsync init-db`` first)."""

from __future__ import annotations

import click

from service.cli.context import needs_data, runtime_from_env
from service.recovery import restore
from service.store import utcnow


def register(cli: click.Group) -> None:
    cli.add_command(recover_command)


@click.command("recover")
@click.option("--sequence-gap", default=restore.SEQUENCE_GAP, show_default=True,
              help="How far every user's outbound sequence moves on (numbers handed out after the backup).")
@needs_data(redis=True)
def recover_command(sequence_gap: int) -> None:
    """Reconcile a MongoDB restored from a backup: subscriptions checked at Graph (adopted, deleted or created),
    every user resynced in full, digests and prep mails sent since recorded again from Redis."""
    rt = runtime_from_env()
    report = restore.recover(rt.db, rt.redis, rt.settings, rt.graph_for, rt.subscriptions, utcnow(), sequence_gap)
    width = max(len(name) for name in report)
    click.echo("what\tcount".expandtabs(width + 2))
    for name, count in report.items():
        click.echo(f"{name.replace('_', ' ')}\t{count}".expandtabs(width + 2))
    click.echo("Syncs are queued: workers bring every user back in line with Graph within minutes.")
