"""``calsync sync USER``: run (or queue) one user's delta sync; ``calsync reconcile``: run the sweep now."""

from __future__ import annotations

import click

from service.cli.context import needs_data, runtime_from_env
from service.store import calendars, users, utcnow
from service.sync import requests, sweeps
from service.workers import jobs


def register(cli: click.Group) -> None:
    cli.add_command(sync_command)
    cli.add_command(reconcile_command)


@click.command("sync")
@click.argument("user")
@click.option("--full", is_flag=True, help="Forget every calendar's delta cursor first (full resync of the window).")
@click.option("--queue", "queue_only", is_flag=True, help="Only ask a worker to do it (as a notification would).")
@needs_data(redis=True)
def sync_command(user: str, full: bool, queue_only: bool) -> None:
    """Sync USER (Graph id or email) now, in this process, and print what happened."""
    rt = runtime_from_env()
    found = users.find(rt.db, user)
    if found is None:
        raise click.ClickException("no such user")
    if full:
        calendars.clear_cursor(rt.db, found.id)
    if queue_only:
        queued = requests.request_sync(rt.redis, found.id, "cli")
        click.echo("queued" if queued else "a sync is already pending")
        return
    outcome = jobs.sync_user(found.id)
    info = users.get(rt.db, found.id).sync
    click.echo(f"{outcome}: last_result={info.last_result} lag_seconds={info.lag_seconds} "
               f"error_count={info.error_count}")


@click.command("reconcile")
@needs_data(redis=True)
def reconcile_command() -> None:
    """Queue a delta sync for every user not synced for CALSYNC_RECONCILE_HOURS."""
    rt = runtime_from_env()
    click.echo(f"{sweeps.reconcile(rt.db, rt.redis, rt.settings, utcnow())} syncs requested")
