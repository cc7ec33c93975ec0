"""Application tokens: client-credentials tokens for Graph in a customer's tenant, after its admin consented.

An admin of the customer's tenant grants calsync's application permissions once (admin consent); from then
on ``AppTokens.token(tenant_id)`` gets a token for ``https://graph.microsoft.com/.default`` from that tenant's
authority, and ``roles(tenant_id)`` says which application permissions (app roles) it carries. Callers that
need one ask ``require(tenant_id, role)``, which raises ``AppConsentMissing`` naming the role: a tenant that
never consented, revoked its consent, or consented to less is told so once, never retried in a loop.

Application tokens have no refresh token. MSAL keeps each tenant's token in this process's memory and returns
it until shortly before it expires, so a worker asks the identity platform about once an hour per tenant.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field

import jwt
import msal
import requests

from service.config import Settings
from service.identity.msal_app import GRAPH_RESOURCE, build_app

log = logging.getLogger(__name__)

DEFAULT_SCOPE = f"{GRAPH_RESOURCE}/.default"
TENANT_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class AppConsentMissing(Exception):  # noqa: N818 - named by the cross-module contract
    """The tenant has not granted the application permission asked for (or the token could not be had)."""

    def __init__(self, tenant_id: str, role: str | None, reason: str):
        super().__init__(f"tenant {tenant_id}: {reason}")
        self.tenant_id = tenant_id
        self.role = role
        self.reason = reason


@dataclass
class AppTokens:
    settings: Settings
    http: requests.Session
    _apps: dict[str, msal.ConfidentialClientApplication] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def token(self, tenant_id: str) -> str:
        """A client-credentials access token for Graph in ``tenant_id`` (MSAL's cached one while it is valid)."""
        result = self._app(tenant_id).acquire_token_for_client([DEFAULT_SCOPE])
        if result.get("error") == "invalid_client" and len(self.settings.client_certificates) > 1:
            # A rotation under way: the newest certificate is not (yet) on the app registration; the previous
            # one still is. Use it for this tenant until the process restarts or the consent changes.
            log.warning("app token for tenant %s: the newest client certificate was refused; using the previous "
                        "one", tenant_id)
            with self._lock:
                app = self._apps[tenant_id] = build_app(self.settings, self.http, tenant=tenant_id, credential=1,
                                                        http_cache={})
            result = app.acquire_token_for_client([DEFAULT_SCOPE])
        if "access_token" not in result:
            # No service principal in the tenant, a revoked consent, a wrong credential: all say "no consent"
            # to the caller; the identity platform's error code goes to the log (never the token request).
            log.warning("app token for tenant %s refused: %s (%s)", tenant_id, result.get("error"),
                        str(result.get("error_description") or "")[:200])
            raise AppConsentMissing(tenant_id, None, f"no application token ({result.get('error')})")
        return result["access_token"]

    def roles(self, tenant_id: str) -> frozenset[str]:
        """The application permissions the tenant granted, as its token carries them (empty: none)."""
        try:
            claims = jwt.decode(self.token(tenant_id), options={"verify_signature": False})
        except AppConsentMissing:
            return frozenset()
        except jwt.PyJWTError:
            # Microsoft says Graph access tokens are opaque to clients; one we cannot read grants nothing we
            # can rely on.
            return frozenset()
        roles = claims.get("roles")
        return frozenset(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else frozenset()

    def require(self, tenant_id: str, role: str) -> str:
        """A token that carries ``role``; ``AppConsentMissing`` when the tenant has not granted it."""
        token = self.token(tenant_id)
        if role not in self.roles(tenant_id):
            raise AppConsentMissing(tenant_id, role, f"admin consent needed for {role}")
        return token

    def forget(self, tenant_id: str) -> None:
        """Drop the tenant's cached token (after a consent changed): the next call asks the identity platform."""
        with self._lock:
            self._apps.pop(tenant_id, None)

    def _app(self, tenant_id: str) -> msal.ConfidentialClientApplication:
        if not isinstance(tenant_id, str) or not TENANT_ID.match(tenant_id):   # it becomes part of a URL
            raise AppConsentMissing(str(tenant_id)[:64], None, "not a tenant id")
        with self._lock:
            app = self._apps.get(tenant_id)
            if app is None:
                # Its own HTTP cache: MSAL's throttling replays a refused token request from that cache, which must
                # not outlive forget() (a tenant whose admin has just consented again).
                app = self._apps[tenant_id] = build_app(self.settings, self.http, tenant=tenant_id, http_cache={})
            return app
