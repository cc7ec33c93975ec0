"""The emulated identity platform, driven over real HTTPS by MSAL's unmodified ConfidentialClientApplication."""

from __future__ import annotations

import datetime as dt
import json
import re
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import jwt
import msal
import pytest
import requests
from flask import Flask
from werkzeug.serving import make_server

from emulator.identity import AppRegistry, Identity, InvalidToken, redirect_uri_matches
from emulator.identity_web import control_blueprint, identity_blueprint
from emulator.tls import make_tls_files
from service.config import DEV_CLIENT_ID, DEV_CLIENT_SECRET

TENANT = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
OTHER_TENANT = "7f6e5d4c-3b2a-4190-8f7e-6d5c4b3a2910"
ALICE = {"id": "11111111-1111-4111-8111-111111111111", "tenant_id": TENANT, "display_name": "Alice Adams",
         "mail": "alice@contoso.test", "user_principal_name": "alice@contoso.test"}
BOB = {"id": "22222222-2222-4222-8222-222222222222", "tenant_id": TENANT, "display_name": "Bob Brown",
       "mail": "bob@contoso.test", "user_principal_name": "bob@contoso.test"}
CAROL = {"id": "33333333-3333-4333-8333-333333333333", "tenant_id": OTHER_TENANT, "display_name": "Carol Cho",
         "mail": "carol@fabrikam.test", "user_principal_name": "carol@fabrikam.test"}
REDIRECT = "http://localhost:8000/auth/callback"
CONSENT_REDIRECT = "http://localhost:8000/admin/consent/callback"
SCOPES = ["Calendars.Read", "User.Read"]


class Directory:
    """The smallest directory the identity platform needs."""

    def __init__(self, users: list[dict]):
        self._users = {u["id"]: u for u in users}

    def get_user(self, user_id: str) -> dict | None:
        return self._users.get(user_id)

    def find_user(self, login: str) -> dict | None:
        login = login.lower()
        return next((u for u in self._users.values()
                     if login in (u["mail"].lower(), u["user_principal_name"].lower())), None)

    def users(self) -> list[dict]:
        return list(self._users.values())


class TestClock:
    __test__ = False

    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += dt.timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> tuple[str, ssl.SSLContext]:
    """A throwaway CA and a 127.0.0.1 server certificate."""
    files = make_tls_files(tmp_path_factory.mktemp("tls"), hosts=("127.0.0.1",))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert_pem, files.key_pem)
    return str(files.ca_pem), context


@dataclass
class Server:
    base: str
    identity: Identity
    clock: TestClock
    ca: str
    http: requests.Session
    sessions: list[requests.Session]

    def session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify otherwise
        session.verify = self.ca
        self.sessions.append(session)
        return session

    def msal(self, tenant: str = "common", secret: str = DEV_CLIENT_SECRET,
             cache: msal.TokenCache | None = None) -> msal.ConfidentialClientApplication:
        return msal.ConfidentialClientApplication(
            DEV_CLIENT_ID, client_credential=secret, authority=f"{self.base}/{tenant}",
            validate_authority=False, instance_discovery=False, http_client=self.session(), token_cache=cache)

    def control(self, path: str, body: dict) -> requests.Response:
        return self.http.post(f"{self.base}/_emulator/identity{path}", json=body, timeout=10)

    def sign_in(self, url: str, user: dict = ALICE, action: str = "accept") -> dict:
        response = self.control("/sign-in", {"url": url, "user_id": user["id"], "action": action})
        assert response.status_code == 200, response.text
        return response.json()

    def token(self, tenant: str = "common", **form: str) -> requests.Response:
        form.setdefault("client_id", DEV_CLIENT_ID)
        form.setdefault("client_secret", DEV_CLIENT_SECRET)
        return self.http.post(f"{self.base}/{tenant}/oauth2/v2.0/token", data=form, timeout=10)


