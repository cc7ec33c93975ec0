"""The Microsoft identity platform half of the local Graph emulator: apps, grants and signed tokens.

`Identity` keeps every piece of state (pending sign-ins, codes, refresh tokens, consents) behind one
lock and reads time only from the injected clock, so tests can advance it. The HTTP surface lives in
`emulator.identity_web` (`identity_blueprint(identity)`, `control_blueprint(identity)`).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from service.config import DEV_CLIENT_ID, DEV_CLIENT_SECRET

log = logging.getLogger(__name__)

GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_AUDIENCES = (GRAPH_RESOURCE, GRAPH_APP_ID)
OIDC_SCOPES = ("openid", "profile", "email", "offline_access")
ANY_TENANT = ("common", "organizations")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
DEV_REDIRECT_URIS = (
    "http://127.0.0.1:8000/auth/callback",
    "http://localhost:8000/auth/callback",
    "http://127.0.0.1:8000/admin/consent/callback",
    "http://localhost:8000/admin/consent/callback",
)
DEFAULT_ACCESS_TOKEN_SECONDS = 3599
DEFAULT_REFRESH_TOKEN_SECONDS = 90 * 24 * 3600
DEFAULT_CODE_SECONDS = 600
PENDING_SIGN_IN_SECONDS = 3600


class Directory(Protocol):
    """What the identity platform needs from the emulator's user directory."""

    def get_user(self, user_id: str) -> dict | None: ...

    def find_user(self, login: str) -> dict | None: ...

    def users(self) -> list[dict]: ...


class InvalidToken(Exception):  # noqa: N818 - name fixed by the emulator contract
    """An access token failed verification; `reason` says why in a few words (never the token)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class OAuthError(Exception):
    """An identity-platform error: OAuth `error`, AADSTS number and message, HTTP status.

    `redirectable=False` marks authorize-time errors that must be shown as a page because the
    redirect URI (or the client) could not be trusted.
    """

    def __init__(self, error: str, code: int, message: str, status: int = 400, *,
                 redirectable: bool = True, suberror: str | None = None):
        super().__init__(f"{error}: AADSTS{code}")
        self.error = error
        self.code = code
        self.message = message
        self.status = status
        self.redirectable = redirectable
        self.suberror = suberror

    @property
    def description(self) -> str:
        return f"AADSTS{self.code}: {self.message}"


def missing(name: str, *, redirectable: bool = True) -> OAuthError:
    """The identity platform's wording for a missing parameter."""
    return OAuthError("invalid_request", 900144,
                      f"The request body must contain the following parameter: '{name}'.",
                      redirectable=redirectable)


@dataclass(frozen=True)
class App:
    """A registered confidential client with its configured delegated and application permissions."""

    client_id: str
    client_secret: str = field(repr=False)
    redirect_uris: tuple[str, ...] = ()
    display_name: str = "calsync"
    scopes: tuple[str, ...] = ("Calendars.Read", "User.Read")
    roles: tuple[str, ...] = ("Calendars.Read", "User.Read.All", "GroupMember.Read.All")
    # Certificate credentials (keyCredentials): base64url SHA-256 and SHA-1 thumbprints -> public key. A client
    # proves itself with a JWT assertion signed by the private key and naming the certificate in `x5t#S256`
    # (PS256) or `x5t` (RS256), as MSAL sends it.
    certificates: dict = field(default_factory=dict, repr=False)

    def add_certificate(self, pem: str) -> str:
        """Register a certificate (PEM) as a credential; returns its SHA-256 thumbprint (base64url)."""
        cert = x509.load_pem_x509_certificate(pem.encode())
        sha256 = b64url(cert.fingerprint(hashes.SHA256()))
        sha1 = b64url(cert.fingerprint(hashes.SHA1()))  # noqa: S303 - Entra's x5t is the SHA-1 thumbprint
        self.certificates[sha256] = cert.public_key()
        self.certificates[sha1] = cert.public_key()
        return sha256

    def remove_certificate(self, pem: str) -> None:
        cert = x509.load_pem_x509_certificate(pem.encode())
        for digest in (hashes.SHA256(), hashes.SHA1()):  # noqa: S303
            self.certificates.pop(b64url(cert.fingerprint(digest)), None)

    def service_principal_id(self, tenant_id: str) -> str:
        """The app's service principal object id in a tenant (stable, like Entra's)."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{tenant_id}:{self.client_id}"))

    def accepts_redirect(self, uri: str) -> bool:
        return any(redirect_uri_matches(registered, uri) for registered in self.redirect_uris)


def redirect_uri_matches(registered: str, candidate: str) -> bool:
    """Exact match, except that loopback hosts ignore the port (as Entra does for localhost)."""
    if registered == candidate:
        return True
    try:
        a, b = urlsplit(registered), urlsplit(candidate)
        a.port, b.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    if a.hostname not in LOOPBACK_HOSTS or b.hostname != a.hostname:
        return False
    return (a.scheme, a.path or "/", a.query, a.fragment) == (b.scheme, b.path or "/", b.query, b.fragment)


class AppRegistry:
    """Registered confidential clients, safe to share between request threads."""

    def __init__(self, apps: list[App] | None = None):
        self._lock = threading.Lock()
        self._apps = {app.client_id.lower(): app for app in apps or ()}

    @classmethod
    def default(cls) -> AppRegistry:
        """A registry holding calsync's public dev app and its local redirect URIs."""
        return cls([App(DEV_CLIENT_ID, DEV_CLIENT_SECRET, DEV_REDIRECT_URIS)])

    def register(self, client_id: str, client_secret: str, redirect_uris: list[str] | tuple[str, ...],
                 **options: Any) -> App:
        app = App(client_id, client_secret, tuple(redirect_uris), **options)
        with self._lock:
            self._apps[client_id.lower()] = app
        return app

    def get(self, client_id: str | None) -> App | None:
        with self._lock:
            return self._apps.get((client_id or "").lower())

    def all(self) -> list[App]:
        with self._lock:
            return list(self._apps.values())


