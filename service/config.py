"""Settings: one frozen object built from the environment, passed to the app and to worker code.

Nothing else in calsync reads ``os.environ``. Every problem is reported as one line that names the
variable and what is wrong with it, never with the secret's value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.fernet import Fernet

# Values that make the embedded emulator work out of the box. They are public, so prod refuses them.
DEV_CLIENT_ID = "5b7c1e8a-2f4d-4c6b-9a1e-7d3f8b2c6e40"
DEV_CLIENT_SECRET = "calsync-dev-client-secret"  # noqa: S105 - public dev value, refused in prod
DEV_TOKEN_KEY = "ZGV2LW9ubHktdG9rZW4ta2V5LWNhbHN5bmMtMzJieXQ="  # noqa: S105 - refused in prod
DEV_SECRET_KEY = "calsync-dev-session-key"  # noqa: S105
DEV_OPS_TOKEN = "calsync-dev-ops-token"  # noqa: S105

SMTP_SCHEMES = ("smtp", "smtps", "smtp+starttls")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message is safe to print (no secret values)."""


@dataclass(frozen=True)
class Settings:
    env: str = "dev"
    mongodb_uri: str | None = field(default=None, repr=False)  # may carry a password
    mongodb_db: str = "calsync"
    redis_url: str | None = field(default=None, repr=False)
    public_url: str = "http://127.0.0.1:8000"
    client_id: str = DEV_CLIENT_ID
    client_secret: str = field(default=DEV_CLIENT_SECRET, repr=False)
    # Certificate credentials (PEM files holding a private key and its certificate), newest first: the default in
    # production; the client secret is used only when none is configured. Rotation keeps the old one after the new.
    client_certificates: tuple[str, ...] = ()
    tenant: str = "common"
    authority_host: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com/v1.0"
    ca_bundle: str | None = None
    token_keys: tuple[str, ...] = field(default=(DEV_TOKEN_KEY,), repr=False)
    secret_key: str = field(default=DEV_SECRET_KEY, repr=False)
    smtp_url: str | None = field(default=None, repr=False)
    mail_from: str = "calsync <calsync@localhost>"
    ops_token: str = field(default=DEV_OPS_TOKEN, repr=False)
    data_dir: str = "var"
    # Tunables with sensible defaults; each one has an environment variable too.
    http_timeout: float = 10.0
    max_notification_bytes: int = 1_000_000
    subscription_minutes: int = 10_000  # Graph's cap for events is 10,080; stay under it
    subscription_writes_per_20_s: int = 1_000   # Graph's subscription writes per app and tenant (subscriptions/pacing)
    rich_subscription_minutes: int = 1_380  # cap with resource data is 1,440
    renew_margin_minutes: int = 1_440
    sync_days_back: int = 7
    sync_days_ahead: int = 35
    reconcile_hours: int = 6
    retention_days: int = 90            # events that ended longer ago are purged daily
    rich_notifications: bool = False
    rich_cert_path: str | None = None
    rich_key_path: str | None = None
    digest_default_time: str = "06:30"
    log_format: str = "text"            # or "json": one JSON object a line (the default in prod)
    log_level: str = "INFO"
    proxy_hops: int = 0                 # proxies in front whose X-Forwarded-For/-Proto are believed
    outbound_timeout: float = 10.0      # outbound webhooks: a 2xx within this is a delivery
    outbound_allow_private: bool = False  # let webhook endpoints resolve to loopback/private addresses
    # Teams and Slack delivery (service/channels). The bot's app id is the Entra app's client id by default.
    teams_app_id: str = "8b3f4a1e-5c7d-4e2f-9a6b-0c1d2e3f4a5b"   # the app's id in the Teams app catalog
    bot_app_id: str | None = None
    bot_tenant: str | None = None       # a single-tenant bot's home tenant (None: the user's tenant)
    teams_service_url: str = "https://smba.trafficmanager.net/teams/"
    botframework_scope: str = "https://api.botframework.com/.default"
    botframework_jwks_url: str = "https://login.botframework.com/v1/.well-known/keys"
    slack_api_url: str = "https://slack.com/api/"
    slack_authorize_url: str = "https://slack.com/oauth/v2/authorize"
    slack_client_id: str | None = None
    slack_client_secret: str | None = field(default=None, repr=False)
    slack_signing_secret: str | None = field(default=None, repr=False)
    outlook_working_hours: bool = False   # ask for MailboxSettings.Read and read Outlook's working hours

    @property
    def embedded_mongo(self) -> bool:
        return self.mongodb_uri is None

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None

    @property
    def authority(self) -> str:
        return f"{self.authority_host.rstrip('/')}/{self.tenant}"

    @property
    def bot_id(self) -> str:
        """The bot's Microsoft App ID (the audience of the Bot Connector's tokens to us)."""
        return self.bot_app_id or self.client_id

    @property
    def notification_url(self) -> str:
        return f"{self.public_url.rstrip('/')}/webhooks/graph"

    @property
    def lifecycle_url(self) -> str:
        return f"{self.public_url.rstrip('/')}/webhooks/graph/lifecycle"

    def path(self, *parts: str) -> Path:
        """A path under the data directory (embedded Redis, mail sink, certificates)."""
        return Path(self.data_dir, *parts)

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``); raise ConfigError on the first problem."""
        env = _Reader(os.environ if environ is None else environ)
        settings = cls(
            env=env.choice("CALSYNC_ENV", ("dev", "prod"), "dev"),
            mongodb_uri=env.url("MONGODB_URI", ("mongodb", "mongodb+srv")),
            mongodb_db=env.text("CALSYNC_MONGODB_DB", "calsync"),
            redis_url=env.url("REDIS_URL", ("redis", "rediss", "unix")),
            public_url=env.url("CALSYNC_PUBLIC_URL", ("http", "https")) or cls.public_url,
            client_id=env.text("CALSYNC_CLIENT_ID", DEV_CLIENT_ID),
            client_secret=env.text("CALSYNC_CLIENT_SECRET", DEV_CLIENT_SECRET),
            client_certificates=tuple(p.strip() for p in env.text("CALSYNC_CLIENT_CERTIFICATES", "").split(",")
                                      if p.strip()),
            tenant=env.text("CALSYNC_TENANT", "common"),
            authority_host=env.url("CALSYNC_AUTHORITY_HOST", ("https",)) or cls.authority_host,
            graph_url=env.url("CALSYNC_GRAPH_URL", ("https",)) or cls.graph_url,
            ca_bundle=env.file("CALSYNC_CA_BUNDLE"),
            token_keys=env.fernet_keys("CALSYNC_TOKEN_KEYS") or (DEV_TOKEN_KEY,),
            secret_key=env.text("CALSYNC_SECRET_KEY", DEV_SECRET_KEY),
            smtp_url=env.url("CALSYNC_SMTP_URL", SMTP_SCHEMES),
            mail_from=env.text("CALSYNC_MAIL_FROM", cls.mail_from),
            ops_token=env.text("CALSYNC_OPS_TOKEN", DEV_OPS_TOKEN),
            data_dir=env.text("CALSYNC_DATA_DIR", "var"),
            http_timeout=env.number("CALSYNC_HTTP_TIMEOUT", 10.0, float),
            max_notification_bytes=env.number("CALSYNC_MAX_NOTIFICATION_BYTES", 1_000_000, int),
            subscription_minutes=env.number("CALSYNC_SUBSCRIPTION_MINUTES", 10_000, int, high=10_080),
            subscription_writes_per_20_s=env.number("CALSYNC_SUBSCRIPTION_WRITES_PER_20_S", 1_000, int, low=2),
            rich_subscription_minutes=env.number("CALSYNC_RICH_SUBSCRIPTION_MINUTES", 1_380, int, high=1_440),
            renew_margin_minutes=env.number("CALSYNC_RENEW_MARGIN_MINUTES", 1_440, int),
            sync_days_back=env.number("CALSYNC_SYNC_DAYS_BACK", 7, int, low=0),
            sync_days_ahead=env.number("CALSYNC_SYNC_DAYS_AHEAD", 35, int),
            reconcile_hours=env.number("CALSYNC_RECONCILE_HOURS", 6, int),
            retention_days=env.number("CALSYNC_RETENTION_DAYS", 90, int),
            rich_notifications=env.flag("CALSYNC_RICH_NOTIFICATIONS"),
            rich_cert_path=env.text("CALSYNC_RICH_CERT", None),
            rich_key_path=env.text("CALSYNC_RICH_KEY", None),
            digest_default_time=env.clock("CALSYNC_DIGEST_TIME", "06:30"),
            log_format=env.choice("CALSYNC_LOG_FORMAT", LOG_FORMATS,
                                  "json" if env.raw("CALSYNC_ENV") == "prod" else "text"),
            log_level=env.choice("CALSYNC_LOG_LEVEL", LOG_LEVELS, "INFO", upper=True),
            proxy_hops=env.number("CALSYNC_PROXY_HOPS", 0, int, low=0, high=5),
            outbound_timeout=env.number("CALSYNC_OUTBOUND_TIMEOUT", 10.0, float, high=60),
            outbound_allow_private=env.flag("CALSYNC_OUTBOUND_ALLOW_PRIVATE"),
            teams_app_id=env.text("CALSYNC_TEAMS_APP_ID", cls.teams_app_id),
            bot_app_id=env.text("CALSYNC_BOT_APP_ID", None),
            bot_tenant=env.text("CALSYNC_BOT_TENANT", None),
            teams_service_url=env.url("CALSYNC_TEAMS_SERVICE_URL", ("https",)) or cls.teams_service_url,
            botframework_jwks_url=env.url("CALSYNC_BOTFRAMEWORK_JWKS_URL", ("https",)) or cls.botframework_jwks_url,
            slack_api_url=env.url("CALSYNC_SLACK_API_URL", ("https",)) or cls.slack_api_url,
            slack_authorize_url=env.url("CALSYNC_SLACK_AUTHORIZE_URL", ("https",)) or cls.slack_authorize_url,
            slack_client_id=env.text("CALSYNC_SLACK_CLIENT_ID", None),
            slack_client_secret=env.text("CALSYNC_SLACK_CLIENT_SECRET", None),
            slack_signing_secret=env.text("CALSYNC_SLACK_SIGNING_SECRET", None),
            outlook_working_hours=env.flag("CALSYNC_OUTLOOK_WORKING_HOURS"),
        )
        if settings.retention_days <= settings.sync_days_back:
            raise ConfigError("CALSYNC_RETENTION_DAYS: must be more than CALSYNC_SYNC_DAYS_BACK (the sync would "
                              "store again what retention removes)")
        if settings.env == "prod":
            _check_prod(settings)
        return settings


def _check_prod(s: Settings) -> None:
    """Production refuses embedded stores and the public dev secrets."""
    if s.mongodb_uri is None:
        raise ConfigError("MONGODB_URI: required when CALSYNC_ENV=prod (the embedded store keeps nothing)")
    if s.redis_url is None:
        raise ConfigError("REDIS_URL: required when CALSYNC_ENV=prod (embedded Redis is for dev only)")
    dev_values = {
        "CALSYNC_CLIENT_ID": (s.client_id, DEV_CLIENT_ID),
        "CALSYNC_CLIENT_SECRET": (s.client_secret if not s.client_certificates else "", DEV_CLIENT_SECRET),
        "CALSYNC_SECRET_KEY": (s.secret_key, DEV_SECRET_KEY),
        "CALSYNC_OPS_TOKEN": (s.ops_token, DEV_OPS_TOKEN),
        "CALSYNC_TOKEN_KEYS": (s.token_keys[0], DEV_TOKEN_KEY),
    }
    for name, (value, dev_value) in dev_values.items():
        if value == dev_value:
            raise ConfigError(f"{name}: required when CALSYNC_ENV=prod (the dev value is public)")
    if DEV_TOKEN_KEY in s.token_keys[1:]:
        raise ConfigError("CALSYNC_TOKEN_KEYS: the public dev key must not be used when CALSYNC_ENV=prod")
    if s.smtp_url is None:
        raise ConfigError("CALSYNC_SMTP_URL: required when CALSYNC_ENV=prod (dev writes .eml files)")
    if not s.public_url.startswith("https://"):
        raise ConfigError("CALSYNC_PUBLIC_URL: must be https when CALSYNC_ENV=prod (Graph only calls https)")
    for name, value in (("CALSYNC_SECRET_KEY", s.secret_key), ("CALSYNC_OPS_TOKEN", s.ops_token)):
        if len(value) < 24:
            raise ConfigError(f"{name}: too short for production (use at least 24 random characters)")


class _Reader:
    """Reads and validates raw environment strings; errors name the variable, never the value."""

    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ

    def raw(self, name: str) -> str | None:
        value = self.environ.get(name)
        return value.strip() if value is not None and value.strip() else None

    def text(self, name: str, default: str | None) -> str | None:
        value = self.raw(name)
        return default if value is None else value

    def choice(self, name: str, allowed: tuple[str, ...], default: str, upper: bool = False) -> str:
        value = self.raw(name) or default
        value = value.upper() if upper else value
        if value not in allowed:
            raise ConfigError(f"{name}: must be one of {', '.join(allowed)}")
        return value

    def flag(self, name: str) -> bool:
        value = (self.raw(name) or "0").lower()
        if value not in ("0", "1", "true", "false", "yes", "no"):
            raise ConfigError(f"{name}: must be 1 or 0")
        return value in ("1", "true", "yes")

    def url(self, name: str, schemes: tuple[str, ...]) -> str | None:
        value = self.raw(name)
        if value is None:
            return None
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            raise ConfigError(f"{name}: not a valid URL") from None
        if parts.scheme not in schemes:
            raise ConfigError(f"{name}: scheme must be {' or '.join(s + '://' for s in schemes)}")
        if parts.scheme != "unix" and not parts.hostname:
            raise ConfigError(f"{name}: URL has no host")
        return value.rstrip("/") if parts.scheme in ("http", "https") else value

    def file(self, name: str) -> str | None:
        value = self.raw(name)
        if value is not None and not Path(value).is_file():
            raise ConfigError(f"{name}: file not found")
        return value

    def number(self, name, default, kind, low=1, high=None):
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = kind(value)
        except ValueError:
            raise ConfigError(f"{name}: must be a {'whole ' if kind is int else ''}number") from None
        if number < low or (high is not None and number > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ConfigError(f"{name}: must be {bound}")
        return number

    def clock(self, name: str, default: str) -> str:
        value = self.raw(name) or default
        hours, _, minutes = value.partition(":")
        if not (hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60):
            raise ConfigError(f"{name}: must be a local time like 06:30")
        return f"{int(hours):02d}:{int(minutes):02d}"

    def fernet_keys(self, name: str) -> tuple[str, ...] | None:
        value = self.raw(name)
        if value is None:
            return None
        keys = tuple(k.strip() for k in value.split(",") if k.strip())
        for position, key in enumerate(keys, start=1):
            try:
                Fernet(key)
            except (ValueError, TypeError):
                raise ConfigError(
                    f"{name}: key #{position} is not a Fernet key (32 url-safe base64-encoded bytes)"
                ) from None
        return keys or None


SECRET_FIELDS = tuple(f.name for f in fields(Settings) if not f.repr)
