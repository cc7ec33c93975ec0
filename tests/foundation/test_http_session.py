"""The HTTP session every Graph and identity call goes through: it trusts CALSYNC_CA_BUNDLE (and the system
CAs) from one SSLContext loaded once, verifies every certificate and host name, and keeps connections
alive across requests."""

from __future__ import annotations

import logging

import pytest
import requests

from emulator.app import Emulator
from emulator.server import ServerThread
from emulator.tls import make_tls_files
from service.runtime import Runtime


def test_the_session_trusts_the_configured_ca_and_reuses_its_connection(emulator, make_settings, caplog):
    rt = Runtime(make_settings(ca_bundle=emulator.ca_bundle))
    discovery = f"{emulator.base_url}/common/v2.0/.well-known/openid-configuration"
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        answers = [rt.http.get(discovery, timeout=5) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    opened = [r for r in caplog.records if r.getMessage().startswith("Starting new HTTPS connection")]
    assert len(opened) == 1          # one TLS handshake for three requests (Graph keeps connections alive)
    rt.http.close()


def test_a_certificate_from_another_ca_is_refused(emulator, make_settings, tmp_path):
    stranger = make_tls_files(tmp_path / "stranger")
    rt = Runtime(make_settings(ca_bundle=str(stranger.ca_pem)))
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        rt.http.get(f"{emulator.graph_url}/me", timeout=5)


def test_a_certificate_for_another_host_is_refused(make_settings, tmp_path):
    tls = make_tls_files(tmp_path / "localhost-only", hosts=("localhost",))
    server = ServerThread(Emulator(), tls, "127.0.0.1").start()   # serves 127.0.0.1, certified for localhost
    try:
        rt = Runtime(make_settings(ca_bundle=str(tls.ca_pem)))
        with pytest.raises(requests.exceptions.SSLError, match="match|mismatch"):
            rt.http.get(f"{server.base_url}/v1.0/me", timeout=5)
        assert rt.http.get(f"https://localhost:{server.port}/v1.0/me", timeout=5).status_code == 401
    finally:
        server.stop()


def test_verify_false_is_not_honoured(emulator, make_settings, tmp_path):
    stranger = make_tls_files(tmp_path / "stranger")
    rt = Runtime(make_settings(ca_bundle=str(stranger.ca_pem)))
    with pytest.raises(requests.exceptions.SSLError):
        rt.http.get(f"{emulator.graph_url}/me", timeout=5, verify=False)
