"""The ``calsync`` command (``service.cli:main``): one module per area, as rq's ``rq/cli/`` does."""

from service.cli.main import cli, main

__all__ = ["cli", "main"]
