"""The composition root: one process's clients (MongoDB, Redis, HTTP, mail), built lazily from Settings.

Only the adapters use a Runtime: the Flask app (``app.extensions["calsync"]``), the RQ entry points
(``service.workers.jobs``, through ``service.runtime``), the scheduler and the CLI. They take
from it the collaborators each domain function needs and pass them explicitly; domain modules never
import this one. In embedded mode (no MONGODB_URI) the in-memory store exists only inside one process,
so ``calsync dev`` builds one Runtime and gives it to every thread.
"""

from __future__ import annotations

import logging
import os
import ssl
import tempfile
import threading
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

import certifi
import redis
import requests
from pymongo.database import Database
from redis.backoff import NoBackoff
from redis.retry import Retry
from requests.adapters import HTTPAdapter

from service import store
from service.config import Settings
from service.connections.lifecycle import Connections
from service.embedded import start_embedded_redis
from service.graph import GraphClient
from service.identity.apptokens import AppTokens
from service.identity.idtoken import IdTokens
from service.identity.jwks import KeySets
from service.identity.tokens import Tokens
from service.mail import Mailer
from service.subscriptions.lifecycle import Subscriptions
from service.tenantwide.enrolment import TenantWide

log = logging.getLogger(__name__)

SYSTEM_CA_FILES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


class Runtime:
    def __init__(self, settings: Settings, *, db: Database | None = None, redis_conn: redis.Redis | None = None,
                 graph_for: Callable[[str], GraphClient] | None = None):
        """``graph_for`` replaces how Graph is reached as a user (tests point it at a stand-in)."""
        self.settings = settings
        self._lock = threading.Lock()
        self._embedded_redis = None
        self._owns_db = db is None            # close only the clients this Runtime created
        self._owns_redis = redis_conn is None
        if db is not None:
            self.__dict__["db"] = db
        if redis_conn is not None:
            self.__dict__["redis"] = redis_conn
        if graph_for is not None:
            self.__dict__["graph_for"] = graph_for

    @cached_property
    def db(self) -> Database:
        with self._lock:
            return store.connect(self.settings)

    @cached_property
    def redis(self) -> redis.Redis:
        with self._lock:
            # One quick retry, no backoff: the webhook must answer 503 within Graph's 3 s, not after
            # redis-py's default retry schedule.
            return redis.Redis.from_url(
                self.redis_url, socket_connect_timeout=2, socket_timeout=5, retry=Retry(NoBackoff(), 1)
            )

    @cached_property
    def redis_url(self) -> str:
        """REDIS_URL, or the unix socket of an embedded redis-server started for this process."""
        if self.settings.redis_url:
            return self.settings.redis_url
        self._embedded_redis = start_embedded_redis(self.settings.path("redis"))
        return self._embedded_redis.url

    @cached_property
    def http(self) -> requests.Session:
        """The session for identity and Graph calls: our own trust store, not the environment's."""
        return make_http_session(self.settings, self.ssl_context)

    @cached_property
    def ssl_context(self) -> ssl.SSLContext:
        """The same trust as ``http``, for clients that fetch with urllib (PyJWT's PyJWKClient)."""
        return make_ssl_context(self.settings)

    @cached_property
    def signing_keys(self) -> KeySets:
        """The identity platform's signing keys, cached for the process (id tokens, rich notifications)."""
        return KeySets(self.ssl_context, self.settings.http_timeout)

    @cached_property
    def id_tokens(self) -> IdTokens:
        return IdTokens(self.settings, self.http, self.signing_keys)

    @cached_property
    def mailer(self) -> Mailer:
        return Mailer.from_settings(self.settings)

    @cached_property
    def tokens(self) -> Tokens:
        return Tokens(self.settings, self.db, self.redis, self.http, self.app_tokens)

    @cached_property
    def app_tokens(self) -> AppTokens:
        """Client-credentials tokens per customer tenant (after its admin consented)."""
        return AppTokens(self.settings, self.http)

    @cached_property
    def graph_for(self) -> Callable[[str], GraphClient]:
        """A GraphClient acting as a given user."""
        return self.tokens.graph

    @cached_property
    def subscriptions(self) -> Subscriptions:
        return Subscriptions(self.settings, self.db, self.redis, self.graph_for)

    @cached_property
    def connections(self) -> Connections:
        return Connections(self.settings, self.db, self.redis, self.tokens, self.subscriptions, self.mailer)

    @cached_property
    def tenant_wide(self) -> TenantWide:
        """Tenant-wide connection: directory, enrolment, scope checker, opt-out (service.tenantwide)."""
        return TenantWide(self.settings, self.db, self.redis, self.http, self.app_tokens, self.connections,
                          self.mailer)

    def close(self) -> None:
        if self._owns_db and "db" in self.__dict__ and not self.settings.embedded_mongo:
            self.db.client.close()
        if self._owns_redis and "redis" in self.__dict__:
            self.redis.close()
        if self._embedded_redis is not None:
            self._embedded_redis.stop()
            self._embedded_redis = None


