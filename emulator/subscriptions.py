"""Graph subscriptions for events: creation with the validation handshake, renew, delete, reauthorize,
expiry on the emulator clock, change and lifecycle notifications."""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

import requests
from cryptography import x509

from emulator import events, rich
from emulator.errors import GraphError, bad_request, not_found
from emulator.notify import Notifier, Pending

log = logging.getLogger(__name__)

MAX_MINUTES = 10_080
MAX_RICH_MINUTES = 1_440
MIN_MINUTES = 45
CHANGE_TYPES = ("created", "updated", "deleted")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
RESOURCE = re.compile(r"^/?(?:(me)|users/([^/?]+))/events(?:\?(.*))?$", re.IGNORECASE)


@dataclass
class Caller:
    """Who is calling Graph, from the verified access token."""

    claims: dict
    delegated: bool
    user_id: str | None
    tenant_id: str
    app_id: str
    token_exp: dt.datetime


OUT_OF_SCOPE = "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings."
TOKEN_CHALLENGE_WINDOW = dt.timedelta(minutes=15)
HELD_DELIVERY_LIMIT = dt.timedelta(hours=4)


@dataclass
class Subscription:
    id: str
    resource: str
    change_types: list[str]
    notification_url: str
    lifecycle_url: str | None
    expiration: dt.datetime
    client_state: str | None
    include_resource_data: bool
    encryption_certificate: str | None
    encryption_certificate_id: str | None
    cert: x509.Certificate | None
    latest_tls: str
    application_id: str
    creator_id: str
    tenant_id: str
    user_id: str
    select: list[str]
    token_exp: dt.datetime
    created: dt.datetime
    status: str = "active"  # active | expired | deleted | removed
    reauth_sent: set[str] = field(default_factory=set)
    # Created with `Prefer: IdType="ImmutableId"`: its notifications carry immutable ids; "Existing subscriptions
    # created without the header continue to use the default ID format" (outlook-immutable-id).
    immutable_ids: bool = False
    delegated: bool = True    # created with a user's token (Microsoft removes those when the user's password changes)
    # The sweep's note: (expiration, token expiry, reauth margin, until) — nothing can fall due before ``until``
    # while those three are what they were (Subscriptions.sweep skips it until then).
    quiet: tuple | None = field(default=None, repr=False, compare=False)

    def public(self) -> dict:
        return {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity",
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.application_id,
            "changeType": ",".join(self.change_types),
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": events.graph_datetime(self.expiration),
            "creatorId": self.creator_id,
            "includeResourceData": self.include_resource_data,
            "latestSupportedTlsVersion": self.latest_tls,
            "encryptionCertificate": self.encryption_certificate,
            "encryptionCertificateId": self.encryption_certificate_id,
            "notificationUrlAppId": None,
            "notificationContentType": "application/json",
        }

    def control_view(self) -> dict:
        return self.public() | {"status": self.status, "userId": self.user_id, "tenantId": self.tenant_id,
                                "immutableIds": self.immutable_ids}


