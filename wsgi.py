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
if _settings.embedded_redis:
    # Each gunicorn worker would start its own Redis, and the webhooks would queue work no worker sees.
    print("calsync: REDIS_URL must be set to serve with gunicorn (for embedded mode run `calsync dev`)",
          file=sys.stderr)
    raise SystemExit(2)
configure(_settings)
app = create_app(_settings)