class TrustAdapter(HTTPAdapter):
    """An HTTPAdapter whose every connection verifies against one SSLContext, loaded once.

    Given a CA bundle (``verify=path``, and ``verify=True`` too: certifi's file), requests hands the path to
    urllib3, which loads and parses the whole bundle again for every new connection, before the handshake:
    about 150 certificates, measured as more than half of a sync job's time when each job opened its
    connections anew (bench P3). The context here is loaded once per process.
    Verification is always on: ``verify=False`` is not honoured.
    """

    def __init__(self, context: ssl.SSLContext, **kwargs):
        self._context = context
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)

    def cert_verify(self, conn, url: str, verify, cert) -> None:
        super().cert_verify(conn, url, True, cert)
        conn.cert_reqs = "CERT_REQUIRED"
        conn.ca_certs = conn.ca_cert_dir = None   # the context holds the trust; nothing to load per connection


def make_http_session(settings: Settings, context: ssl.SSLContext | None = None) -> requests.Session:
    """requests.Session that trusts the system CAs plus CALSYNC_CA_BUNDLE (``make_ssl_context``), through a
    ``TrustAdapter`` for https.

    ``trust_env`` is off: a REQUESTS_CA_BUNDLE in the environment would otherwise silently replace
    ``verify`` (requests issue #3829) and the emulator's certificate would be rejected.
    """
    session = requests.Session()
    session.trust_env = False
    session.headers["User-Agent"] = "calsync/0.1"
    session.mount("https://", TrustAdapter(context or make_ssl_context(settings)))
    return session


def make_ssl_context(settings: Settings) -> ssl.SSLContext:
    """What ``make_http_session`` trusts, as an SSLContext: certifi's CAs (requests' own), or the system CAs
    plus CALSYNC_CA_BUNDLE."""
    if settings.ca_bundle:
        return ssl.create_default_context(cafile=combined_ca_bundle(settings))
    return ssl.create_default_context(cafile=certifi.where())


def combined_ca_bundle(settings: Settings) -> str:
    """Write system CAs + the extra bundle into one PEM (requests takes a single file)."""
    extra = Path(settings.ca_bundle).read_text()
    system = next((Path(p).read_text() for p in SYSTEM_CA_FILES if Path(p).is_file()), "")
    if not system:
        system = Path(certifi.where()).read_text()
    target = settings.path("ca-bundle.pem")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a concurrent reader never sees half a bundle.
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".ca-bundle-")
    with os.fdopen(fd, "w") as handle:
        handle.write(system.rstrip() + "\n" + extra)
    os.replace(temporary, target)
    return str(target)


# ------------------------------------------------------------------ the process's installed Runtime
# ``rq worker -w service.workers.worker.Worker`` builds one from the environment when it starts (so a bad
# setting stops the worker at boot, not at its first job); ``calsync dev`` and the tests install theirs.
# There is no fallback: a job run where none was installed fails with a message saying how to start it.

_installed: Runtime | None = None


class NoRuntime(RuntimeError):
    """A calsync job ran in a process that did not install a Runtime."""


def install(runtime: Runtime | None) -> None:
    global _installed
    _installed = runtime


def current() -> Runtime:
    """The Runtime this process's RQ entry points use."""
    if _installed is None:
        raise NoRuntime("no calsync runtime in this process: run workers with "
                        "`rq worker -w service.workers.worker.Worker ...` (see the Procfile)")
    return _installed
