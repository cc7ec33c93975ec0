"""What every ``calsync`` subcommand starts from: the settings (a bad one ends the command with one line
and exit code 2), a Runtime installed for any job the command runs in-process, the guard of the commands that
read or write the service's data, and one line instead of a traceback when something it needs cannot be reached.
"""

from __future__ import annotations

import functools
import os
import sys
from urllib.parse import urlsplit

import click
import requests
from pymongo.errors import PyMongoError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.config import ConfigError, Settings
from service.graph import GraphError
from service.logs import configure
from service.runtime import Runtime, install

NEEDS_DATABASE = (
    "calsync: {command} works on the service's data, but MONGODB_URI is not set, so it would act on a private "
    "in-memory store that vanishes when it exits: set MONGODB_URI to the database the service uses (or pass "
    "--mongodb-uri mongodb://HOST:27017/calsync)")
NEEDS_REDIS = (
    "calsync: {command} queues work for the service's workers, but REDIS_URL is not set, so it would queue it "
    "in a private Redis no worker reads: set REDIS_URL to the service's Redis (or pass --redis-url redis://HOST:6379/0)")


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        click.echo(f"calsync: configuration error: {exc}", err=True)
        sys.exit(2)


def runtime_from_env() -> Runtime:
    """The command's Runtime; a command marked ``needs_data`` is refused here (one line, exit code 2) when the
    settings name no MongoDB (or Redis) of the service's own."""
    settings = load_settings()
    _refuse_private_stores(settings)
    configure(settings)
    rt = Runtime(settings)
    install(rt)
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.find_root().call_on_close(rt.close)   # its clients close when the command ends
    return rt


NEEDS = "calsync.needs"   # click context meta: (mongo, redis) the running command needs from the environment


def _refuse_private_stores(settings: Settings) -> None:
    ctx = click.get_current_context(silent=True)
    mongo, redis = ctx.meta.get(NEEDS, (False, False)) if ctx is not None else (False, False)
    name = ctx.command_path.split(" ", 1)[-1] if ctx is not None else "this command"
    if mongo and settings.embedded_mongo:
        click.echo(NEEDS_DATABASE.format(command=name), err=True)
        sys.exit(2)
    if redis and settings.embedded_redis:
        click.echo(NEEDS_REDIS.format(command=name), err=True)
        sys.exit(2)


def needs_data(mongo: bool = True, redis: bool = False):
    """Decorate a command that reads or writes the service's data: it takes ``--mongodb-uri`` (with ``mongo``)
    and ``--redis-url`` (with ``redis``), which default to the environment's, and ``runtime_from_env`` refuses it
    with one line and exit code 2 when neither names one (the embedded stores are private to this process)."""

    def decorate(command):
        @functools.wraps(command)
        def run(*args, mongodb_uri: str | None = None, redis_url: str | None = None, **kwargs):
            if mongodb_uri:
                os.environ["MONGODB_URI"] = mongodb_uri   # Settings reads the environment, once, in this process
            if redis_url:
                os.environ["REDIS_URL"] = redis_url
            click.get_current_context().meta[NEEDS] = (mongo, redis)
            return command(*args, **kwargs)

        if mongo:
            run = click.option("--mongodb-uri", metavar="URI", default=None,
                               help="The service's MongoDB (default: $MONGODB_URI).")(run)
        if redis:
            run = click.option("--redis-url", metavar="URL", default=None,
                               help="The service's Redis (default: $REDIS_URL).")(run)
        return run

    return decorate


def _host(url: str | None) -> str:
    parts = urlsplit(url or "")
    return parts.netloc.rsplit("@", 1)[-1] or "?"


def unreachable(exc: BaseException, settings: Settings | None) -> str | None:
    """One line for a dependency that did not answer, or None when ``exc`` is not that."""
    if isinstance(exc, GraphError) and exc.status == 0:
        where = settings.graph_url if settings else "Microsoft Graph"
        return f"cannot reach Microsoft Graph at {where} ({exc.message}); check CALSYNC_GRAPH_URL and the network"
    if isinstance(exc, requests.RequestException):
        url = getattr(exc.request, "url", None) or ""
        if settings and _host(url) == _host(settings.graph_url):
            return (f"cannot reach Microsoft Graph at {settings.graph_url} ({type(exc).__name__}); "
                    "check CALSYNC_GRAPH_URL and the network")
        where = settings.authority_host if settings else "the identity platform"
        return (f"cannot reach the Microsoft identity platform at {where} ({type(exc).__name__}); "
                "check CALSYNC_AUTHORITY_HOST and the network")
    if isinstance(exc, PyMongoError):
        where = _host(settings.mongodb_uri) if settings and settings.mongodb_uri else "MONGODB_URI"
        return f"cannot reach MongoDB at {where} ({type(exc).__name__}); is it running, and is MONGODB_URI right?"
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return f"cannot reach Redis ({type(exc).__name__}); is it running, and is REDIS_URL right?"
    return None


class Group(click.Group):
    """The ``calsync`` group: a dependency that does not answer ends a command with one line (exit code 1),
    not a traceback through requests, MSAL or pymongo."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (GraphError, requests.RequestException, PyMongoError, RedisConnectionError, RedisTimeoutError) as exc:
            try:
                settings = Settings.from_env()
            except ConfigError:
                settings = None
            line = unreachable(exc, settings)
            if line is None:
                raise
            raise click.ClickException(line) from None
