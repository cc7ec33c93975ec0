"""The ``calsync`` command: the one entry point for operators.

Each area adds its own subcommands through a ``register(cli)`` function in its ``cli`` module.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
import threading

import click

from service.config import ConfigError, Settings

log = logging.getLogger(__name__)

COMMAND_MODULES = (
    "service.auth.cli",
    "service.subscriptions.cli",
    "service.workers.cli",
    "service.digest.cli",
    "service.demo",
)


def load_settings() -> Settings:
    """Settings from the environment; a bad value ends the command with one line and exit code 2."""
    try:
        return Settings.from_env()
    except ConfigError as exc:
        click.echo(f"calsync: configuration error: {exc}", err=True)
        sys.exit(2)


def runtime_from_env():
    """A Runtime for this command, installed for the jobs it may run in-process."""
    from service import runtime
    from service.logs import configure

    settings = load_settings()
    configure(settings)
    rt = runtime.Runtime(settings)
    runtime.install(rt)
    return rt


@click.group(help="calsync: Microsoft 365 calendar sync and people insights.")
def cli() -> None:
    pass


@cli.command("init-db")
def init_db_command() -> None:
    """Create every MongoDB index and run data migrations (idempotent; the Procfile's release step)."""
    from service import migrations, store

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
    from service.devserver import DevServer

    rt = runtime_from_env()
    if not rt.settings.embedded_mongo:
        _dev_procfile(rt, host, port, workers)
        return
    server = DevServer(rt, host=host, port=port)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    click.echo(f"calsync dev: web on http://{host}:{server.port}  (Ctrl-C stops everything)")
    try:
        stop.wait()
    finally:
        server.stop()
        rt.close()


def _dev_procfile(rt, host: str, port: int, workers: int) -> None:
    """The Procfile's processes sharing MONGODB_URI (and REDIS_URL, or an embedded redis-server)."""
    from service import procfile

    try:
        code = procfile.run(rt.settings, rt.redis_url, host=host, port=port, workers=workers)
    except procfile.ProcfileNotFound as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        rt.close()
    sys.exit(code)


@cli.command()
def scheduler() -> None:
    """Run the periodic scheduler (exactly one acts, even if several run)."""
    from service.workers.scheduler import Scheduler

    rt = runtime_from_env()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    Scheduler(rt.redis).run(stop)


@cli.command()
@click.option("--port", default=8443, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--directory", default="var/emulator", show_default=True, help="Where its CA and keys go.")
def emulator(port: int, host: str, directory: str) -> None:
    """Serve the local Microsoft Graph + identity emulator over HTTPS."""
    from emulator.server import main

    main(port=port, host=host, directory=directory)


def _register_area_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(cli)


_register_area_commands()


def main() -> None:
    cli(prog_name="calsync")
