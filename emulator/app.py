"""The emulator object (state, clock, identity, delivery machinery) and the Flask app serving it."""

from __future__ import annotations

import logging
import threading
from collections import deque

import requests
from flask import Flask, request

from emulator.clock import Clock
from emulator.control import check_control_secret, create_control_blueprint, token_claims
from emulator.delta import DeltaEngine
from emulator.errors import install_error_handlers
from emulator.faults import Faults
from emulator.graph import create_graph_blueprint
from emulator.identity import Identity
from emulator.identity_web import control_blueprint, identity_blueprint
from emulator.limits import MailboxLimits
from emulator.notify import Notifier
from emulator.rich import validation_claims
from emulator.slack.routes import create_slack_blueprint, create_slack_control_blueprint
from emulator.slack.state import SlackState
from emulator.state import State
from emulator.subscriptions import Subscriptions
from emulator.teams.routes import (
    create_connector_blueprint,
    create_teams_control_blueprint,
    create_teams_graph_blueprint,
)
from emulator.teams.state import TeamsState

log = logging.getLogger(__name__)

DEFAULT_CONTROL_SECRET = "emulator-control-secret"  # noqa: S105 - a public test value


class Emulator:
    """Everything the emulated Graph and identity platform know, shared by all request threads."""

    def __init__(
        self,
        *,
        control_secret: str = DEFAULT_CONTROL_SECRET,
        seed: int = 0,
        time_scale: float = 1.0,
        batch_window: float = 0.05,
        max_batch: int = 100,
        delivery_timeout: float = 3.0,
        retry_timeout: float = 10.0,
        handshake_timeout: float = 10.0,
        notify_ca_bundle: str | None = None,
        apps=None,
        identity=None,
    ):
        self.control_secret = control_secret
        self.base_url = "https://127.0.0.1"
        self.clock = Clock()
        self.state = State(self.clock)
        self.identity = identity if identity is not None else Identity(self.clock, self.state, apps)
        self.faults = Faults(seed)
        self.limits = MailboxLimits(self.clock)
        self.delta = DeltaEngine(self.state)
        self.teams = TeamsState()
        self.slack = SlackState()
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE and proxies from the environment must not apply
        if notify_ca_bundle:
            self.session.verify = notify_ca_bundle
        self.notifier = Notifier(
            session=self.session, faults=self.faults, clock=self.clock, sign=self._validation_token,
            time_scale=time_scale, batch_window=batch_window, max_batch=max_batch, timeout=delivery_timeout,
            retry_timeout=retry_timeout,
        )
        self.subscriptions = Subscriptions(self, self.notifier, self.session, handshake_timeout=handshake_timeout)
        self.notifier.on_missed = self.subscriptions.missed
        self.notifier.is_active = self.subscriptions.is_active
        self.notifier.is_paused = self.subscriptions.is_paused
        self.state.listeners.append(self.subscriptions.on_change)
        self.state.user_listeners.append(self._on_user)
        self._requests: deque[dict] = deque(maxlen=50_000)
        self._requests_lock = threading.Lock()
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self.notifier.start()
            self.subscriptions.start()

    def stop(self) -> None:
        if self._started:
            self.subscriptions.stop()
            self.notifier.stop()
        self.session.close()

    def _on_user(self, user_id: str, what: str) -> None:
        if what in ("password_changed", "disabled", "deleted"):
            self.identity.revoke(user_id)
        self.subscriptions.on_user(user_id, what)

    def _validation_token(self, app_id: str, tenant_id: str) -> str:
        return self.identity.sign(validation_claims(app_id, tenant_id, self.clock()))

    def mint_token(self, data: dict) -> dict:
        claims = token_claims(self, data)
        return {"access_token": self.identity.sign(claims), "token_type": "Bearer",
                "expires_in": claims["exp"] - claims["iat"]}

    def record_request(self, method: str, path: str, status: int, prefer: str | None = None,
                       client_request_id: str | None = None, in_batch: bool = False) -> None:
        """One request Graph answered; ``in_batch``: an individual request of a ``$batch`` (logged as well)."""
        with self._requests_lock:
            self._requests.append({"at": self.clock().isoformat(), "method": method, "path": path, "status": status,
                                   "prefer": prefer, "client_request_id": client_request_id, "in_batch": in_batch})

    def requests_log(self) -> list[dict]:
        with self._requests_lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._requests_lock:
            self._requests.clear()

    def reset(self) -> None:
        """Forget faults, limit settings and logs (tenants, users, calendars, events and subscriptions stay)."""
        self.faults.clear()
        self.limits.reset()
        self.delta.silent_occurrence_removal = False
        self.notifier.clear()
        self.clear_requests()


def create_app(emulator: Emulator) -> Flask:
    """The Flask app: identity at the root, Graph under /v1.0, controls under /_emulator."""
    app = Flask(__name__)
    app.config["EMULATOR"] = emulator
    app.config["MAX_CONTENT_LENGTH"] = 16 * 1024 * 1024
    install_error_handlers(app)

    @app.before_request
    def _guard_control():
        if request.path.startswith("/_emulator"):
            check_control_secret()

    app.register_blueprint(create_graph_blueprint())
    app.register_blueprint(create_teams_graph_blueprint())
    app.register_blueprint(create_connector_blueprint())
    app.register_blueprint(create_slack_blueprint())
    app.register_blueprint(create_teams_control_blueprint())
    app.register_blueprint(create_slack_control_blueprint())
    app.register_blueprint(create_control_blueprint())
    app.register_blueprint(identity_blueprint(emulator.identity))
    app.register_blueprint(control_blueprint(emulator.identity), url_prefix="/_emulator/identity")
    return app
