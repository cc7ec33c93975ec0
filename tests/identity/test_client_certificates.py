"""The app's certificate credential (the default in production): MSAL's client assertion (PS256, x5t#S256),
checked by the emulator's identity platform; rotation with the previous certificate still accepted; and
``calsync rotate-keys --new-client-certificate``."""

from __future__ import annotations

import jwt
from click.testing import CliRunner

from service.cli.main import cli
from service.identity.apptokens import AppTokens
from service.identity.credentials import make_certificate
from tests.support.connect import emulated_user
from tests.support.tenant_admin import grant_application_permissions


def _upload(stack, path) -> str:
    pem = path.with_suffix(".cer").read_text()
    return stack.emulator.control.request("POST", f"/identity/apps/{stack.settings.client_id}/certificates",
                                          {"pem": pem})["thumbprint"]


def test_client_credentials_with_a_certificate(stack, tmp_path):
    admin = emulated_user(stack, mail="admin@contoso.com")
    grant_application_permissions(stack, admin)
    made = make_certificate(tmp_path / "calsync.pem")
    _upload(stack, made.pem_path)
    settings = stack.settings.with_overrides(client_certificates=(str(made.pem_path),), client_secret="not-used")

    token = AppTokens(settings, stack.runtime.http).require(admin["tenant_id"], "Calendars.Read")

    assert jwt.decode(token, options={"verify_signature": False})["roles"]
    assert (made.pem_path.stat().st_mode & 0o777) == 0o600


def test_an_unknown_certificate_is_refused_and_a_rotation_falls_back_to_the_previous_one(stack, tmp_path):
    admin = emulated_user(stack, mail="admin@contoso.com")
    grant_application_permissions(stack, admin)
    old = make_certificate(tmp_path / "old.pem")
    new = make_certificate(tmp_path / "new.pem")     # not yet uploaded to the app registration
    _upload(stack, old.pem_path)

    alone = stack.settings.with_overrides(client_certificates=(str(new.pem_path),), client_secret="x")
    both = stack.settings.with_overrides(client_certificates=(str(new.pem_path), str(old.pem_path)),
                                         client_secret="x")

    assert AppTokens(alone, stack.runtime.http).roles(admin["tenant_id"]) == frozenset()
    assert "Calendars.Read" in AppTokens(both, stack.runtime.http).roles(admin["tenant_id"])


def test_rotate_keys_writes_the_next_certificate(tmp_path, monkeypatch, mongodb_uri, redis_url):
    monkeypatch.setenv("CALSYNC_DATA_DIR", str(tmp_path))
    if mongodb_uri:
        monkeypatch.setenv("MONGODB_URI", mongodb_uri)
    monkeypatch.setenv("REDIS_URL", redis_url)
    target = tmp_path / "next.pem"
    result = CliRunner().invoke(cli, ["rotate-keys", "--new-client-certificate", str(target)])
    assert result.exit_code == 0, result.output
    assert "SHA-1 thumbprint" in result.output and target.exists() and target.with_suffix(".cer").exists()
    assert "BEGIN PRIVATE KEY" in target.read_text() and "PRIVATE" not in target.with_suffix(".cer").read_text()
