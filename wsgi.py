"""WSGI entry point: gunicorn wsgi:app"""

import sys

from service import create_app
from service.config import ConfigError, Settings
from service.logs import configure

try:
    _settings = Settings.from_env()
except ConfigError as exc:
    print(f"calsync: configuration error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None
configure(_settings)
app = create_app(_settings)