@pytest.fixture
def server(tls) -> Iterator[Server]:
    ca, context = tls
    clock = TestClock()
    identity = Identity(clock, Directory([ALICE, BOB, CAROL]), AppRegistry.default())
    app = Flask(__name__)
    app.register_blueprint(identity_blueprint(identity))
    app.register_blueprint(control_blueprint(identity), url_prefix="/_emulator/identity")
    httpd = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=context)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv = Server(f"https://127.0.0.1:{httpd.server_port}", identity, clock, ca, None, [])  # type: ignore[arg-type]
    srv.http = srv.session()
    yield srv
    for session in srv.sessions:
        session.close()
    httpd.shutdown()
    thread.join(5)
    httpd.server_close()


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def signed_in(srv: Server, app: msal.ConfidentialClientApplication, user: dict = ALICE) -> dict:
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT, response_mode="form_post")
    result = app.acquire_token_by_auth_code_flow(flow, srv.sign_in(flow["auth_uri"], user)["params"])
    assert "access_token" in result, result
    return result


def refresh_tokens(cache: msal.SerializableTokenCache) -> list[str]:
    return [rt["secret"] for rt in json.loads(cache.serialize()).get("RefreshToken", {}).values()]


def assert_identity_error(response: requests.Response, status: int, error: str, code: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "error_description", "error_codes", "timestamp", "trace_id",
                         "correlation_id"}
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert "Traceback" not in response.text
    return body


# ----- discovery and keys -----------------------------------------------------------------------


def test_discovery_documents_point_back_at_the_emulator(server):
    doc = server.http.get(f"{server.base}/{TENANT}/v2.0/.well-known/openid-configuration", timeout=10).json()
    assert doc["issuer"] == f"{server.base}/{TENANT}/v2.0"
    assert doc["authorization_endpoint"] == f"{server.base}/{TENANT}/oauth2/v2.0/authorize"
    assert doc["token_endpoint"] == f"{server.base}/{TENANT}/oauth2/v2.0/token"
    assert doc["jwks_uri"] == f"{server.base}/{TENANT}/discovery/v2.0/keys"
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    common = server.http.get(f"{server.base}/common/v2.0/.well-known/openid-configuration", timeout=10).json()
    assert common["issuer"] == f"{server.base}/{{tenantid}}/v2.0"
    v1 = server.http.get(f"{server.base}/{TENANT}/.well-known/openid-configuration", timeout=10).json()
    assert v1["issuer"] == f"https://sts.windows.net/{TENANT}/"
    keys = server.http.get(f"{server.base}/common/discovery/keys", timeout=10).json()["keys"]
    assert keys == server.http.get(doc["jwks_uri"], timeout=10).json()["keys"]
    assert {"kty", "use", "kid", "n", "e", "x5c"} <= set(keys[0])
    upper = server.http.get(f"{server.base}/{TENANT.upper()}/v2.0/.well-known/openid-configuration", timeout=10)
    assert upper.json()["issuer"] == doc["issuer"]
    unknown = server.http.get(f"{server.base}/not-a-tenant/v2.0/.well-known/openid-configuration", timeout=10)
    assert_identity_error(unknown, 400, "invalid_tenant", 90002)


# ----- the auth code flow with MSAL -------------------------------------------------------------


