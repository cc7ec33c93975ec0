"""Application tokens per customer tenant, against the emulator's identity platform: none before the tenant's
admin consents, the granted roles after, one token per tenant cached in the process, and tenant ids checked."""

from __future__ import annotations

import pytest

from service.identity.apptokens import AppConsentMissing
from tests.support.connect import emulated_user
from tests.support.tenant_admin import grant_application_permissions


def count_token_requests(stack) -> list[str]:
    """Every token request calsync's own HTTP session makes from now on (MSAL uses that session)."""
    seen: list[str] = []
    stack.runtime.http.hooks["response"].append(
        lambda response, *args, **kwargs: seen.append(response.url) if "/oauth2/v2.0/token" in response.url else None)
    return seen


def test_no_roles_until_the_admin_consents_then_the_granted_ones(stack):
    admin = emulated_user(stack, mail="admin@contoso.com")
    tokens = stack.runtime.app_tokens
    tenant = admin["tenant_id"]

    assert tokens.roles(tenant) == frozenset()
    with pytest.raises(AppConsentMissing) as refused:
        tokens.require(tenant, "Calendars.Read")
    assert refused.value.role == "Calendars.Read" and "admin consent needed" in str(refused.value)

    grant_application_permissions(stack, admin)
    tokens.forget(tenant)   # what the consent callback does
    assert "Calendars.Read" in tokens.roles(tenant)
    assert tokens.require(tenant, "Calendars.Read")


def test_a_tenants_token_is_asked_for_once_while_it_is_valid(stack):
    admin = emulated_user(stack, mail="admin@contoso.com")
    grant_application_permissions(stack, admin)
    tokens = stack.runtime.app_tokens
    requests = count_token_requests(stack)

    first = tokens.token(admin["tenant_id"])
    again = [tokens.token(admin["tenant_id"]) for _ in range(5)]

    assert again == [first] * 5
    assert len(requests) == 1 and requests[0].startswith(f"{stack.emulator.authority_host}/{admin['tenant_id']}/")


@pytest.mark.parametrize("tenant", ["common", "../x", "", "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d/../evil"])
def test_anything_but_a_tenant_id_is_refused_before_any_request(stack, tenant):
    requests = count_token_requests(stack)
    with pytest.raises(AppConsentMissing, match="not a tenant id"):
        stack.runtime.app_tokens.token(tenant)
    assert requests == []
