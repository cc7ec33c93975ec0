"""Operator commands: ``calsync certs create`` and ``calsync subscriptions list|sweep|mirror``."""

from __future__ import annotations

from pathlib import Path

import click

from service import queues
from service.cli.context import load_settings, needs_data, runtime_from_env
from service.cli.output import echo_table, moment
from service.store import subscriptions as store
from service.store import users
from service.subscriptions import mirror
from service.subscriptions.certificate import create_certificate, default_paths


def register(cli: click.Group) -> None:
    cli.add_command(certs)
    cli.add_command(subscriptions)


@click.group(help="The certificate Graph encrypts rich notifications with.")
def certs() -> None:
    pass


@certs.command("create")
@click.option("--cert", "cert_path", type=click.Path(dir_okay=False), help="Default: CALSYNC_RICH_CERT or data dir.")
@click.option("--key", "key_path", type=click.Path(dir_okay=False), help="Default: CALSYNC_RICH_KEY or data dir.")
@click.option("--days", default=365, show_default=True, type=click.IntRange(1, 3650))
@click.option("--force", is_flag=True, help="Overwrite an existing certificate and key.")
def create_cert(cert_path: str | None, key_path: str | None, days: int, force: bool) -> None:
    """Write a self-signed RSA 2048 certificate and private key for rich notifications."""
    default_cert, default_key = default_paths(load_settings())
    cert = Path(cert_path) if cert_path else default_cert
    key = Path(key_path) if key_path else default_key
    existing = [str(p) for p in (cert, key) if p.exists()]
    if existing and not force:
        raise click.ClickException(f"{', '.join(existing)} already exists (use --force to replace)")
    keypair = create_certificate(cert, key, days=days)
    click.echo(f"certificate: {cert}\nprivate key: {key} (mode 600)\nthumbprint:  {keypair.thumbprint}")
    click.echo(f"Set CALSYNC_RICH_NOTIFICATIONS=1 CALSYNC_RICH_CERT={cert} CALSYNC_RICH_KEY={key}")


@click.group(help="Graph subscriptions (one per connected user).")
def subscriptions() -> None:
    pass


@subscriptions.command("list")
@click.option("--status", type=click.Choice(["active", "failing", "removed"]), default=None)
@needs_data()
def list_subscriptions(status: str | None) -> None:
    """Every subscription, soonest expiry first: its owner's email, status, expiry, failures and the last error."""
    rt = runtime_from_env()
    found = store.listing(rt.db, status)
    owners = users.by_ids(rt.db, [row.user_id for row in found])
    rows = [(owners[row.user_id].email if row.user_id in owners else f"(unknown user {row.user_id})",
             str(row.status), moment(row.expires_at, "-"), moment(row.last_notification_at), row.failures,
             "rich" if row.rich else "basic",
             row.last_error or "", row.id) for row in found]
    echo_table(["USER", "STATUS", "EXPIRES", "LAST NOTIFICATION", "FAILURES", "KIND", "LAST ERROR", "SUBSCRIPTION"],
               rows, empty="no subscriptions")


@subscriptions.command("sweep")
@needs_data(mongo=False, redis=True)
def sweep() -> None:
    """Queue the renewal sweep now (a worker runs it)."""
    rt = runtime_from_env()
    job = queues.enqueue(rt.redis, queues.MAINTENANCE, queues.RENEWAL_SWEEP, retry=None)
    click.echo(f"queued renewal sweep {job.id}")


@subscriptions.command("mirror")
@needs_data(redis=True)
def rebuild_mirror() -> None:
    """Rebuild the Redis mirror the webhook reads (after Redis lost its data)."""
    rt = runtime_from_env()
    click.echo(f"mirrored {mirror.rebuild(rt.redis, rt.db)} subscriptions")