def _url(value: object, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 2048:
        raise bad_request(f"{name} is required and must be a URL.", "InvalidRequest")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise bad_request(f"{name} is not a valid URL.", "InvalidRequest") from None
    if parts.scheme == "https" and parts.hostname:
        return value
    if parts.scheme == "http" and parts.hostname in LOOPBACK:  # documented deviation: plain http on loopback
        return value
    raise bad_request(f"{name} must use the HTTPS protocol.", "InvalidRequest")


def _expiry(value: object, now: dt.datetime, max_minutes: int) -> dt.datetime:
    if not isinstance(value, str):
        raise bad_request("expirationDateTime is required.", "InvalidRequest")
    parsed = events._parse_iso(value.strip())
    if parsed is None:
        raise bad_request("expirationDateTime is not a valid DateTimeOffset.", "InvalidRequest")
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    if parsed <= now:
        raise bad_request("Subscription expiration must be in the future.", "InvalidRequest")
    if parsed > now + dt.timedelta(minutes=max_minutes):
        raise bad_request(
            f"Subscription expiration can only be {max_minutes} minutes in the future.", "ExtensionError"
        )
    return max(parsed, now + dt.timedelta(minutes=MIN_MINUTES))


class Subscriptions:
    def __init__(self, emulator, notifier: Notifier, session: requests.Session, *, handshake_timeout: float = 10.0,
                 reauth_margin_minutes: float = 60.0):
        self.em = emulator
        self.notifier = notifier
        self.session = session
        self.handshake_timeout = handshake_timeout
        self.reauth_margin = dt.timedelta(minutes=reauth_margin_minutes)
        self.lock = threading.RLock()
        self.by_id: dict[str, Subscription] = {}
        # The same subscriptions by mailbox, so that a create's conflict check and a
        # change's fan-out look at the few that can match, not at every subscription (tens of thousands when a
        # whole tenant is enrolled). Subscriptions are never taken out of by_id, and neither field changes.
        self._by_user: dict[str, list[Subscription]] = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._sweep_loop, name="emulator-subscriptions", daemon=True)

    # ------------------------------------------------------------ Graph API

    def create(self, caller: Caller, body: object, immutable_ids: bool = False) -> Subscription:
        if not isinstance(body, dict):
            raise bad_request("The request body must be a subscription object.", "InvalidRequest")
        now = self.em.clock()
        change_types = self._change_types(body.get("changeType"))
        user_id, select = self._resource(caller, body.get("resource"))
        if caller.delegated and not self._may_subscribe(caller):
            raise GraphError(403, "ExtensionError",
                             "Operation: Create; Exception: [Status Code: Forbidden; Reason: Access is denied.]")
        notification_url = _url(body.get("notificationUrl"), "notificationUrl")
        lifecycle_url = body.get("lifecycleNotificationUrl")
        if lifecycle_url is not None:
            lifecycle_url = _url(lifecycle_url, "lifecycleNotificationUrl")
        client_state = body.get("clientState")
        if client_state is not None and (not isinstance(client_state, str) or len(client_state) > 128):
            raise bad_request("clientState must be a string of at most 128 characters.", "InvalidRequest")
        include = body.get("includeResourceData", False)
        if not isinstance(include, bool):
            raise bad_request("includeResourceData must be a boolean.", "InvalidRequest")
        cert, cert_id = None, None
        if include:
            if not select:
                raise bad_request("Rich notifications for events require $select in the resource.", "InvalidRequest")
            cert = rich.load_certificate(body.get("encryptionCertificate"))
            cert_id = body.get("encryptionCertificateId")
            if not isinstance(cert_id, str) or not cert_id or len(cert_id) > 128:
                raise bad_request("encryptionCertificateId is required (at most 128 characters).", "InvalidRequest")
        tls = body.get("latestSupportedTlsVersion") or "v1_2"
        if tls not in ("v1_0", "v1_1", "v1_2", "v1_3"):
            raise bad_request("latestSupportedTlsVersion must be v1_0, v1_1, v1_2 or v1_3.", "InvalidRequest")
        expiry = _expiry(body.get("expirationDateTime"), now, MAX_RICH_MINUTES if include else MAX_MINUTES)
        resource = body["resource"]
        with self.lock:
            # Graph refuses a second subscription with the same changeType and resource for the same app (documented
            # for POST /subscriptions); "me/events" names the caller's own mailbox, so two people's are two resources.
            for existing in self._by_user.get(user_id, ()):
                if (existing.status == "active" and existing.application_id == caller.app_id
                        and existing.user_id == user_id and existing.resource.lower() == resource.lower()
                        and existing.change_types == change_types):
                    raise GraphError(409, "Conflict",
                                     f"Subscription Id {existing.id} already exists for the requested combination")
        self._handshake(notification_url)
        if lifecycle_url:
            self._handshake(lifecycle_url)
        sub = Subscription(
            id=str(uuid.uuid4()), resource=resource, change_types=change_types,
            notification_url=notification_url, lifecycle_url=lifecycle_url, expiration=expiry,
            client_state=client_state, include_resource_data=include,
            encryption_certificate=body.get("encryptionCertificate") if include else None,
            encryption_certificate_id=cert_id, cert=cert, latest_tls=tls, application_id=caller.app_id,
            creator_id=caller.user_id if caller.delegated else caller.claims.get("oid", caller.app_id),
            tenant_id=caller.tenant_id, user_id=user_id, select=select, token_exp=caller.token_exp, created=now,
            immutable_ids=immutable_ids, delegated=caller.delegated,
        )
        with self.lock:
            self.by_id[sub.id] = sub
            self._by_user.setdefault(user_id, []).append(sub)
        return sub

    @staticmethod
    def _may_subscribe(caller: Caller) -> bool:
        """Event subscriptions need Calendars.Read (create subscription's permission table: "event | Calendars.Read
        | Calendars.Read | Calendars.Read"; Calendars.ReadBasic is not listed, unlike Mail.ReadBasic for messages)."""
        granted = set(str(caller.claims.get("scp", "")).split()) if caller.delegated else set(
            caller.claims.get("roles") or [])
        return bool(granted & {"Calendars.Read", "Calendars.ReadWrite"})

    def _change_types(self, value: object) -> list[str]:
        if not isinstance(value, str) or not value.strip():
            raise bad_request("changeType is required.", "InvalidRequest")
        types = [t.strip() for t in value.split(",") if t.strip()]
        if not types or any(t not in CHANGE_TYPES for t in types):
            raise bad_request("changeType must be created, updated, deleted or a comma-separated list.",
                              "InvalidRequest")
        return [t for t in CHANGE_TYPES if t in types]

    def _resource(self, caller: Caller, value: object) -> tuple[str, list[str]]:
        if not isinstance(value, str) or len(value) > 2048:
            raise bad_request("resource is required.", "InvalidRequest")
        match = RESOURCE.match(value.strip())
        if not match:
            raise bad_request(f"Resource '{value[:200]}' is not supported for events.", "InvalidRequest")
        me, user_ref, query = match.groups()
        select: list[str] = []
        for part in (query or "").split("&"):
            name, _, raw = part.partition("=")
            if name.lower() == "$select" and raw:
                select = [s.strip() for s in raw.split(",") if s.strip()]
        if me:
            if not caller.delegated:
                raise bad_request("/me request is only valid with delegated authentication flow.", "BadRequest")
            self.em.state.check_mailbox(caller.user_id)
            return caller.user_id, select
        user = self.em.state.get_user(user_ref) or self.em.state.find_user(user_ref)
        if user is None or user["tenant_id"] != caller.tenant_id:
            raise not_found(f"The requested user '{user_ref[:100]}' is invalid.", "ErrorInvalidUser")
        if caller.delegated and user["id"] != caller.user_id:
            raise GraphError(403, "ExtensionError",
                             "Operation: Create; Exception: [Status Code: Forbidden; Reason: Access is denied.]")
        self.em.state.check_mailbox(user["id"])
        if not caller.delegated and not self.em.state.directory.may_read(caller.tenant_id, caller.app_id, user["id"],
                                                                          self._may_subscribe(caller)):
            raise GraphError(403, "ErrorAccessDenied", OUT_OF_SCOPE)
        return user["id"], select

    def _handshake(self, url: str) -> None:
        """POST ?validationToken=… and require 200, text/plain and the decoded token, within the time limit."""
        token = f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
        target = url + ("&" if urlsplit(url).query else "?") + urlencode({"validationToken": token})
        started = time.monotonic()
        try:
            response = self.session.post(
                target, data=b"", headers={"Content-Type": "text/plain; charset=utf-8"},
                timeout=self.handshake_timeout,
            )
        except requests.Timeout:
            self.notifier.record_validation(url, None, time.monotonic() - started, "timeout", "failed")
            raise bad_request("Subscription validation request timed out.", "InvalidRequest") from None
        except requests.RequestException as exc:
            self.notifier.record_validation(url, None, time.monotonic() - started, type(exc).__name__, "failed")
            raise bad_request(
                "Subscription validation request failed. The notification endpoint could not be reached.",
                "InvalidRequest",
            ) from None
        latency = time.monotonic() - started
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        problem = None
        if response.status_code != 200:
            problem = "Notification endpoint must respond with 200 OK to validation request."
        elif content_type != "text/plain":
            problem = "Response must have Content-Type text/plain."
        elif response.text != token:
            problem = "Response must exactly match validationToken query parameter."
        self.notifier.record_validation(url, response.status_code, latency, problem, "failed" if problem else "ok")
        if problem:
            raise bad_request(f"Subscription validation request failed. {problem}", "InvalidRequest")

    def _visible(self, caller: Caller, sub_id: str) -> Subscription:
        with self.lock:
            sub = self.by_id.get(sub_id)
            self._expire_if_due(sub)
        if sub is None or sub.status != "active" or sub.application_id != caller.app_id:
            raise not_found("The object was not found.", "ResourceNotFound")
        if caller.delegated and sub.user_id != caller.user_id:
            raise not_found("The object was not found.", "ResourceNotFound")
        return sub

    def get(self, caller: Caller, sub_id: str) -> Subscription:
        return self._visible(caller, sub_id)

    def list(self, caller: Caller) -> list[Subscription]:
        with self.lock:
            for sub in self.by_id.values():
                self._expire_if_due(sub)
            return [s for s in self.by_id.values() if s.status == "active" and s.application_id == caller.app_id
                    and (not caller.delegated or s.user_id == caller.user_id)]

    def update(self, caller: Caller, sub_id: str, body: object) -> Subscription:
        sub = self._visible(caller, sub_id)
        if not isinstance(body, dict) or not ({"expirationDateTime", "notificationUrl"} & set(body)):
            raise bad_request("The request body must contain expirationDateTime or notificationUrl.", "InvalidRequest")
        now = self.em.clock()
        expiry = sub.expiration
        if "expirationDateTime" in body:
            expiry = _expiry(body["expirationDateTime"], now,
                             MAX_RICH_MINUTES if sub.include_resource_data else MAX_MINUTES)
        url = sub.notification_url
        if "notificationUrl" in body:
            url = _url(body["notificationUrl"], "notificationUrl")
            if url != sub.notification_url:
                self._handshake(url)
        cert, cert_id = sub.cert, sub.encryption_certificate_id
        if sub.include_resource_data and "encryptionCertificate" in body:
            cert = rich.load_certificate(body["encryptionCertificate"])
            cert_id = body.get("encryptionCertificateId", cert_id)
        with self.lock:
            sub.expiration, sub.notification_url, sub.token_exp = expiry, url, caller.token_exp
            if cert is not sub.cert:
                sub.cert, sub.encryption_certificate = cert, body["encryptionCertificate"]
                sub.encryption_certificate_id = cert_id
            sub.reauth_sent.clear()
        return sub

    def delete(self, caller: Caller, sub_id: str) -> None:
        sub = self._visible(caller, sub_id)
        with self.lock:
            sub.status = "deleted"

    def reauthorize(self, caller: Caller, sub_id: str) -> None:
        sub = self._visible(caller, sub_id)
        with self.lock:
            sub.token_exp = caller.token_exp
            sub.reauth_sent = {k for k in sub.reauth_sent if k.startswith("expiry:")}

    # ------------------------------------------------------------ control

    def remove(self, sub_id: str) -> Subscription:
        """Remove a subscription as the service would, sending subscriptionRemoved to its lifecycle URL."""
        with self.lock:
            sub = self.by_id.get(sub_id)
            if sub is None or sub.status != "active":
                raise not_found("The subscription does not exist or is not active.", "ResourceNotFound")
            sub.status = "removed"
        self.lifecycle(sub, "subscriptionRemoved", force=True)
        return sub

    def on_user(self, user_id: str, what: str) -> int:
        """Microsoft removes subscriptions made with a user's tokens when the password changes or the account is
        disabled ("Applications that use app tokens to create subscriptions are not affected"); a deleted account
        takes every subscription on its mailbox. Each removed one gets subscriptionRemoved."""
        with self.lock:
            targets = [s for s in self._by_user.get(user_id, ()) if s.status == "active" and s.user_id == user_id
                       and (what == "deleted" or (s.delegated and what in ("password_changed", "disabled")))]
        for sub in targets:
            with self.lock:
                sub.status = "removed"
            self.lifecycle(sub, "subscriptionRemoved", force=True)
        return len(targets)

    def lifecycle(self, sub: Subscription, event: str, force: bool = False) -> bool:
        """Queue a lifecycle notification; False when the subscription has no lifecycle URL."""
        if not sub.lifecycle_url or (sub.status != "active" and not force):
            return False
        notification = {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": events.graph_datetime(sub.expiration),
            "tenantId": sub.tenant_id,
            "clientState": sub.client_state,
            "lifecycleEvent": event,
        }
        self.notifier.publish(sub.lifecycle_url, "lifecycle", Pending(notification, sub.id))
        return True

    def missed(self, sub_id: str) -> None:
        with self.lock:
            sub = self.by_id.get(sub_id)
        if sub is not None:
            self.lifecycle(sub, "missed")

    def is_active(self, sub_id: str, kind: str = "change") -> bool:
        """Whether a queued notification of ``kind`` may still go out (lifecycle ones outlive removal)."""
        with self.lock:
            sub = self.by_id.get(sub_id)
            self._expire_if_due(sub)
            allowed = ("active", "removed") if kind == "lifecycle" else ("active",)
            return sub is not None and sub.status in allowed

    def is_paused(self, sub_id: str) -> bool:
        """Graph holds change notifications while the subscription's access token is expired ([WH])."""
        with self.lock:
            sub = self.by_id.get(sub_id)
            return sub is not None and sub.status == "active" and sub.token_exp <= self.em.clock()

    def public_all(self) -> list[dict]:
        with self.lock:
            return [s.control_view() for s in self.by_id.values()]

    # ------------------------------------------------------------ change notifications

    def on_change(self, user_id: str, event_id: str, change_type: str, previous_rest_id: str | None = None) -> None:
        """Notify the mailbox's subscriptions of a change to ``event_id`` (immutable). A move between calendars is
        an update of the same item for subscriptions with immutable ids, and a deletion of the old regular id
        plus a creation of the new one for the others (the id changed: outlook-immutable-id)."""
        with self.lock:
            targets = [s for s in self._by_user.get(user_id, ()) if s.user_id == user_id and s.status == "active"]
        for sub in targets:
            if self._expire_if_due(sub):
                continue
            if change_type != "moved":
                changes = [(change_type, event_id if sub.immutable_ids else self.em.state.rest_id(event_id))]
            elif sub.immutable_ids:
                changes = [("updated", event_id)]
            else:
                changes = [("deleted", previous_rest_id or event_id), ("created", self.em.state.rest_id(event_id))]
            for kind, shown_id in changes:
                if kind in sub.change_types:
                    self.notifier.publish(sub.notification_url, "change",
                                          self._notification(sub, user_id, shown_id, kind))

    def _notification(self, sub: Subscription, user_id: str, event_id: str, change_type: str) -> Pending:
        change_key = ""
        resource_json = None
        if change_type != "deleted":
            try:
                item, instance = self.em.state.find(user_id, event_id)
                rendered = events.render(item, instance, self.em.base_url, immutable=sub.immutable_ids)
                change_key = rendered["changeKey"]
                resource_json = rendered
            except GraphError:
                change_type = "deleted"
        notification = {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": events.graph_datetime(sub.expiration),
            "changeType": change_type,
            "resource": f"Users/{user_id}/Events/{event_id}",
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.Event",
                "@odata.id": f"Users/{user_id}/Events/{event_id}",
                "@odata.etag": f'W/"{change_key}"' if change_key else None,
                "id": event_id,
            },
            "clientState": sub.client_state,
            "tenantId": sub.tenant_id,
        }
        if not change_key:
            del notification["resourceData"]["@odata.etag"]
        if not sub.include_resource_data or sub.cert is None:
            return Pending(notification, sub.id)
        payload = {
            "@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#Users('{user_id}')/Events/$entity",
            "@odata.type": "#microsoft.graph.event",
            "@odata.id": f"Users('{user_id}')/Events('{event_id}')",
            "id": event_id,
        }
        if resource_json is not None:
            payload |= events.select(resource_json, sub.select)
        notification["resource"] = f"Users('{user_id}')/Events('{event_id}')"
        notification["resourceData"] = {"@odata.type": "#microsoft.graph.event",
                                        "@odata.id": notification["resource"], "id": event_id}
        notification["encryptedContent"] = rich.encrypt(sub.cert, sub.encryption_certificate_id, payload)
        return Pending(notification, sub.id, (sub.application_id, sub.tenant_id))

    # ------------------------------------------------------------ expiry and reauthorization

    def _expire_if_due(self, sub: Subscription | None) -> bool:
        if sub is not None and sub.status == "active" and sub.expiration <= self.em.clock():
            sub.status = "expired"
        return sub is None or sub.status != "active"

    def sweep(self) -> None:
        """Expire subscriptions and send reauthorizationRequired when a subscription or its token nears expiry."""
        now = self.em.clock()
        due = []
        with self.lock:
            for sub in self.by_id.values():
                quiet = sub.quiet
                if (quiet is not None and now < quiet[3] and sub.status == "active" and quiet[0] == sub.expiration
                        and quiet[1] == sub.token_exp and quiet[2] == self.reauth_margin):
                    continue   # checked before, and nothing falls due yet: a sweep costs the subscriptions due
                if self._expire_if_due(sub):
                    continue
                sub.quiet = self._quiet(sub, now)
                expiry_key = f"expiry:{sub.expiration.isoformat()}"
                token_left = sub.token_exp - now
                # Graph challenges repeatedly while the token nears expiry ([LC]: "every 15 mins" in its
                # last hour); here every 5 minutes from 15 minutes before expiry until held deliveries
                # would be dropped (4 h after it).
                token_key = f"token:{sub.token_exp.isoformat()}:{int(token_left.total_seconds() // 300)}"
                token_due = -HELD_DELIVERY_LIMIT < token_left <= TOKEN_CHALLENGE_WINDOW
                expiring = sub.expiration - now <= self.reauth_margin and expiry_key not in sub.reauth_sent
                token_expiring = token_due and token_key not in sub.reauth_sent
                if expiring or token_expiring:  # one challenge covers both reasons
                    if sub.expiration - now <= self.reauth_margin:
                        sub.reauth_sent.add(expiry_key)
                    if token_due:
                        sub.reauth_sent.add(token_key)
                    due.append(sub)
        for sub in due:
            self.lifecycle(sub, "reauthorizationRequired")

    def _quiet(self, sub: Subscription, now: dt.datetime) -> tuple | None:
        """Until when the sweep may skip ``sub``: its expiry, the start of its reauthorization margin and the start
        of its token's challenge window, whichever comes first; None while it is in that window (challenged every
        5 minutes there) or about to be challenged now."""
        until = [sub.expiration]
        margin_from = sub.expiration - self.reauth_margin
        if now < margin_from:
            until.append(margin_from)
        elif f"expiry:{sub.expiration.isoformat()}" not in sub.reauth_sent:
            return None
        window_from = sub.token_exp - TOKEN_CHALLENGE_WINDOW
        if now < window_from:
            until.append(window_from)
        elif sub.token_exp - now > -HELD_DELIVERY_LIMIT:
            return None
        return (sub.expiration, sub.token_exp, self.reauth_margin, min(until))

    def _sweep_loop(self) -> None:
        while not self.stopped.wait(0.1):
            try:
                self.sweep()
            except Exception:  # keep sweeping; a bug here must not silently stop expiry
                log.exception("emulator: subscription sweep failed")

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
