"""``calsync rotate-keys``: re-encrypt every stored token cache (and outbound webhook secret) with the first
CALSYNC_TOKEN_KEYS key."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import click
from pymongo.database import Database

from service.cli.context import needs_data, runtime_from_env
from service.config import Settings
from service.identity import credentials, crypto
from service.outbound import endpoints as outbound_endpoints
from service.store import tokens as token_store

log = logging.getLogger(__name__)


@dataclass
class RotationReport:
    rotated: int = 0
    changed_meanwhile: int = 0
    unreadable: int = 0


def rotate_all(settings: Settings, db: Database) -> RotationReport:
    """Rewrite each cache under the first key, compare-and-swap, so live workers are never blocked.

    A cache rewritten by a worker meanwhile is already under the first key (workers encrypt with it), so
    losing the swap is fine. An unreadable cache is counted and left alone; its user is marked
    needs_reconnect the next time a worker needs a token.
    """
    report = RotationReport()
    for user_id, blob in token_store.iter_blobs(db):
        try:
            rotated = crypto.rotate(settings, blob)
        except crypto.CacheUnreadable:
            log.error("token cache of user %s cannot be decrypted with any configured key; left as is", user_id)
            report.unreadable += 1
            continue
        if token_store.replace_blob(db, user_id, blob, rotated):
            report.rotated += 1
        else:
            report.changed_meanwhile += 1
    return report


def register(cli: click.Group) -> None:
    @cli.command("rotate-keys")
    @click.option("--new-client-certificate", "new_certificate", type=click.Path(dir_okay=False),
                  help="Also write a new client certificate (key + certificate PEM) here, for the app registration.")
    @needs_data()
    def rotate_keys(new_certificate: str | None) -> None:
        """Re-encrypt stored token caches with the first key of CALSYNC_TOKEN_KEYS; with
        --new-client-certificate, also make the next certificate credential of the app.

        Zero-downtime rotation: 1) deploy with the new key first and the old keys after it; 2) run this;
        3) deploy without the old keys. Certificates: upload the new .cer to the app registration, deploy
        with CALSYNC_CLIENT_CERTIFICATES=new.pem,old.pem, then drop the old one from both.
        """
        rt = runtime_from_env()
        if new_certificate:
            made = credentials.make_certificate(Path(new_certificate))
            current = ",".join(rt.settings.client_certificates)
            click.echo(f"new client certificate: {made.pem_path} (SHA-1 thumbprint {made.sha1_thumbprint}, "
                       f"valid until {made.not_after:%Y-%m-%d})")
            click.echo(f"upload {made.public_path} to the app registration (Certificates & secrets), then deploy "
                       f"with CALSYNC_CLIENT_CERTIFICATES={made.pem_path}{',' + current if current else ''}")
        report = rotate_all(rt.settings, rt.db)
        click.echo(f"rotated: {report.rotated}  rewritten meanwhile: {report.changed_meanwhile}  "
                   f"unreadable: {report.unreadable}")
        secrets, unreadable_secrets = outbound_endpoints.rotate_keys(rt.db, rt.settings)
        click.echo(f"webhook secrets rotated: {secrets}  unreadable: {unreadable_secrets}")
        if report.unreadable or unreadable_secrets:
            raise SystemExit(1)
