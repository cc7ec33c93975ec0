"""What every ``calsync`` subcommand starts from: the settings (a bad one ends the command with one line
and exit code 2) and a Runtime, installed for any job the command runs in-process."""

from __future__ import annotations

import sys

import click

from service.config import ConfigError, Settings
from service.logs import configure
from service.runtime import Runtime, install


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        click.echo(f"calsync: configuration error: {exc}", err=True)
        sys.exit(2)


def runtime_from_env() -> Runtime:
    settings = load_settings()
    configure(settings)
    rt = Runtime(settings)
    install(rt)
    return rt