def test_msal_sign_in_refresh_rotation_and_revocation(server):
    assert server.control("/lifetimes", {"access_token_seconds": 60}).json()["access_token_seconds"] == 60
    cache = msal.SerializableTokenCache()
    app = server.msal(cache=cache)
    result = signed_in(server, app)

    claims = result["id_token_claims"]
    assert (claims["tid"], claims["oid"], claims["preferred_username"]) == (TENANT, ALICE["id"], ALICE["mail"])
    assert result["expires_in"] == 60 and result["token_type"] == "Bearer"
    access = server.identity.verify_access_token(result["access_token"])
    assert access["aud"] == "https://graph.microsoft.com"
    assert access["iss"] == f"https://sts.windows.net/{TENANT}/"
    assert set(access["scp"].split()) >= {"Calendars.Read", "User.Read"}
    assert "offline_access" not in access["scp"].split()
    assert (access["tid"], access["oid"], access["appid"]) == (TENANT, ALICE["id"], DEV_CLIENT_ID)
    [account] = app.get_accounts()
    assert account["home_account_id"] == f"{ALICE['id']}.{TENANT}"
    assert account["username"] == ALICE["mail"]

    # A 60 s access token is already "expired" for MSAL (< 5 min left), so silent refreshes and rotates.
    [first_rt] = refresh_tokens(cache)
    again = app.acquire_token_silent(SCOPES, account=account)
    assert again and again["token_source"] == "identity_provider"
    assert again["access_token"] != result["access_token"]
    [second_rt] = refresh_tokens(cache)
    assert second_rt != first_rt
    replay = server.token(grant_type="refresh_token", refresh_token=first_rt, scope="Calendars.Read openid")
    assert_identity_error(replay, 400, "invalid_grant", 70000)

    # The emulator clock decides expiry for verify_access_token.
    server.clock.advance(61)
    with pytest.raises(InvalidToken, match="expired"):
        server.identity.verify_access_token(again["access_token"])

    assert server.control("/revoke", {"user_id": ALICE["id"]}).json() == {"revoked": 1}
    failed = app.acquire_token_silent_with_error(SCOPES, account=account)
    assert failed["error"] == "invalid_grant"
    assert 50173 in failed["error_codes"]


def test_id_token_verifies_against_the_served_jwks(server):
    result = signed_in(server, server.msal(tenant=TENANT))
    keys = jwt.PyJWKSet.from_dict(
        server.http.get(f"{server.base}/{TENANT}/discovery/v2.0/keys", timeout=10).json())
    kid = jwt.get_unverified_header(result["id_token"])["kid"]
    key = next(k for k in keys.keys if k.key_id == kid)
    claims = jwt.decode(result["id_token"], key.key, algorithms=["RS256"], audience=DEV_CLIENT_ID,
                        issuer=f"{server.base}/{TENANT}/v2.0")
    assert claims["nonce"] == result["id_token_claims"]["nonce"]
    assert (claims["oid"], claims["name"]) == (ALICE["id"], ALICE["display_name"])


def test_sign_in_page_and_form_post_work_over_plain_http(server):
    app = server.msal()
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT, login_hint=BOB["mail"],
                                       response_mode="form_post")
    page = server.http.get(flow["auth_uri"], timeout=10)
    assert page.status_code == 200 and "Bob Brown" in page.text and "Calendars.Read" in page.text
    assert re.search(rf'value="{BOB["id"]}"\s+checked', page.text)
    ctx = re.search(r'name="ctx" value="([^"]+)"', page.text).group(1)
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
    posted = server.http.post(server.base + action, data={"ctx": ctx, "user_id": BOB["id"], "action": "accept"},
                              allow_redirects=False, timeout=10)
    assert posted.status_code == 200
    assert re.search(rf'action="{re.escape(REDIRECT)}"', posted.text)
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', posted.text))
    assert fields["state"] == flow["state"]
    result = app.acquire_token_by_auth_code_flow(flow, fields)
    assert result["id_token_claims"]["oid"] == BOB["id"]
    stale = server.http.post(server.base + action, data={"ctx": ctx, "user_id": BOB["id"], "action": "accept"},
                             timeout=10)
    assert stale.status_code == 400 and "expired or was already completed" in stale.text


@pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended:UserWarning")
def test_query_mode_redirect_and_cancel(server):
    app = server.msal()
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT, state="s-123")
    page = server.http.get(flow["auth_uri"], timeout=10)
    ctx = re.search(r'name="ctx" value="([^"]+)"', page.text).group(1)
    posted = server.http.post(f"{server.base}/common/login", data={"ctx": ctx, "action": "cancel"},
                              allow_redirects=False, timeout=10)
    assert posted.status_code == 302 and posted.headers["Location"].startswith(REDIRECT + "?")
    params = query(posted.headers["Location"])
    assert (params["error"], params["state"]) == ("access_denied", "s-123")
    assert params["error_description"].startswith("AADSTS65004")
    result = app.acquire_token_by_auth_code_flow(flow, params)
    assert result["error"] == "access_denied"


