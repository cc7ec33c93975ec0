"""The ``calsync`` command: the one entry point for operators.

Each area's module in this package adds its subcommands through a ``register(cli)`` function.
"""

from __future__ import annotations

import logging
import sys
import threading

import click

from emulator.server import main as serve_emulator
from service import procfile, store
from service.cli import demo, digest, keys, migrations, recover, subscriptions, sync, users, webhooks
from service.cli.context import Group, needs_data, runtime_from_env
from service.cli.devserver import DevServer, stop_on_signals, wait_until_set
from service.recovery import redis_loss
from service.sync import dispatch
from service.workers.scheduler import Scheduler

log = logging.getLogger(__name__)

AREAS = (keys, users, subscriptions, sync, digest, webhooks, demo, recover)


@click.group(cls=Group, help="calsync: Microsoft 365 calendar sync and people insights.")
def cli() -> None:
    pass


@cli.command("init-db")
@needs_data()
def init_db_command() -> None:
    """Create every MongoDB index and run data migrations (idempotent; the Procfile's release step)."""
    rt = runtime_from_env()
    created = store.init_db(rt.db)
    for collection, names in sorted(created.items()):
        click.echo(f"{collection}: {', '.join(names) or '-'}")
    for name, changed in migrations.run(rt.db, rt.settings).items():
        click.echo(f"migration {name}: {changed} document(s)")


@cli.command()
@click.option("--port", default=8000, show_default=True, help="Port for the web app.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--workers", default=2, show_default=True, help="rq worker processes (with MONGODB_URI).")
def dev(port: int, host: str, workers: int) -> None:
    """Run web, worker and scheduler: the Procfile's processes with MONGODB_URI, else one process."""
    rt = runtime_from_env()
    if not rt.settings.embedded_mongo:
        _dev_procfile(rt, host, port, workers)
        return
    server = DevServer(rt, host=host, port=port)
    stop = stop_on_signals()
    server.start()
    click.echo(f"calsync dev: web on http://{host}:{server.port}  (Ctrl-C stops everything)")
    try:
        wait_until_set(stop)
    finally:
        server.stop()
        rt.close()


def _dev_procfile(rt, host: str, port: int, workers: int) -> None:
    """The Procfile's processes sharing MONGODB_URI (and REDIS_URL, or an embedded redis-server)."""
    try:
        code = procfile.run(rt.settings, rt.redis_url, host=host, port=port, workers=workers)
    except procfile.ProcfileNotFound as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        rt.close()
    sys.exit(code)


@cli.command()
def scheduler() -> None:
    """Run the periodic scheduler (exactly one acts, even if several run) and a sync request dispatcher."""
    rt = runtime_from_env()
    stop = stop_on_signals()
    dispatcher = threading.Thread(target=dispatch.run, args=(rt.redis, stop), name="calsync-dispatcher", daemon=True)
    dispatcher.start()
    Scheduler(rt.redis, watch=redis_loss.watch(rt.db, rt.redis).check).run(stop)
    dispatcher.join(timeout=5)


@cli.command()
@click.option("--port", default=8443, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--directory", default="var/emulator", show_default=True, help="Where its CA and keys go.")
def emulator(port: int, host: str, directory: str) -> None:
    """Serve the local Microsoft Graph + identity emulator over HTTPS."""
    serve_emulator(port=port, host=host, directory=directory)


for area in AREAS:
    area.register(cli)


def main() -> None:
    cli(prog_name="calsync")
