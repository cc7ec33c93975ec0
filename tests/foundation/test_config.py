import subprocess
import sys
from pathlib import Path

import pytest

from service.config import DEV_TOKEN_KEY, ConfigError, Settings

PROD_OK = {
    "CALSYNC_ENV": "prod",
    "MONGODB_URI": "mongodb://db.internal:27017/calsync",
    "REDIS_URL": "redis://cache.internal:6379/0",
    "CALSYNC_PUBLIC_URL": "https://calsync.example.com",
    "CALSYNC_CLIENT_ID": "11111111-2222-3333-4444-555555555555",
    "CALSYNC_CLIENT_SECRET": "a-real-client-secret-value",
    "CALSYNC_TOKEN_KEYS": "Zm9vYmFyYmF6cXV4cXV1eGZvb2JhcmJhenF1eHF1dXg=",
    "CALSYNC_SECRET_KEY": "s" * 32,
    "CALSYNC_OPS_TOKEN": "o" * 32,
    "CALSYNC_SMTP_URL": "smtp+starttls://mail.example.com:587",
}


def test_defaults_run_embedded_against_dev_values():
    settings = Settings.from_env({})

    assert settings.env == "dev"
    assert settings.embedded_mongo and settings.embedded_redis
    assert settings.notification_url == "http://127.0.0.1:8000/webhooks/graph"
    assert settings.lifecycle_url == "http://127.0.0.1:8000/webhooks/graph/lifecycle"
    assert settings.authority == "https://login.microsoftonline.com/common"


def test_prod_with_every_secret_set_is_accepted():
    settings = Settings.from_env(PROD_OK)

    assert settings.env == "prod"
    assert settings.token_keys == (PROD_OK["CALSYNC_TOKEN_KEYS"],)


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("MONGODB_URI", "MONGODB_URI: required"),
        ("REDIS_URL", "REDIS_URL: required"),
        ("CALSYNC_CLIENT_SECRET", "CALSYNC_CLIENT_SECRET: required"),
        ("CALSYNC_TOKEN_KEYS", "CALSYNC_TOKEN_KEYS: required"),
        ("CALSYNC_OPS_TOKEN", "CALSYNC_OPS_TOKEN: required"),
        ("CALSYNC_SMTP_URL", "CALSYNC_SMTP_URL: required"),
    ],
)
def test_prod_refuses_embedded_defaults_and_dev_secrets(missing, message):
    environ = {k: v for k, v in PROD_OK.items() if k != missing}

    with pytest.raises(ConfigError, match=message):
        Settings.from_env(environ)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CALSYNC_ENV", "staging", "CALSYNC_ENV: must be one of dev, prod"),
        ("REDIS_URL", "http://x", "REDIS_URL: scheme must be"),
        ("MONGODB_URI", "mongodb://host:notaport", "MONGODB_URI: not a valid URL"),
        ("CALSYNC_GRAPH_URL", "http://graph.local", "CALSYNC_GRAPH_URL: scheme must be https://"),
        ("CALSYNC_TOKEN_KEYS", "not-a-key", "CALSYNC_TOKEN_KEYS: key #1 is not a Fernet key"),
        ("CALSYNC_SUBSCRIPTION_MINUTES", "20000", "between 1 and 10080"),
        ("CALSYNC_HTTP_TIMEOUT", "soon", "must be a number"),
        ("CALSYNC_CA_BUNDLE", "/nonexistent.pem", "CALSYNC_CA_BUNDLE: file not found"),
        ("CALSYNC_DIGEST_TIME", "25:00", "CALSYNC_DIGEST_TIME: must be a local time"),
    ],
)
def test_malformed_values_name_the_variable(name, value, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({name: value})


def test_error_messages_never_contain_the_secret_value():
    secret = "this-is-secret-material"
    with pytest.raises(ConfigError) as excinfo:
        Settings.from_env({"CALSYNC_TOKEN_KEYS": secret})

    assert secret not in str(excinfo.value)


def test_secrets_stay_out_of_repr():
    settings = Settings.from_env(PROD_OK)

    text = repr(settings)
    for secret in ("a-real-client-secret-value", PROD_OK["CALSYNC_TOKEN_KEYS"], "s" * 32, "o" * 32):
        assert secret not in text
    assert DEV_TOKEN_KEY not in repr(Settings())


def test_cli_reports_bad_config_in_one_line_with_exit_code_2():
    result = subprocess.run(
        [sys.executable, "-c", "from service.cli import main; main()", "init-db"],
        env={"CALSYNC_ENV": "prod", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert result.stderr.strip() == (
        "calsync: configuration error: MONGODB_URI: required when CALSYNC_ENV=prod "
        "(the embedded store keeps nothing)"
    )
    assert "Traceback" not in result.stderr


def test_the_wsgi_entry_point_refuses_embedded_redis_with_one_line():
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        cwd=Path(__file__).resolve().parents[2],
        env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60,
    )

    assert result.returncode == 3   # gunicorn's boot error: it stops instead of restarting the worker
    assert result.stderr.strip() == (
        "calsync: configuration error: REDIS_URL: must be set to serve with gunicorn "
        "(for embedded mode run `calsync dev`)"
    )