def test_denied_consent_and_cross_tenant_sign_in(server):
    app = server.msal(tenant=TENANT)
    assert server.control("/deny-consent", {"user_id": ALICE["mail"], "error": "consent_required"}).ok
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT, response_mode="form_post")
    assert server.sign_in(flow["auth_uri"])["params"]["error"] == "consent_required"
    server.control("/deny-consent", {"user_id": ALICE["id"], "error": "access_denied"})
    assert server.sign_in(flow["auth_uri"])["params"]["error"] == "access_denied"
    server.control("/deny-consent", {"user_id": ALICE["id"], "error": None})
    assert "code" in server.sign_in(flow["auth_uri"])["params"]
    # Carol lives in another tenant, so the tenant-specific authority refuses her.
    foreign = server.sign_in(flow["auth_uri"], CAROL)["params"]
    assert foreign["error_description"].startswith("AADSTS50020")


# ----- token endpoint failures --------------------------------------------------------------------


def test_pkce_mismatch_redirect_mismatch_and_replayed_code(server):
    app = server.msal()
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT, response_mode="form_post")
    params = server.sign_in(flow["auth_uri"])["params"]
    bad_pkce = app.acquire_token_by_auth_code_flow(dict(flow, code_verifier="x" * 43), params)
    assert bad_pkce["error"] == "invalid_grant" and bad_pkce["error_codes"] == [501481]
    bad_redirect = app.acquire_token_by_auth_code_flow(
        dict(flow, redirect_uri="http://127.0.0.1:8000/auth/callback"), params)
    assert bad_redirect["error"] == "invalid_grant" and bad_redirect["error_codes"] == [500112]
    assert "access_token" in app.acquire_token_by_auth_code_flow(flow, params)
    replay = server.token(grant_type="authorization_code", code=params["code"], redirect_uri=REDIRECT,
                          code_verifier=flow["code_verifier"], scope="Calendars.Read")
    assert_identity_error(replay, 400, "invalid_grant", 54005)


def test_wrong_secret_and_expired_code(server):
    app = server.msal()
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT, response_mode="form_post")
    params = server.sign_in(flow["auth_uri"])["params"]
    wrong = server.msal(secret="not-the-secret").acquire_token_by_auth_code_flow(flow, params)
    assert wrong["error"] == "invalid_client" and wrong["error_codes"] == [7000215]
    raw = server.token(grant_type="authorization_code", code=params["code"], redirect_uri=REDIRECT,
                       client_secret="not-the-secret")
    assert_identity_error(raw, 401, "invalid_client", 7000215)
    server.clock.advance(11 * 60)
    expired = app.acquire_token_by_auth_code_flow(flow, params)
    assert expired["error"] == "invalid_grant" and expired["error_codes"] == [70008]


def test_refresh_token_expires_on_the_emulator_clock(server):
    server.control("/lifetimes", {"refresh_token_seconds": 120})
    cache = msal.SerializableTokenCache()
    app = server.msal(cache=cache)
    signed_in(server, app)
    server.clock.advance(121)
    [rt] = refresh_tokens(cache)
    expired = server.token(grant_type="refresh_token", refresh_token=rt, scope="Calendars.Read openid")
    assert_identity_error(expired, 400, "invalid_grant", 700082)


def test_bad_token_requests_get_identity_shaped_errors(server):
    assert_identity_error(server.token(), 400, "invalid_request", 900144)
    assert_identity_error(server.token(grant_type="password"), 400, "unsupported_grant_type", 70003)
    assert_identity_error(server.token(grant_type="refresh_token", refresh_token="junk", scope="openid"),
                          400, "invalid_grant", 9002313)
    unknown = server.token(grant_type="client_credentials", client_id="nobody", tenant=TENANT,
                           scope="https://graph.microsoft.com/.default")
    assert_identity_error(unknown, 400, "unauthorized_client", 700016)
    no_secret = server.http.post(f"{server.base}/{TENANT}/oauth2/v2.0/token", timeout=10,
                                 data={"client_id": DEV_CLIENT_ID, "grant_type": "client_credentials"})
    assert_identity_error(no_secret, 401, "invalid_client", 7000218)
    garbage = server.http.post(f"{server.base}/common/oauth2/v2.0/token", data=b"\xff\xfe%%%",
                               headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=10)
    assert garbage.status_code in (400, 401) and "Traceback" not in garbage.text
    assert garbage.json()["error"]


# ----- authorize failures ---------------------------------------------------------------------------


def test_untrusted_authorize_requests_show_a_page_instead_of_redirecting(server):
    base = f"{server.base}/common/oauth2/v2.0/authorize"
    unknown = server.http.get(base, params={"client_id": "nobody", "redirect_uri": REDIRECT,
                                            "response_type": "code", "scope": "openid"},
                              allow_redirects=False, timeout=10)
    assert unknown.status_code == 400 and "AADSTS700016" in unknown.text
    evil = server.http.get(base, params={"client_id": DEV_CLIENT_ID, "redirect_uri": "https://evil.test/cb",
                                         "response_type": "code", "scope": "openid"},
                           allow_redirects=False, timeout=10)
    assert evil.status_code == 400 and "AADSTS50011" in evil.text and "<script" not in evil.text
    bad_type = server.http.get(base, params={"client_id": DEV_CLIENT_ID, "redirect_uri": REDIRECT,
                                             "response_type": "token", "scope": "openid", "state": "z"},
                               allow_redirects=False, timeout=10)
    assert bad_type.status_code == 302
    assert query(bad_type.headers["Location"])["error"] == "unsupported_response_type"
    control = server.control("/sign-in", {"url": f"{base}?client_id=nobody&redirect_uri={REDIRECT}",
                                          "user_id": ALICE["id"]})
    assert control.status_code == 400 and control.json()["error"]["code"] == "unauthorized_client"


def test_redirect_uris_match_exactly_except_loopback_ports():
    assert redirect_uri_matches("http://localhost:8000/auth/callback", "http://localhost:53121/auth/callback")
    assert redirect_uri_matches("http://127.0.0.1/cb", "http://127.0.0.1:9/cb")
    assert not redirect_uri_matches("http://localhost:8000/auth/callback", "http://127.0.0.1:8000/auth/callback")
    assert not redirect_uri_matches("http://localhost:8000/auth/callback", "http://localhost:8000/auth/other")
    assert not redirect_uri_matches("https://app.test/cb", "https://app.test:444/cb")
    assert not redirect_uri_matches("http://localhost:8000/cb", "http://localhost:bad/cb")


# ----- app-only access and admin consent ---------------------------------------------------------


def test_admin_consent_then_client_credentials_carry_roles(server):
    app = server.msal(tenant=TENANT)
    before = app.acquire_token_for_client(["https://graph.microsoft.com/.default"])
    assert "roles" not in server.identity.verify_access_token(before["access_token"])

    url = f"{server.base}/common/adminconsent?client_id={DEV_CLIENT_ID}&redirect_uri={CONSENT_REDIRECT}&state=42"
    consent = server.sign_in(url, BOB)
    assert consent["params"] == {"admin_consent": "True", "tenant": TENANT, "state": "42"}
    assert consent["redirect_url"].startswith(CONSENT_REDIRECT + "?admin_consent=True")

    raw = server.token(tenant=TENANT, grant_type="client_credentials",
                       scope="https://graph.microsoft.com/.default")
    body = raw.json()
    assert set(body) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
    claims = server.identity.verify_access_token(body["access_token"])
    assert claims["roles"] == ["Calendars.Read", "GroupMember.Read.All", "User.Read.All"]
    assert claims["idtyp"] == "app" and "scp" not in claims
    assert claims["tid"] == TENANT and claims["appid"] == DEV_CLIENT_ID
    fresh = server.msal(tenant=TENANT).acquire_token_for_client(["https://graph.microsoft.com/.default"])
    assert server.identity.verify_access_token(fresh["access_token"])["roles"] == claims["roles"]

    common = server.token(tenant="common", grant_type="client_credentials",
                          scope="https://graph.microsoft.com/.default")
    assert_identity_error(common, 400, "invalid_request", 7000112)
    delegated = server.token(tenant=TENANT, grant_type="client_credentials", scope="Calendars.Read")
    assert_identity_error(delegated, 400, "invalid_scope", 1002012)


