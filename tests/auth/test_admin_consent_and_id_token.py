"""Admin consent against the emulator, and the id-token checks MSAL no longer does for us."""

import ssl
import time
from urllib.parse import parse_qs, urlsplit

import certifi
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from service.cli.demo import browser_session
from service.identity import idtoken
from service.identity.jwks import KeySets
from service.store import tenants
from tests.support.connect import connect_session, emulated_user, sign_in_at_emulator


def start_admin_consent(stack, session):
    response = session.get(f"{stack.url}/admin/consent", allow_redirects=False, timeout=10)
    assert response.status_code == 303
    return response.headers["Location"]


def test_admin_consent_redirects_to_the_v2_endpoint_for_our_application_permissions(stack):
    location = start_admin_consent(stack, browser_session())

    parts = urlsplit(location)
    query = parse_qs(parts.query)
    assert location.startswith(f"{stack.emulator.base_url}/organizations/v2.0/adminconsent?")
    assert query["client_id"] == [stack.settings.client_id]
    assert query["scope"] == ["https://graph.microsoft.com/.default"]   # what the app registration lists
    assert query["redirect_uri"] == [f"{stack.url}/admin/consent/callback"]
    assert len(query["state"][0]) >= 20


def test_an_admins_consent_is_recorded_for_the_tenant(stack):
    admin = emulated_user(stack, mail="admin@contoso.com")
    session = browser_session()

    redirect = sign_in_at_emulator(stack, start_admin_consent(stack, session), admin["id"])
    response = session.get(redirect, timeout=10)

    record = tenants.get(stack.runtime.db, admin["tenant_id"])
    assert response.status_code == 200 and "Admin consent granted" in response.text
    assert record["consented_at"] is not None
    assert record["scopes"] == ["https://graph.microsoft.com/.default"]
    consent = stack.emulator.control.request("GET", "/identity/consents", params={
        "tenant": admin["tenant_id"], "client_id": stack.settings.client_id})["consent"]
    assert consent["scopes"] == ["Calendars.Read", "User.Read"]
    assert consent["roles"] == ["Calendars.Read", "GroupMember.Read.All", "User.Read.All"]


def test_a_signed_in_admin_is_recorded_as_the_consenter(stack):
    admin = emulated_user(stack, mail="admin@contoso.com")
    _, session = connect_session(stack, admin["id"])

    session.get(sign_in_at_emulator(stack, start_admin_consent(stack, session), admin["id"]), timeout=10)

    assert tenants.get(stack.runtime.db, admin["tenant_id"])["consented_by"] == "admin@contoso.com"


def test_a_refused_admin_consent_shows_microsofts_error_and_records_nothing(stack):
    admin = emulated_user(stack)
    session = browser_session()

    redirect = sign_in_at_emulator(stack, start_admin_consent(stack, session), admin["id"], accept=False)
    response = session.get(redirect, timeout=10)

    assert response.status_code == 403
    assert "consent_required" in response.text
    assert stack.runtime.db.tenants.count_documents({}) == 0


@pytest.mark.parametrize("query", [
    "admin_consent=True&tenant=0b9e2f6c-1d2e-4f3a-9b8c-7d6e5f4a3b2c&state=forged",
    "admin_consent=True&tenant=0b9e2f6c-1d2e-4f3a-9b8c-7d6e5f4a3b2c",
    "",
])
def test_an_admin_consent_callback_with_a_bad_state_is_refused(stack, query):
    response = browser_session().get(f"{stack.url}/admin/consent/callback?{query}", timeout=10)

    assert response.status_code == 400
    assert stack.runtime.db.tenants.count_documents({}) == 0


def test_an_admin_consent_callback_with_a_malformed_tenant_is_refused(stack):
    session = browser_session()
    state = parse_qs(urlsplit(start_admin_consent(stack, session)).query)["state"][0]

    response = session.get(f"{stack.url}/admin/consent/callback",
                           params={"admin_consent": "True", "tenant": "<script>", "state": state}, timeout=10)

    assert response.status_code == 400 and "<script>" not in response.text
    assert stack.runtime.db.tenants.count_documents({}) == 0


# ----- id tokens ---------------------------------------------------------------------------------

NONCE = "flow-nonce-123"


