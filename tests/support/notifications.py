"""Graph change notifications as the webhook tests send them: two subscriptions, their clientStates,
and a notification item."""

from __future__ import annotations

from datetime import timedelta

from service.store import subscriptions as store
from service.store import utcnow
from service.store.records import Subscription

SUB_A, SUB_B = "11111111-aaaa-4aaa-8aaa-000000000001", "22222222-bbbb-4bbb-8bbb-000000000002"
STATE_A, STATE_B = "state-a-" + "x" * 40, "state-b-" + "y" * 40


def subscribe(db, subscription_id: str, user_id: str, client_state: str, **extra) -> Subscription:
    subscription = Subscription(id=subscription_id, user_id=user_id, client_state=client_state, tenant_id="t1",
                                resource="r", expires_at=utcnow() + timedelta(days=3), **extra)
    store.replace_for_user(db, subscription)
    return subscription


def change(subscription_id: str, client_state: str | None, event_id: str = "AAMk1", change_type: str = "updated"):
    return {
        "subscriptionId": subscription_id, "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
        "changeType": change_type, "clientState": client_state, "tenantId": "t1",
        "resource": f"Users/u/Events/{event_id}",
        "resourceData": {"@odata.type": "#Microsoft.Graph.Event", "@odata.id": f"Users/u/Events/{event_id}",
                         "id": event_id},
    }