def test_v2_admin_consent_success_cancel_and_common(server):
    scope = "https://graph.microsoft.com/Calendars.Read"
    url = (f"{server.base}/organizations/v2.0/adminconsent?client_id={DEV_CLIENT_ID}&scope={scope}"
           f"&redirect_uri={CONSENT_REDIRECT}&state=abc")
    ok = server.sign_in(url, CAROL)["params"]
    assert ok == {"admin_consent": "True", "tenant": OTHER_TENANT, "scope": scope, "state": "abc"}
    consents = server.http.get(f"{server.base}/_emulator/identity/consents",
                               params={"tenant": OTHER_TENANT, "client_id": DEV_CLIENT_ID}, timeout=10).json()
    assert consents["consent"] == {"roles": [], "scopes": ["Calendars.Read"]}

    cancelled = server.sign_in(url, CAROL, action="cancel")["params"]
    assert (cancelled["admin_consent"], cancelled["error"], cancelled["state"]) == ("True", "consent_required",
                                                                                    "abc")
    assert cancelled["error_description"].startswith("AADSTS65004")

    common = server.sign_in(url.replace("/organizations/", "/common/"), CAROL)["params"]
    assert common["error"] == "invalid_request" and common["error_description"].startswith("AADSTS90130")


# ----- tokens and controls ---------------------------------------------------------------------------


def test_verify_access_token_refuses_forgeries(server):
    identity = server.identity
    now = int(server.clock().timestamp())
    good = {"aud": "https://graph.microsoft.com", "iss": f"https://sts.windows.net/{TENANT}/", "tid": TENANT,
            "iat": now, "nbf": now, "exp": now + 600}
    assert identity.verify_access_token(identity.sign(good))["tid"] == TENANT
    head, body, signature = identity.sign(good).split(".")
    tampered = f"{head}.{jwt.utils.base64url_encode(json.dumps(dict(good, tid='x')).encode()).decode()}.{signature}"
    for token, reason in [(tampered, "bad signature"), ("not-a-jwt", "malformed"),
                          (identity.sign(dict(good, aud=DEV_CLIENT_ID)), "wrong audience"),
                          (identity.sign(dict(good, exp=now - 1)), "expired"),
                          (jwt.encode(good, "secret-key-long-enough-for-hs256-32b", algorithm="HS256"),
                           "unsupported algorithm")]:
        with pytest.raises(InvalidToken, match=reason):
            identity.verify_access_token(token)
    old = identity.sign(good)
    kid = identity.rotate_signing_key()
    assert jwt.get_unverified_header(identity.sign(good))["kid"] == kid
    assert identity.verify_access_token(old)["tid"] == TENANT  # the previous key is still served


