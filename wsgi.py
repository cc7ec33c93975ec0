"""WSGI entry point: gunicorn wsgi:app

A setting that stops the web process exits with gunicorn's boot-error code (3), so gunicorn stops instead
of restarting the worker forever (service/web/serving.py).
"""

from service.app import create_app
from service.config import ConfigError
from service.logs import configure
from service.web.serving import refuse_to_start, web_settings

try:
    _settings = web_settings()
except ConfigError as exc:
    refuse_to_start(exc)
configure(_settings)
app = create_app(_settings)
