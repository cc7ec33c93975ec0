"""MSAL wiring: one ConfidentialClientApplication per use, bound to one user's token cache.

MSAL's authority must be https. Microsoft's own hosts get the normal authority validation; any other
host (the local emulator) is used with ``validate_authority=False, instance_discovery=False``, so MSAL
reads ``<authority>/v2.0/.well-known/openid-configuration``. ``http_cache`` keeps that discovery
document per process so building an app per call costs no extra round trip.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import msal
import requests

from service.config import Settings

# Delegated Graph permissions. MSAL adds openid, profile and offline_access itself (and refuses them here).
SCOPES = ("Calendars.Read", "User.Read")
# Outlook's working hours (GET /users/{id}/mailboxSettings: MailboxSettings.Read is the least privileged
# delegated permission): asked for only when the operator turns CALSYNC_OUTLOOK_WORKING_HOURS on.
MAILBOX_SETTINGS = "MailboxSettings.Read"


def sign_in_scopes(settings: Settings) -> tuple[str, ...]:
    """What sign-in and admin consent ask for: the base scopes, and MailboxSettings.Read only when turned on."""
    return SCOPES + ((MAILBOX_SETTINGS,) if settings.outlook_working_hours else ())
GRAPH_RESOURCE = "https://graph.microsoft.com"
MICROSOFT_HOSTS = (
    "login.microsoftonline.com",
    "login.microsoftonline.us",
    "login.chinacloudapi.cn",
    "login.partner.microsoftonline.cn",
)
RECONNECT_ERRORS = frozenset({"invalid_grant", "interaction_required", "consent_required", "login_required"})

_http_cache: dict = {}
PRIVATE_KEY = re.compile(r"-----BEGIN (?:RSA |EC )?PRIVATE KEY-----.+?-----END (?:RSA |EC )?PRIVATE KEY-----", re.S)
CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def is_microsoft_authority(settings: Settings) -> bool:
    return (urlsplit(settings.authority_host).hostname or "").lower() in MICROSOFT_HOSTS


def client_credential(settings: Settings, index: int = 0) -> str | dict:
    """The app's credential: the ``index``-th certificate of CALSYNC_CLIENT_CERTIFICATES when any is configured
    (MSAL signs a client assertion with its private key and names the certificate by its SHA-256 thumbprint,
    ``x5t#S256``, PS256: MSAL deprecates the SHA-1 ``thumbprint`` form), else the client secret."""
    if not settings.client_certificates:
        return settings.client_secret
    pem = Path(settings.client_certificates[min(index, len(settings.client_certificates) - 1)]).read_text()
    key = PRIVATE_KEY.search(pem)
    cert = CERTIFICATE.search(pem)
    if key is None or cert is None:
        raise ValueError("a client certificate file must hold a PEM private key and its certificate")
    return {"private_key": key.group(0), "public_certificate": cert.group(0)}


def build_app(settings: Settings, http: requests.Session, cache: msal.TokenCache | None = None,
              tenant: str | None = None, credential: int = 0,
              http_cache: dict | None = None) -> msal.ConfidentialClientApplication:
    """A confidential client for the configured app, using ``cache`` (one user's) and our trusted session;
    ``tenant`` names a customer's tenant instead of the configured authority (application tokens);
    ``credential`` picks an older certificate while a rotation is under way."""
    options: dict = {}
    if not is_microsoft_authority(settings):
        options = {"validate_authority": False, "instance_discovery": False}
    return msal.ConfidentialClientApplication(
        settings.client_id,
        client_credential=client_credential(settings, credential),
        authority=settings.authority if tenant is None else f"{settings.authority_host.rstrip('/')}/{tenant}",
        token_cache=cache,
        http_client=http,
        timeout=settings.http_timeout,
        http_cache=_http_cache if http_cache is None else http_cache,
        **options,
    )


def redirect_uri(settings: Settings) -> str:
    return f"{settings.public_url.rstrip('/')}/auth/callback"


def admin_consent_redirect_uri(settings: Settings) -> str:
    return f"{settings.public_url.rstrip('/')}/admin/consent/callback"


def discovery_url(settings: Settings) -> str:
    """Where MSAL (and our id-token check) read the authority's OpenID configuration."""
    return f"{settings.authority}/v2.0/.well-known/openid-configuration"