def test_control_api_validates_input_with_graph_shaped_errors(server):
    for path, body in [("/lifetimes", {"access_token_seconds": -5}), ("/lifetimes", {"access_token_seconds": "x"}),
                       ("/revoke", {}), ("/deny-consent", {"user_id": ALICE["id"], "error": "nope"}),
                       ("/sign-in", {"url": "https://x.test/nowhere", "user_id": ALICE["id"]}),
                       ("/apps", {"client_id": "c", "client_secret": "s", "redirect_uris": "not-a-list"})]:
        response = server.control(path, body)
        assert response.status_code == 400, (path, response.text)
        assert set(response.json()["error"]) == {"code", "message", "innerError"}
    not_json = server.http.post(f"{server.base}/_emulator/identity/revoke", data="{", timeout=10)
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "BadRequest"
    missing = server.control("/revoke", {"user_id": "nobody@nowhere.test"})
    assert missing.status_code == 404
    url = f"{server.base}/common/adminconsent?client_id={DEV_CLIENT_ID}&redirect_uri={CONSENT_REDIRECT}"
    assert server.control("/sign-in", {"url": url, "user_id": "ghost@nowhere.test"}).status_code == 404


def test_registered_app_signs_in_with_its_own_redirect(server):
    created = server.control("/apps", {"client_id": "app-two", "client_secret": "two-secret",
                                       "redirect_uris": ["https://app-two.test/callback"]})
    assert created.status_code == 201 and "client_secret" not in created.json()
    http = server.session()
    app = msal.ConfidentialClientApplication(
        "app-two", client_credential="two-secret", authority=f"{server.base}/common",
        validate_authority=False, instance_discovery=False, http_client=http)
    flow = app.initiate_auth_code_flow(["User.Read"], redirect_uri="https://app-two.test/callback",
                                       response_mode="form_post")
    result = app.acquire_token_by_auth_code_flow(flow, server.sign_in(flow["auth_uri"], CAROL)["params"])
    assert server.identity.verify_access_token(result["access_token"])["appid"] == "app-two"
    grants = server.http.get(f"{server.base}/_emulator/identity/grants", params={"user_id": CAROL["id"]},
                             timeout=10).json()["value"]
    assert [g["client_id"] for g in grants] == ["app-two"] and "refresh_token" not in json.dumps(grants)


def test_a_refresh_token_redeems_once_even_under_concurrency(server):
    cache = msal.SerializableTokenCache()
    signed_in(server, server.msal(cache=cache))
    [rt] = refresh_tokens(cache)
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def redeem() -> None:
        with requests.Session() as session:
            session.trust_env, session.verify = False, server.ca
            barrier.wait(5)
            statuses.append(session.post(f"{server.base}/common/oauth2/v2.0/token", timeout=10, data={
                "client_id": DEV_CLIENT_ID, "client_secret": DEV_CLIENT_SECRET, "grant_type": "refresh_token",
                "refresh_token": rt, "scope": "Calendars.Read offline_access openid"}).status_code)

    threads = [threading.Thread(target=redeem) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(statuses) == [200] + [400] * 7
    assert len(server.identity.grants(ALICE["id"])) == 1


def test_authorize_parameter_errors_redirect_with_state(server):
    base = f"{server.base}/{TENANT}/oauth2/v2.0/authorize"
    common = {"client_id": DEV_CLIENT_ID, "redirect_uri": REDIRECT, "response_type": "code", "state": "st"}
    cases = [({}, "invalid_request", "AADSTS900144"),
             ({"scope": "openid", "code_challenge": "a" * 43, "code_challenge_method": "S512"},
              "invalid_request", "AADSTS501491"),
             ({"scope": "openid", "code_challenge": "short"}, "invalid_request", "AADSTS501491"),
             ({"scope": "https://other.example/Read"}, "invalid_resource", "AADSTS500011"),
             ({"scope": "openid", "prompt": "none"}, "login_required", "AADSTS50058"),
             ({"scope": "openid", "response_mode": "smoke-signal"}, "invalid_request", "AADSTS90043")]
    for extra, error, code in cases:
        response = server.http.get(base, params={**common, **extra}, allow_redirects=False, timeout=10)
        assert response.status_code == 302, (extra, response.text)
        params = query(response.headers["Location"])
        assert (params["error"], params["state"]) == (error, "st"), extra
        assert params["error_description"].startswith(code), extra