@dataclass(frozen=True)
class Scopes:
    """A parsed `scope` parameter: Graph permission names, OIDC scopes, the audience, as requested."""

    resource: tuple[str, ...]
    oidc: tuple[str, ...]
    audience: str
    requested: tuple[str, ...]
    default: bool


BOT_FRAMEWORK_RESOURCE = "https://api.botframework.com"


def parse_scopes(raw: str | None, tenant: str) -> Scopes:
    """Split a space-separated scope string; Microsoft Graph and the Bot Framework are the known resources."""
    items = [s for s in (raw or "").split() if s]
    if not items:
        raise missing("scope")
    resource: list[str] = []
    oidc: list[str] = []
    audience = GRAPH_RESOURCE
    default = False
    for item in items:
        if item.lower() in OIDC_SCOPES:
            oidc.append(item.lower())
            continue
        prefix, _, name = item.rpartition("/")
        if prefix.rstrip("/").lower() == GRAPH_RESOURCE:
            audience = GRAPH_RESOURCE
        elif prefix.lower() == GRAPH_APP_ID:
            audience = GRAPH_APP_ID
        elif prefix.rstrip("/").lower() == BOT_FRAMEWORK_RESOURCE:
            audience = BOT_FRAMEWORK_RESOURCE     # the Bot Connector's (emulator.teams) tokens
        elif prefix:
            raise OAuthError("invalid_resource", 500011,
                             f"The resource principal named {prefix} was not found in the tenant named "
                             f"{tenant}. This can happen if the application has not been installed by the "
                             "administrator of the tenant or consented to by any user in the tenant.")
        if not name or any(ch.isspace() or ch in "\"<>" for ch in name):
            raise OAuthError("invalid_scope", 70011,
                             f"The provided value for the input parameter 'scope' is not valid. "
                             f"The scope {item} is not valid.")
        if name == ".default":
            default = True
        elif name not in resource:
            resource.append(name)
    return Scopes(tuple(resource), tuple(dict.fromkeys(oidc)), audience, tuple(items), default)


@dataclass
class SignInRequest:
    """A validated authorize or admin-consent request waiting for a user to pick Accept or Cancel."""

    ctx: str
    kind: str  # "authorize" | "adminconsent" | "adminconsent_v2"
    tenant: str
    app: App
    redirect_uri: str
    response_mode: str
    state: str | None
    scopes: Scopes | None
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    login_hint: str | None
    created: datetime


@dataclass
class AuthCode:
    client_id: str
    user_id: str
    tenant_id: str
    redirect_uri: str
    scopes: Scopes
    granted: tuple[str, ...]
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    issued: datetime
    redeemed: bool = False


@dataclass
class RefreshGrant:
    client_id: str
    user_id: str
    tenant_id: str
    granted: tuple[str, ...]
    audience: str
    issued: datetime
    first_issued: datetime
    rotated: bool = False
    revoked_at: datetime | None = None


@dataclass
class _SigningKey:
    private_key: rsa.RSAPrivateKey
    kid: str
    cert_der: bytes

    @classmethod
    def generate(cls, now: datetime) -> _SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "accounts.accesscontrol.windows.net")])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=3650))
                .sign(key, hashes.SHA256()))
        der = cert.public_bytes(serialization.Encoding.DER)
        kid = b64url(hashlib.sha1(der).digest())  # noqa: S324 - x5t is SHA-1 by definition
        return cls(key, kid, der)

    def jwk(self) -> dict:
        numbers = self.private_key.public_key().public_numbers()
        return {"kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid,
                "n": b64url(_int_bytes(numbers.n)), "e": b64url(_int_bytes(numbers.e)),
                "x5c": [base64.b64encode(self.cert_der).decode()]}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def pkce_matches(verifier: str, challenge: str, method: str | None) -> bool:
    """RFC 7636: S256 compares base64url(SHA-256(verifier)); plain compares the strings."""
    if (method or "plain") == "S256":
        expected = b64url(hashlib.sha256(verifier.encode("ascii", "replace")).digest())
    else:
        expected = verifier
    return secrets.compare_digest(expected, challenge)


def _when(moment: datetime) -> str:
    return moment.strftime("%m/%d/%Y %H:%M:%S")


def unknown_app(client_id: str, tenant: str, redirectable: bool = True) -> OAuthError:
    """AADSTS700016, as Entra words it, for a client id no app registration has."""
    return OAuthError("unauthorized_client", 700016,
                      f"Application with identifier '{client_id[:64]}' was not found in the directory "
                      f"'{tenant}'. This can happen if the application has not been installed by the "
                      "administrator of the tenant or consented to by any user in the tenant. You may "
                      "have sent your authentication request to the wrong tenant.", redirectable=redirectable)


class Identity:
    """The emulated Microsoft identity platform: sign-in, consent, tokens, JWKS and test controls."""

    def __init__(self, clock: Callable[[], datetime], directory: Directory, apps: AppRegistry | None = None):
        self.clock = clock
        self.directory = directory
        self.apps = apps if apps is not None else AppRegistry.default()
        self._lock = threading.RLock()
        self._keys = [_SigningKey.generate(clock())]
        self._pending: dict[str, SignInRequest] = {}
        self._codes: dict[str, AuthCode] = {}
        self._refresh: dict[str, RefreshGrant] = {}
        self._user_consents: dict[tuple[str, str], set[str]] = {}
        self._tenant_consents: dict[tuple[str, str], dict[str, set[str]]] = {}
        self._denied: dict[str, str] = {}
        # Entra answers AADSTS700016 to client credentials in a tenant without the app's service principal (no
        # consent ever, or the admin deleted the enterprise app). Off by default: older tests mint role-less
        # app tokens in tenants that never consented.
        self.require_service_principal = False
        self.access_token_seconds = DEFAULT_ACCESS_TOKEN_SECONDS
        self.refresh_token_seconds = DEFAULT_REFRESH_TOKEN_SECONDS
        self.code_seconds = DEFAULT_CODE_SECONDS

    # ----- HTTP surface -------------------------------------------------------------------

    # ----- keys and tokens ----------------------------------------------------------------

    def now(self) -> datetime:
        return self.clock()

    def _epoch(self) -> int:
        return int(self.clock().timestamp())

    def sign(self, claims: dict) -> str:
        """An RS256 JWT over `claims` with the current key's `kid` (served in the JWKS)."""
        with self._lock:
            key = self._keys[-1]
        return jwt.encode(claims, key.private_key, algorithm="RS256",
                          headers={"typ": "JWT", "kid": key.kid, "x5t": key.kid})

    def jwks(self) -> dict:
        with self._lock:
            return {"keys": [key.jwk() for key in reversed(self._keys)]}

    def rotate_signing_key(self) -> str:
        """Start signing with a new key; the old one stays in the JWKS so issued tokens still verify."""
        key = _SigningKey.generate(self.clock())
        with self._lock:
            self._keys = [*self._keys[-1:], key]
        return key.kid

    def verify_access_token(self, token: str) -> dict:
        """Claims of a Graph access token issued here; raise InvalidToken if it must be refused."""
        claims = self._verified_claims(token)
        if claims.get("aud") not in GRAPH_AUDIENCES:
            raise InvalidToken("wrong audience")
        if claims.get("iss") != f"https://sts.windows.net/{claims.get('tid')}/":
            raise InvalidToken("wrong issuer")
        now = self._epoch()
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= now:
            raise InvalidToken("expired")
        if isinstance(claims.get("nbf"), int) and claims["nbf"] > now + 300:
            raise InvalidToken("not yet valid")
        return claims

    def verify_access_token_for(self, token: str, audience: str) -> dict:
        """Claims of an application token issued here for another resource (the Bot Framework's)."""
        claims = self._verified_claims(token)
        if claims.get("aud") != audience:
            raise InvalidToken("wrong audience")
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= self._epoch():
            raise InvalidToken("expired")
        return claims

    def _verified_claims(self, token: str) -> dict:
        if not isinstance(token, str) or token.count(".") != 2:
            raise InvalidToken("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed token") from None
        if header.get("alg") != "RS256":
            raise InvalidToken("unsupported algorithm")
        with self._lock:
            key = next((k for k in self._keys if k.kid == header.get("kid")), None)
        if key is None:
            raise InvalidToken("unknown signing key")
        try:
            return jwt.decode(token, key.private_key.public_key(), algorithms=["RS256"],
                              options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                                       "verify_aud": False, "verify_iss": False})
        except jwt.InvalidSignatureError:
            raise InvalidToken("bad signature") from None
        except jwt.PyJWTError:
            raise InvalidToken("malformed token") from None

    # ----- tenants and users --------------------------------------------------------------

    def known_tenants(self) -> dict[str, str]:
        """Tenant ids seen in the directory, keyed by their lower-case form."""
        tenants = [str(u.get("tenant_id", "")) for u in self.directory.users()]
        extra = getattr(self.directory, "tenants", None)
        if callable(extra):
            tenants.extend(str(t.get("id", "") if isinstance(t, dict) else t) for t in extra())
        return {t.lower(): t for t in tenants if t}

    def resolve_tenant(self, tenant: str, *, redirectable: bool = False) -> str:
        """`common`, `organizations` or a known tenant id (as the directory spells it); else AADSTS90002."""
        value = (tenant or "").lower()
        if value in ANY_TENANT:
            return value
        known = self.known_tenants().get(value)
        if known is not None:
            return known
        raise OAuthError("invalid_tenant", 90002,
                         f"Tenant '{tenant[:64]}' not found. Check to make sure you have the correct tenant ID "
                         "and are signing into the correct cloud. Check with your subscription administrator, "
                         "this may happen if there are no active subscriptions for the tenant.",
                         redirectable=redirectable)

    def sign_in_users(self, tenant: str) -> list[dict]:
        """Users who may sign in at this authority (all of them for common/organizations)."""
        users = self.directory.users()
        if tenant in ANY_TENANT:
            return users
        return [u for u in users if str(u.get("tenant_id", "")).lower() == tenant.lower()]

    def lookup_user(self, user_ref: str | None) -> dict | None:
        """A directory user by id, mail or UPN."""
        if not user_ref or not isinstance(user_ref, str):
            return None
        return self.directory.get_user(user_ref) or self.directory.find_user(user_ref)

    # ----- authorize and admin consent ----------------------------------------------------

    def begin_sign_in(self, kind: str, tenant: str, params: dict[str, str]) -> SignInRequest:
        """Validate an authorize/admin-consent request; return it, pending a user's choice."""
        tenant = self.resolve_tenant(tenant)
        client_id = params.get("client_id")
        if not client_id:
            raise missing("client_id", redirectable=False)
        app = self.apps.get(client_id)
        if app is None:
            raise unknown_app(client_id, tenant, redirectable=False)
        redirect_uri = params.get("redirect_uri") or ""
        if not app.accepts_redirect(redirect_uri):
            raise OAuthError("invalid_request", 50011,
                             f"The redirect URI '{redirect_uri[:200]}' specified in the request does not match "
                             f"the redirect URIs configured for the application '{app.client_id}'. Make sure "
                             "the redirect URI sent in the request matches one added to your application in "
                             "the Azure portal.", redirectable=False)
        request = SignInRequest(
            ctx=secrets.token_urlsafe(24), kind=kind, tenant=tenant, app=app, redirect_uri=redirect_uri,
            response_mode="query", state=params.get("state"), scopes=None, nonce=params.get("nonce"),
            code_challenge=None, code_challenge_method=None, login_hint=params.get("login_hint"),
            created=self.clock())
        if kind == "authorize":
            self._check_authorize(request, params)
        elif kind == "adminconsent_v2":
            if tenant == "common":
                raise OAuthError("invalid_request", 90130,
                                 f"Application '{app.client_id}' ({app.display_name}) is not supported over "
                                 "the /common or /consumers endpoints. Please use the /organizations or "
                                 "tenant-specific endpoint.")
            request.scopes = parse_scopes(params.get("scope"), tenant)
        with self._lock:
            self._drop_stale()
            self._pending[request.ctx] = request
        return request

    def _check_authorize(self, request: SignInRequest, params: dict[str, str]) -> None:
        mode = params.get("response_mode") or "query"
        if mode not in ("query", "fragment", "form_post"):
            raise OAuthError("invalid_request", 90043,
                             f"The provided value for the input parameter 'response_mode' is not valid. "
                             f"Expected one of: 'query', 'fragment', 'form_post'. Received '{mode[:32]}'.")
        request.response_mode = mode
        response_type = params.get("response_type")
        if not response_type:
            raise missing("response_type")
        if response_type != "code":
            raise OAuthError("unsupported_response_type", 700054,
                             f"response_type '{response_type[:32]}' is not enabled for the application.")
        request.scopes = parse_scopes(params.get("scope"), request.tenant)
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method") or ("plain" if challenge else None)
        if challenge:
            if method not in ("plain", "S256"):
                raise OAuthError("invalid_request", 501491,
                                 "The provided value for the input parameter 'code_challenge_method' is not "
                                 "valid. Expected one of the following values: 'plain', 'S256'.")
            if not 43 <= len(challenge) <= 128:
                raise OAuthError("invalid_request", 501491, "Invalid size of Code_Challenge parameter.")
        request.code_challenge, request.code_challenge_method = challenge, method if challenge else None
        if params.get("prompt") == "none":
            raise OAuthError("login_required", 50058,
                             "A silent sign-in request was sent but no user is signed in.")

    def pending(self, ctx: str | None) -> SignInRequest | None:
        with self._lock:
            self._drop_stale()
            return self._pending.get(ctx or "")

    def finish_sign_in(self, request: SignInRequest, user_ref: str | None, accept: bool) -> dict[str, str]:
        """The redirect parameters after a user accepted or cancelled (code/state, or error/state)."""
        with self._lock:
            self._pending.pop(request.ctx, None)
        if request.kind == "authorize":
            return self._finish_authorize(request, user_ref, accept)
        return self._finish_admin_consent(request, user_ref, accept)

    def _signing_in_user(self, request: SignInRequest, user_ref: str | None) -> dict:
        user = self.lookup_user(user_ref)
        if user is None:
            raise OAuthError("invalid_request", 50034,
                             "The user account does not exist in the directory. To sign into this application, "
                             "the account must be added to the directory.")
        tenant_id = str(user["tenant_id"])
        if request.tenant not in ANY_TENANT and tenant_id.lower() != request.tenant.lower():
            raise OAuthError("invalid_request", 50020,
                             f"User account '{user.get('user_principal_name')}' from identity provider "
                             f"'https://sts.windows.net/{tenant_id}/' does not exist in tenant "
                             f"'{request.tenant}' and cannot access the application '{request.app.client_id}' "
                             f"({request.app.display_name}) in that tenant.")
        return user

    def _finish_authorize(self, request: SignInRequest, user_ref: str | None, accept: bool) -> dict[str, str]:
        if not accept:
            raise OAuthError("access_denied", 65004, "User declined to consent to access the app.")
        user = self._signing_in_user(request, user_ref)
        with self._lock:
            denial = self._denied.get(user["id"])
        if denial == "consent_required":
            raise OAuthError("consent_required", 65001,
                             f"The user or administrator has not consented to use the application with ID "
                             f"'{request.app.client_id}' named '{request.app.display_name}'. Send an interactive "
                             "authorization request for this user and resource.")
        if denial:
            raise OAuthError("access_denied", 65004, "User declined to consent to access the app.")
        scopes = request.scopes
        assert scopes is not None  # noqa: S101 - set by _check_authorize
        granted = self._grant_for(request.app, scopes)
        code = secrets.token_urlsafe(48)
        with self._lock:
            self._user_consents.setdefault((user["id"], request.app.client_id), set()).update(granted)
            self._codes[code] = AuthCode(
                client_id=request.app.client_id, user_id=user["id"], tenant_id=str(user["tenant_id"]),
                redirect_uri=request.redirect_uri, scopes=scopes, granted=granted, nonce=request.nonce,
                code_challenge=request.code_challenge, code_challenge_method=request.code_challenge_method,
                issued=self.clock())
        params = {"code": code}
        if request.state is not None:
            params["state"] = request.state
        params["session_state"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"session:{user['id']}"))
        return params

    def _grant_for(self, app: App, scopes: Scopes) -> tuple[str, ...]:
        names = list(scopes.resource)
        if scopes.default:
            names.extend(s for s in app.scopes if s not in names)
        return tuple(names) or ("User.Read",)

    def _finish_admin_consent(self, request: SignInRequest, user_ref: str | None,
                              accept: bool) -> dict[str, str]:
        if not accept:
            raise OAuthError("consent_required", 65004,
                             "The resource owner or authorization server denied the request.")
        user = self._signing_in_user(request, user_ref)
        tenant_id = str(user["tenant_id"])
        app = request.app
        if request.kind == "adminconsent" or (request.scopes and request.scopes.default):
            delegated, roles = set(app.scopes), set(app.roles)
        else:
            delegated, roles = set(request.scopes.resource if request.scopes else ()), set()
        with self._lock:
            consent = self._tenant_consents.setdefault((tenant_id.lower(), app.client_id.lower()),
                                                       {"scopes": set(), "roles": set()})
            consent["scopes"].update(delegated)
            consent["roles"].update(roles)
        params = {"admin_consent": "True", "tenant": tenant_id}
        if request.kind == "adminconsent_v2" and request.scopes:
            params["scope"] = " ".join(request.scopes.requested)
        if request.state is not None:
            params["state"] = request.state
        return params

    def tenant_consent(self, tenant_id: str, client_id: str) -> dict[str, list[str]] | None:
        """What an admin consented to tenant-wide for an app, or None."""
        with self._lock:
            consent = self._tenant_consents.get((tenant_id.lower(), client_id.lower()))
            return {k: sorted(v) for k, v in consent.items()} if consent else None

    def _drop_stale(self) -> None:
        now = self.clock()
        for ctx in [c for c, r in self._pending.items()
                    if now - r.created > timedelta(seconds=PENDING_SIGN_IN_SECONDS)]:
            del self._pending[ctx]
        for code in [c for c, r in self._codes.items() if now - r.issued > timedelta(seconds=3 * 3600)]:
            del self._codes[code]

    # ----- token endpoint -----------------------------------------------------------------

    def authenticate_client(self, tenant: str, client_id: str | None, secret: str | None) -> App:
        if not client_id:
            raise missing("client_id")
        app = self.apps.get(client_id)
        if app is None:
            raise unknown_app(client_id, tenant)
        if not secret:
            raise OAuthError("invalid_client", 7000218,
                             "The request body must contain the following parameter: 'client_assertion' or "
                             "'client_secret'.", status=401)
        if not secrets.compare_digest(secret.encode(), app.client_secret.encode()):
            raise OAuthError("invalid_client", 7000215,
                             "Invalid client secret provided. Ensure the secret being sent in the request is the "
                             f"client secret value, not the client secret ID, for a secret added to app "
                             f"'{app.client_id}'.", status=401)
        return app

    def authenticate_assertion(self, tenant: str, client_id: str | None, form: dict[str, str], host: str) -> App:
        """A certificate credential: a JWT signed with a registered certificate's key, for this token endpoint,
        issued by and about the client, unexpired. (MSAL reuses one assertion for about ten minutes, so a `jti`
        seen before is accepted.) Thumbprints are base64url, with or without padding, as MSAL sends them."""
        if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            raise OAuthError("invalid_client", 7000218, "The client_assertion_type is not valid.", status=401)
        assertion = form["client_assertion"]
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise OAuthError("invalid_client", 700027, "Client assertion is not a valid JWT.", status=401) from None
        client_id = client_id or unverified.get("iss")
        app = self.apps.get(client_id)
        if app is None:
            raise unknown_app(str(client_id), tenant)
        thumbprint = header.get("x5t#S256") or header.get("x5t")
        algorithm = header.get("alg")
        key = app.certificates.get(thumbprint.rstrip("=")) if isinstance(thumbprint, str) else None
        if key is None or algorithm not in ("PS256", "RS256"):
            raise OAuthError("invalid_client", 700027,
                             f"Client assertion contains an invalid signature. [Reason - The key was not found., "
                             f"Thumbprint of key used by client: '{str(thumbprint)[:64]}']", status=401)
        audience = f"{host.rstrip('/')}/{tenant}/oauth2/v2.0/token"
        try:
            claims = jwt.decode(assertion, key, algorithms=[algorithm], audience=[audience, audience.lower()],
                                issuer=app.client_id, leeway=300, options={"require": ["exp", "jti", "sub"]})
        except jwt.PyJWTError as exc:
            raise OAuthError("invalid_client", 700027,
                             f"Client assertion failed signature validation ({type(exc).__name__}).",
                             status=401) from None
        if claims.get("sub") != app.client_id:
            raise OAuthError("invalid_client", 700023, "Client assertion subject is not the client.", status=401)
        return app

    def revoke_tenant_consent(self, tenant_id: str, client_id: str, roles: list[str] | None = None) -> bool:
        """The tenant's admin removed the app (the service principal goes: the token endpoint refuses the app in
        that tenant), or with ``roles`` only those application permission grants."""
        with self._lock:
            key = (tenant_id.lower(), client_id.lower())
            if roles is None:
                return self._tenant_consents.pop(key, None) is not None
            consent = self._tenant_consents.get(key)
            if consent is None:
                return False
            consent["roles"].difference_update(roles)
            return True

    def token(self, tenant: str, form: dict[str, str], basic: tuple[str, str] | None, host: str) -> dict:
        """Run the token endpoint for a form body; return the JSON response or raise OAuthError.

        `host` is the issuer base of id tokens (`https://127.0.0.1:PORT`), taken from the request.
        """
        tenant = self.resolve_tenant(tenant)
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if basic is not None:
            client_id, secret = client_id or basic[0], basic[1]
        grant_type = form.get("grant_type")
        if not grant_type:
            raise missing("grant_type")
        if form.get("client_assertion"):
            app = self.authenticate_assertion(tenant, client_id, form, host)
        else:
            app = self.authenticate_client(tenant, client_id, secret)
        if grant_type == "authorization_code":
            return self._redeem_code(tenant, app, form, host)
        if grant_type == "refresh_token":
            return self._redeem_refresh_token(tenant, app, form, host)
        if grant_type == "client_credentials":
            return self._client_credentials(tenant, app, form)
        raise OAuthError("unsupported_grant_type", 70003,
                         f"The app requested an unsupported grant type '{grant_type[:64]}'.")

    def _redeem_code(self, tenant: str, app: App, form: dict[str, str], host: str) -> dict:
        code = form.get("code")
        if not code:
            raise missing("code")
        redirect_uri = form.get("redirect_uri")
        if not redirect_uri:
            raise missing("redirect_uri")
        now = self.clock()
        with self._lock:
            record = self._codes.get(code)
            if record is None or record.client_id != app.client_id:
                raise OAuthError("invalid_grant", 9002313,
                                 "Invalid request. Request is malformed or invalid.")
            if record.redeemed:
                raise OAuthError("invalid_grant", 54005,
                                 "OAuth2 Authorization code was already redeemed, please retry with a new valid "
                                 "code or use an existing refresh token.")
            if now - record.issued > timedelta(seconds=self.code_seconds):
                raise OAuthError("invalid_grant", 70008,
                                 "The provided authorization code or refresh token has expired due to "
                                 "inactivity. Send a new interactive authorization request for this user and "
                                 "resource.")
            if tenant not in ANY_TENANT and tenant.lower() != record.tenant_id.lower():
                raise OAuthError("invalid_grant", 50148,
                                 "The code was issued for a different tenant than the one in the request.")
            if redirect_uri != record.redirect_uri:
                raise OAuthError("invalid_grant", 500112,
                                 "The reply address does not match the reply address provided when requesting "
                                 "Authorization code.")
            if record.code_challenge:
                verifier = form.get("code_verifier")
                if not verifier or not pkce_matches(verifier, record.code_challenge, record.code_challenge_method):
                    raise OAuthError("invalid_grant", 501481,
                                     "The Code_Verifier does not match the code_challenge supplied in the "
                                     "authorization request.")
            record.redeemed = True  # a failed PKCE/redirect check above leaves the code usable, as Entra does
        user = self.directory.get_user(record.user_id)
        if user is None:
            raise OAuthError("invalid_grant", 50034, "The user account does not exist in the directory.")
        return self._user_tokens(app, user, record.scopes, record.granted, record.nonce, host, first_issued=now)

    def _redeem_refresh_token(self, tenant: str, app: App, form: dict[str, str], host: str) -> dict:
        token = form.get("refresh_token")
        if not token:
            raise missing("refresh_token")
        scopes = parse_scopes(form.get("scope") or "openid", tenant)
        now = self.clock()
        with self._lock:
            grant = self._refresh.get(token)
            if grant is None or grant.client_id != app.client_id:
                raise OAuthError("invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
            if grant.revoked_at is not None:
                raise OAuthError(
                    "invalid_grant", 50173,
                    "The provided grant has expired due to it being revoked, a fresh auth token is needed. "
                    "The user might have changed or reset their password. The grant was issued on "
                    f"'{grant.first_issued.isoformat()}' and the TokensValidFrom date (before which tokens are "
                    f"not valid) for this user is '{grant.revoked_at.isoformat()}'.",
                    suberror="bad_token")
            if grant.rotated:
                raise OAuthError("invalid_grant", 70000,
                                 "Provided grant is invalid or malformed. The refresh token was already "
                                 "redeemed and replaced by a newer one.")
            if now - grant.issued > timedelta(seconds=self.refresh_token_seconds):
                raise OAuthError("invalid_grant", 700082,
                                 f"The refresh token has expired due to inactivity. The token was issued on "
                                 f"{grant.issued.isoformat()} and was inactive for "
                                 f"{timedelta(seconds=self.refresh_token_seconds)}.")
            if tenant not in ANY_TENANT and tenant.lower() != grant.tenant_id.lower():
                raise OAuthError("invalid_grant", 700003, "Device object was not found in the tenant.")
            consented = self._user_consents.get((grant.user_id, app.client_id), set())
            wanted = self._grant_for(app, scopes) if (scopes.resource or scopes.default) else grant.granted
            if not set(wanted) <= consented | set(grant.granted):
                raise OAuthError("invalid_grant", 65001,
                                 f"The user or administrator has not consented to use the application with ID "
                                 f"'{app.client_id}' named '{app.display_name}'. Send an interactive "
                                 "authorization request for this user and resource.", suberror="consent_required")
            grant.rotated = True
            first_issued = grant.first_issued
            user_id = grant.user_id
        user = self.directory.get_user(user_id)
        if user is None:
            raise OAuthError("invalid_grant", 50034, "The user account does not exist in the directory.")
        return self._user_tokens(app, user, scopes, tuple(wanted), None, host, first_issued=first_issued)

    def _client_credentials(self, tenant: str, app: App, form: dict[str, str]) -> dict:
        if tenant in ANY_TENANT:
            raise OAuthError("invalid_request", 7000112,
                             f"Application '{app.client_id}'({app.display_name}) requires a tenant-specific "
                             "authority for the client credentials flow; /common and /organizations are not "
                             "supported.")
        scopes = parse_scopes(form.get("scope"), tenant)
        if not scopes.default or scopes.resource or scopes.oidc:
            raise OAuthError("invalid_scope", 1002012,
                             f"The provided value for scope {' '.join(scopes.requested)[:200]} is not valid. "
                             "Client credential flows must have a scope value with /.default suffixed to the "
                             "resource identifier (application ID URI).")
        with self._lock:
            consent = self._tenant_consents.get((tenant.lower(), app.client_id.lower()))
            roles = sorted(consent["roles"]) if consent else []
        if consent is None and self.require_service_principal:
            raise OAuthError("unauthorized_client", 700016,
                             f"Application with identifier '{app.client_id}' was not found in the directory "
                             f"'{tenant}'. This can happen if the application has not been installed by the "
                             "administrator of the tenant or consented to by any user in the tenant.")
        now = self._epoch()
        life = self.access_token_seconds
        sp_id = app.service_principal_id(tenant)
        claims = {
            "aud": scopes.audience, "iss": f"https://sts.windows.net/{tenant}/", "iat": now, "nbf": now,
            "exp": now + life, "aio": secrets.token_urlsafe(16), "app_displayname": app.display_name,
            "appid": app.client_id, "appidacr": "1", "azp": app.client_id, "azpacr": "1",
            "idp": f"https://sts.windows.net/{tenant}/", "idtyp": "app", "oid": sp_id, "sub": sp_id,
            "tid": tenant, "uti": secrets.token_urlsafe(16), "ver": "1.0",
        }
        if roles:
            claims["roles"] = roles
        return {"token_type": "Bearer", "expires_in": life, "ext_expires_in": life,
                "access_token": self.sign(claims)}

    def _user_tokens(self, app: App, user: dict, scopes: Scopes, granted: tuple[str, ...], nonce: str | None,
                     host: str, *, first_issued: datetime) -> dict:
        now_dt = self.clock()
        now = int(now_dt.timestamp())
        life = self.access_token_seconds
        tenant_id = str(user["tenant_id"])
        oid = str(user["id"])
        upn = user.get("user_principal_name") or user.get("mail") or ""
        name = user.get("display_name") or upn
        scp = [*granted, *(s for s in scopes.oidc if s != "offline_access")]
        access = {
            "aud": scopes.audience, "iss": f"https://sts.windows.net/{tenant_id}/", "iat": now, "nbf": now,
            "exp": now + life, "acct": 0, "aio": secrets.token_urlsafe(16), "amr": ["pwd"],
            "app_displayname": app.display_name, "appid": app.client_id, "appidacr": "1",
            "azp": app.client_id, "azpacr": "1", "idtyp": "user", "ipaddr": "127.0.0.1", "name": name,
            "oid": oid, "scp": " ".join(scp), "sub": _pairwise(app.client_id + "|at", oid), "tid": tenant_id,
            "unique_name": upn, "upn": upn, "preferred_username": upn, "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
        }
        body: dict[str, Any] = {
            "token_type": "Bearer", "scope": _response_scope(scopes, granted), "expires_in": life,
            "ext_expires_in": life, "access_token": self.sign(access),
        }
        if "offline_access" in scopes.oidc:
            refresh = secrets.token_urlsafe(64)
            with self._lock:
                self._refresh[refresh] = RefreshGrant(
                    client_id=app.client_id, user_id=oid, tenant_id=tenant_id, granted=granted,
                    audience=scopes.audience, issued=now_dt, first_issued=first_issued)
            body["refresh_token"] = refresh
        if "openid" in scopes.oidc:
            id_claims = {
                "aud": app.client_id, "iss": f"{host.rstrip('/')}/{tenant_id}/v2.0", "iat": now, "nbf": now,
                "exp": now + 3600, "name": name, "oid": oid, "preferred_username": upn,
                "sub": _pairwise(app.client_id, oid), "tid": tenant_id, "uti": secrets.token_urlsafe(16),
                "ver": "2.0",
            }
            if nonce:
                id_claims["nonce"] = nonce
            if user.get("roles"):
                # Directory role template ids, as Entra emits them when the app's groupMembershipClaims includes
                # directory roles ("DirectoryRole" or "All").
                id_claims["wids"] = list(user["roles"])
            if "email" in scopes.oidc and user.get("mail"):
                id_claims["email"] = user["mail"]
            body["id_token"] = self.sign(id_claims)
            body["client_info"] = b64url(f'{{"uid":"{oid}","utid":"{tenant_id}"}}'.encode())
        return body

    # ----- controls -----------------------------------------------------------------------

    def revoke(self, user_id: str, client_id: str | None = None) -> int:
        """Revoke a user's refresh tokens (for one app or all); the next refresh gets invalid_grant."""
        now = self.clock()
        count = 0
        with self._lock:
            for grant in self._refresh.values():
                if grant.user_id == user_id and grant.revoked_at is None and not grant.rotated and (
                        client_id is None or grant.client_id == client_id):
                    grant.revoked_at = now
                    count += 1
            for key in [k for k in self._user_consents if k[0] == user_id and client_id in (None, k[1])]:
                del self._user_consents[key]
        log.info("identity: revoked %d refresh token(s) for a user", count)
        return count

    def set_lifetimes(self, access_token_seconds: int | None = None, refresh_token_seconds: int | None = None,
                      code_seconds: int | None = None) -> dict[str, int]:
        with self._lock:
            if access_token_seconds is not None:
                self.access_token_seconds = access_token_seconds
            if refresh_token_seconds is not None:
                self.refresh_token_seconds = refresh_token_seconds
            if code_seconds is not None:
                self.code_seconds = code_seconds
            return self.lifetimes()

    def lifetimes(self) -> dict[str, int]:
        return {"access_token_seconds": self.access_token_seconds,
                "refresh_token_seconds": self.refresh_token_seconds, "code_seconds": self.code_seconds}

    def deny_consent(self, user_id: str, error: str | None = "access_denied") -> None:
        """Make the user's next sign-ins fail with `error` (access_denied or consent_required); None undoes."""
        with self._lock:
            if error is None:
                self._denied.pop(user_id, None)
            else:
                self._denied[user_id] = error

    def grants(self, user_id: str | None = None) -> list[dict]:
        """Live refresh-token grants (never the tokens themselves), for test assertions."""
        with self._lock:
            return [{"user_id": g.user_id, "client_id": g.client_id, "tenant_id": g.tenant_id,
                     "scopes": list(g.granted), "issued": g.issued.isoformat(),
                     "revoked": g.revoked_at is not None}
                    for g in self._refresh.values()
                    if not g.rotated and (user_id is None or g.user_id == user_id)]


def _response_scope(scopes: Scopes, granted: tuple[str, ...]) -> str:
    """The token response's `scope`: resource scopes as the client spelled them, then OIDC scopes."""
    if scopes.default:
        prefix = scopes.audience + "/"
        resource = [prefix + name for name in granted]
    else:
        resource = [s for s in scopes.requested if s.lower() not in OIDC_SCOPES]
    oidc = [s for s in scopes.oidc if s != "offline_access"]
    return " ".join(dict.fromkeys([*resource, *oidc]))


def _pairwise(salt: str, oid: str) -> str:
    """A per-app subject identifier, like Entra's pairwise `sub`."""
    return b64url(hashlib.sha256(f"{salt}:{oid}".encode()).digest())