def claims(stack, **changes):
    now = int(time.time())
    tenant = "0b9e2f6c-1d2e-4f3a-9b8c-7d6e5f4a3b2c"
    base = {"aud": stack.settings.client_id, "iss": f"{stack.emulator.base_url}/{tenant}/v2.0", "iat": now,
            "nbf": now, "exp": now + 3600, "oid": "6f1c2a9e-0000-4000-8000-000000000001", "tid": tenant,
            "nonce": idtoken.nonce_hash(NONCE), "ver": "2.0"}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def signed(stack, **changes) -> str:
    return stack.emulator.emulator.identity.sign(claims(stack, **changes))


def test_a_genuine_id_token_is_accepted(stack):
    claims = stack.runtime.id_tokens.validate(signed(stack), NONCE)
    assert claims["oid"] == "6f1c2a9e-0000-4000-8000-000000000001"


@pytest.mark.parametrize("changes, reason", [
    ({"nonce": idtoken.nonce_hash("another")}, "nonce"),
    ({"nonce": None}, "nonce"),
    ({"aud": "someone-else"}, "audience"),
    ({"iss": "https://evil.example/x/v2.0"}, "issuer"),
    ({"exp": int(time.time()) - 3600}, "expired"),
    ({"nbf": int(time.time()) + 3600}, "not yet valid"),
    ({"oid": None}, "object id"),
])
def test_an_id_token_failing_a_check_is_rejected(stack, changes, reason):
    with pytest.raises(idtoken.IdTokenInvalid, match=reason):
        stack.runtime.id_tokens.validate(signed(stack, **changes), NONCE)


def test_an_id_token_signed_by_another_key_is_rejected(stack):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = jwt.get_unverified_header(signed(stack))["kid"]
    forged = jwt.encode(claims(stack), key, algorithm="RS256", headers={"kid": kid})

    with pytest.raises(idtoken.IdTokenInvalid):
        stack.runtime.id_tokens.validate(forged, NONCE)


@pytest.mark.parametrize("raw", ["", "a.b", "not.a.jwt", None,
                                 jwt.encode({"x": 1}, "k" * 32, algorithm="HS256")])
def test_malformed_or_unsigned_id_tokens_are_rejected(stack, raw):
    with pytest.raises(idtoken.IdTokenInvalid):
        stack.runtime.id_tokens.validate(raw, NONCE)


def id_tokens_with(stack, ssl_context=None, cooldown: float = 30) -> idtoken.IdTokens:
    """An IdTokens like the runtime's, with its own key cache."""
    keys = KeySets(ssl_context or stack.runtime.ssl_context, timeout=5, cooldown=cooldown)
    return idtoken.IdTokens(stack.runtime.settings, stack.runtime.http, keys)


class MonotonicClock:
    """PyJWT's key client measures its refetch cooldown with ``time.monotonic``; this one moves when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_a_rotated_signing_key_is_fetched_once_the_refetch_cooldown_allows(stack, monkeypatch):
    clock = MonotonicClock()
    monkeypatch.setattr("jwt.jwks_client.time", clock)   # the cooldown's clock; the key set's lifespan keeps its own
    id_tokens = id_tokens_with(stack, cooldown=30.0)
    id_tokens.validate(signed(stack), NONCE)  # caches the key set
    stack.emulator.control.request("POST", "/identity/rotate-signing-key")

    with pytest.raises(idtoken.IdTokenInvalid, match="unknown signing key"):
        id_tokens.validate(signed(stack), NONCE)  # a kid we do not hold, but the keys were fetched just now
    clock.now += 29.9
    with pytest.raises(idtoken.IdTokenInvalid, match="unknown signing key"):
        id_tokens.validate(signed(stack), NONCE)  # still inside the cooldown: no refetch
    clock.now += 0.2

    assert id_tokens.validate(signed(stack), NONCE)["tid"]


def test_signing_keys_that_cannot_be_fetched_reject_the_token_instead_of_failing(stack):
    untrusting = ssl.create_default_context(cafile=certifi.where())  # no emulator CA: the fetch fails TLS

    with pytest.raises(idtoken.IdTokenInvalid, match="signing keys could not be read"):
        id_tokens_with(stack, untrusting).validate(signed(stack), NONCE)
