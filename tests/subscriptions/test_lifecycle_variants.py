"""Lifecycle payload variants seen in real tenants (issue 21): ``organizationId`` instead of ``tenantId``, and the
subscription named only by ``resource: "Subscriptions/{id}"`` (or resourceData's ``@odata.id``); each is accepted
and renews the subscription, through the real route, job and emulator."""

from __future__ import annotations

import json

import pytest
import requests

from service.store import subscriptions as store
from service.webhooks.notifications import parse_collection
from tests.support.connect import connect_user, emulated_user


def variant(name: str, subscription: dict) -> dict:
    sub_id, state, tenant = subscription["id"], subscription["clientState"], subscription["tenantId"]
    base = {"subscriptionExpirationDateTime": subscription["expirationDateTime"], "clientState": state,
            "lifecycleEvent": "reauthorizationRequired"}
    return {
        "organization-id": base | {"subscriptionId": sub_id, "organizationId": tenant},
        "resource-only": base | {"resource": f"Subscriptions/{sub_id}", "tenantId": tenant},
        # The shape msgraph-sdk-java#1551 shows: an empty resource, resourceData naming the subscription,
        # organizationId, null sequence and encryptedContent, an offset instead of Z.
        "java-sdk-sample": base | {"subscriptionId": sub_id, "resource": "", "sequence": None,
                                   "resourceData": {"@odata.type": "#microsoft.graph.subscription",
                                                    "@odata.id": f"subscriptions/{sub_id}", "id": sub_id},
                                   "encryptedContent": None, "organizationId": tenant,
                                   "subscriptionExpirationDateTime": "2030-09-05T01:03:01.889254-07:00"},
        "odata-id-only": base | {"resourceData": {"@odata.id": f"subscriptions/{sub_id}"}, "organizationId": tenant},
    }[name]


@pytest.mark.parametrize("name", ["organization-id", "resource-only", "java-sdk-sample", "odata-id-only"])
def test_reauthorization_required_variants_renew_the_subscription(stack, name):
    user_id = connect_user(stack, emulated_user(stack, mail="rei@contoso.com")["id"])
    stack.run_jobs()
    (remote,) = [s for s in stack.emulator.control.subscriptions() if s["status"] == "active"]
    assert store.get(stack.runtime.db, remote["id"]).renewed_at is None

    answer = requests.post(f"{stack.url}/webhooks/graph/lifecycle", json={"value": [variant(name, remote)]},
                           timeout=10)
    stack.run_jobs()

    assert answer.status_code == 202
    assert store.get(stack.runtime.db, remote["id"]).renewed_at is not None
    assert user_id == remote["userId"]


def test_a_lifecycle_item_naming_two_different_subscriptions_is_malformed():
    body = {"value": [{"subscriptionId": "a", "resource": "Subscriptions/b", "clientState": "s",
                       "lifecycleEvent": "missed"}]}

    collection = parse_collection(json.dumps(body).encode(), lifecycle=True)

    assert collection.items == () and collection.malformed == 1
