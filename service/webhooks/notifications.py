"""Pure parsing and verification of Graph change/lifecycle notification collections.

No I/O here. Verification (the owner from our subscription record, never from the payload; clientState
compared as SHA-256 digests, so the Redis mirror never holds the secret itself) happens in Redis, in the
rule's script library (``service.webhooks.receiver``, ``service/sync/rule.lua``), for both routes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from service import inputs
from service.subscriptions.mirror import SubscriptionRef

MAX_VALIDATION_TOKEN = 4096
MAX_ITEMS = 5000
MAX_ID = 256
CHANGE_TYPES = frozenset({"created", "updated", "deleted"})
LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})

# Drop reasons (also the suffix of calsync:stats:webhook:dropped:{reason}).
UNKNOWN_SUBSCRIPTION = "unknown_subscription"
CLIENT_STATE = "client_state"
MALFORMED_ITEM = "malformed_item"


class BadPayload(ValueError):
    """The body is not a notification collection; the message is safe to return (never echoes input)."""


@dataclass(frozen=True)
class Notification:
    subscription_id: str
    client_state: str | None
    tenant_id: str | None = None
    change_type: str | None = None
    lifecycle_event: str | None = None
    resource: str | None = None
    resource_id: str | None = None
    encrypted: Mapping | None = None


@dataclass(frozen=True)
class Collection:
    items: tuple[Notification, ...]
    validation_tokens: tuple[str, ...] = ()
    malformed: int = 0


@dataclass
class Verdict:
    accepted: list[tuple[Notification, SubscriptionRef]] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)

    @property
    def users(self) -> list[str]:
        """Distinct owners of the accepted notifications, in first-seen order."""
        return list(dict.fromkeys(ref.user_id for _, ref in self.accepted))


def validation_token(args: Mapping[str, str]) -> str | None:
    """The URL-decoded ``validationToken`` query value, if this is a handshake; raise BadPayload if absurd."""
    token = args.get("validationToken")
    if token is None:
        return None
    if not token or len(token) > MAX_VALIDATION_TOKEN:
        raise BadPayload("validationToken is empty or too long")
    return token


def parse_collection(body: bytes, *, lifecycle: bool = False) -> Collection:
    """Parse ``{"value": [...], "validationTokens": [...]}``; per-item shape errors are counted, not fatal."""
    try:
        document = inputs.json_loads(body)
    except inputs.BadInput as exc:
        raise BadPayload(str(exc)) from None
    if not isinstance(document, dict) or not isinstance(document.get("value"), list):
        raise BadPayload("body must be an object with a 'value' array")
    raw_items = document["value"]
    if len(raw_items) > MAX_ITEMS:
        raise BadPayload("too many notifications in one request")
    tokens = document.get("validationTokens")
    if tokens is None:
        tokens = []
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise BadPayload("'validationTokens' must be an array of strings")
    items, malformed = [], 0
    for raw in raw_items:
        item = _parse_item(raw, lifecycle)
        if item is None:
            malformed += 1
        else:
            items.append(item)
    return Collection(tuple(items), tuple(tokens), malformed)


def _parse_item(raw: object, lifecycle: bool) -> Notification | None:
    if not isinstance(raw, dict):
        return None
    subscription_id = _lifecycle_subscription(raw) if lifecycle else raw.get("subscriptionId")
    if not _short_text(subscription_id):
        return None
    client_state = raw.get("clientState")
    if client_state is not None and not isinstance(client_state, str):
        return None
    # Lifecycle notifications have been seen naming the tenant "organizationId" (msgraph-sdk-java#1551).
    tenant = raw.get("tenantId") if raw.get("tenantId") is not None else raw.get("organizationId")
    tenant_id = tenant if _short_text(tenant) else None
    if lifecycle:
        event = raw.get("lifecycleEvent")
        if not isinstance(event, str) or event not in LIFECYCLE_EVENTS:
            return None
        return Notification(subscription_id, client_state, tenant_id, lifecycle_event=event)
    change_type = raw.get("changeType")
    if not isinstance(change_type, str) or change_type.lower() not in CHANGE_TYPES:
        return None
    resource = raw.get("resource") if isinstance(raw.get("resource"), str) else None
    data = raw.get("resourceData")
    resource_id = data.get("id") if isinstance(data, dict) and _short_text(data.get("id"), 2048) else None
    encrypted = raw.get("encryptedContent")
    if encrypted is not None and not isinstance(encrypted, dict):
        return None
    return Notification(subscription_id, client_state, tenant_id, change_type=change_type.lower(),
                        resource=resource, resource_id=resource_id, encrypted=encrypted)


def _lifecycle_subscription(raw: dict) -> str | None:
    """The subscription a lifecycle notification is about: ``subscriptionId`` as documented, or (as seen in the
    wild) only ``resource: "Subscriptions/{id}"`` or ``resourceData["@odata.id"]: "subscriptions/{id}"``. Ids
    that disagree make the item malformed (None)."""
    given = raw.get("subscriptionId")
    if given is not None and not isinstance(given, str):
        return None
    named = {given} if given is not None else set()
    data = raw.get("resourceData") if isinstance(raw.get("resourceData"), dict) else {}
    for path in (raw.get("resource"), data.get("@odata.id")):
        if isinstance(path, str) and path.lower().startswith(("subscriptions/", "/subscriptions/")):
            named.add(path.lstrip("/").split("/", 1)[1])
    return named.pop() if len(named) == 1 else None


def _short_text(value: object, limit: int = MAX_ID) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit
