"""The web app: ``create_app`` builds it (gunicorn serves ``wsgi:app``; tests build their own)."""

from __future__ import annotations

import importlib

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from service import inputs
from service.config import Settings
from service.runtime import Runtime
from service.web import bodies, csrf, middleware
from service.webhooks import fast

# Each area's blueprint (a module-level ``bp``), registered in this order. They import nothing that connects.
BLUEPRINTS = (
    "service.web.health",
    "service.auth.home",
    "service.auth.routes",
    "service.auth.tenant_admin",
    "service.webhooks.routes",
    "service.digest.pages",
    "service.digest.week_pages",
    "service.api.openapi",
    "service.api.routes",
    "service.api.tenantwide",
    "service.api.timeside",
    "service.api.channels",
    "service.api.interactions",
    "service.ops.routes",
    "service.ops.data",
    "service.ops.metrics",
    "service.ops.outbound",
    "service.ops.users",
)


class JSONProvider(DefaultJSONProvider):
    """Request bodies are read by ``inputs.json_loads``: what nothing downstream can store is a 400, not a 500
    (``request.get_json`` turns its ValueError into a 400, or None when ``silent``)."""

    def loads(self, s: str | bytes, **kwargs) -> object:
        return inputs.json_loads(s)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    """Build the web app. Tests pass their own Settings/Runtime; production reads the environment.

    Nothing connects here: MongoDB and Redis clients are created on first use.
    """
    if runtime is None:
        runtime = Runtime(settings or Settings.from_env())
    settings = runtime.settings
    app = Flask(__name__)
    app.json = JSONProvider(app)
    app.wsgi_app = bodies.guard(fast.FastWebhooks(app.wsgi_app, runtime))   # Graph's POSTs skip Flask
    secure = settings.public_url.startswith("https://")
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=16 * 1024 * 1024,  # the webhook routes enforce their own, smaller limit
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        SESSION_COOKIE_NAME="calsync_session",
        PREFERRED_URL_SCHEME="https" if secure else "http",
    )
    app.extensions["calsync"] = runtime
    app.extensions["calsync.settings"] = settings
    csrf.init_app(app)
    middleware.init_app(app, settings)
    for name in BLUEPRINTS:
        app.register_blueprint(importlib.import_module(name).bp)
    return app
