"""Inside and outside the user's organization: an address is internal when its domain is one of the tenant's.

The tenant's domains are the user's own email domain plus any an operator configured for the tenant
(``calsync tenants domains``); a subdomain of one counts too (``eu.contoso.com`` under ``contoso.com``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pymongo.database import Database

from service.store import tenants
from service.store.records import User

DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def domain_of(email: str | None) -> str:
    """The domain of an address ("" when it has none)."""
    local, at, domain = (email or "").strip().lower().rpartition("@")
    return domain if at and local else ""


def clean_domain(value: str) -> str | None:
    """A domain name as stored (lower case, no leading @ or dot), or None if it is not one."""
    text = value.strip().lower().lstrip("@").rstrip(".") if isinstance(value, str) else ""
    return text if DOMAIN.match(text) else None


@dataclass(frozen=True)
class Organization:
    domains: frozenset[str]

    def is_internal(self, email: str | None) -> bool:
        domain = domain_of(email)
        if not domain:
            return False
        parts = domain.split(".")
        return any(".".join(parts[n:]) in self.domains for n in range(len(parts) - 1))

    def is_external(self, email: str | None) -> bool:
        """Outside the organization (an address without a domain counts as neither)."""
        return bool(domain_of(email)) and not self.is_internal(email)


def for_user(db: Database, user: User, cache: dict[str | None, list[str]] | None = None) -> Organization:
    """The user's organization; ``cache`` (tenant → configured domains) saves a read per user in a batch."""
    if cache is None or user.tenant_id not in cache:
        configured = tenants.domains(db, user.tenant_id)
        if cache is not None:
            cache[user.tenant_id] = configured
    else:
        configured = cache[user.tenant_id]
    own = {domain_of(user.email)} - {""}
    return Organization(frozenset(own | set(configured)))
