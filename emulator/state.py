"""The emulated tenants, users, their calendars and calendar items, held in memory behind one lock."""

from __future__ import annotations

import datetime as dt
import re
import threading
import uuid
from collections.abc import Callable

from emulator import events
from emulator.calendars import Calendar, new_calendar_id, parse_color, parse_name
from emulator.directory import Directory
from emulator.errors import GraphError, bad_request, not_found
from emulator.events import Instance, Item
from emulator.zones import zone

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
Listener = Callable[..., None]  # (user_id, event_id, change_type, previous_rest_id=None)


# Why Graph cannot read a user's mailbox, and what it answers (a directory read, /me or /users/{id}, still works).
MAILBOX_STATES: dict[str, tuple[int, str, str]] = {
    # Guests and accounts without an Exchange Online licence ("This error means that the target user is missing
    # an Office 365 license", Microsoft Q&A), inactive or soft-deleted mailboxes:
    "no_license": (404, "MailboxNotEnabledForRESTAPI",
                   "The mailbox is either inactive, soft-deleted, or is hosted on-premise."),
    "guest": (404, "MailboxNotEnabledForRESTAPI",
              "The mailbox is either inactive, soft-deleted, or is hosted on-premise."),
    # A mailbox on a dedicated Exchange server (Microsoft KB 4462988: HTTP 404, this code or the next one):
    "on_premises": (404, "MailboxNotEnabledForRESTAPI", "REST API is not yet supported for this mailbox."),
    "not_supported": (404, "MailboxNotSupportedForRESTAPI", "REST API is not yet supported for this mailbox."),
    "invalid_user": (404, "ErrorInvalidUser", "The requested user is invalid."),
    # Outside an application access policy's scope ("Access to OData is disabled."), or a disabled account:
    "access_denied": (403, "ErrorAccessDenied", "Access to OData is disabled."),
    "disabled": (403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."),
}


def item_not_found() -> GraphError:
    return not_found("The specified object was not found in the store.", "ErrorItemNotFound")


class State:
    """Tenants, users and their calendar items; also the Directory the identity half reads."""

    def __init__(self, clock: Callable[[], dt.datetime]):
        self.clock = clock
        self.lock = threading.RLock()
        self._tenants: dict[str, dict] = {}
        self.users_by_id: dict[str, dict] = {}
        self.calendars: dict[str, dict[str, Calendar]] = {}  # user -> calendar id -> calendar (own and copies)
        self.items: dict[str, dict[str, Item]] = {}  # owner -> item id -> item, whichever calendar holds it
        self.tombstones: dict[str, dict[str, tuple[int, str]]] = {}  # owner -> item id -> (seq of deletion, calendar)
        self.rest_ids: dict[str, str] = {}  # an item's current regular id -> its immutable id (any owner)
        self.deleted_rest_ids: dict[str, str] = {}  # immutable id -> the regular id it had when deleted
        self.mailbox_states: dict[str, str] = {}  # user -> why Graph cannot read the mailbox (MAILBOX_STATES)
        self.seq = 0
        self.listeners: list[Listener] = []
        self.directory = Directory()
        self.user_listeners: list[Callable[[str, str], None]] = []   # (user id, what happened)

    # ------------------------------------------------------------ directory (identity contract)

    def get_user(self, user_id: str) -> dict | None:
        with self.lock:
            user = self.users_by_id.get(user_id.lower()) if isinstance(user_id, str) else None
            return dict(user) if user else None

    def find_user(self, login: str) -> dict | None:
        if not isinstance(login, str):
            return None
        login = login.strip().lower()
        with self.lock:
            for user in self.users_by_id.values():
                if login in (user["mail"].lower(), user["user_principal_name"].lower()):
                    return dict(user)
        return None

    def tenants(self) -> list[dict]:
        with self.lock:
            return [dict(t) for t in self._tenants.values()]

    def users(self) -> list[dict]:
        with self.lock:
            return [dict(u) for u in self.users_by_id.values()]

    def user_ids(self, tenant_id: str) -> list[str]:
        """The ids of a tenant's users (no copies of them)."""
        with self.lock:
            return [uid for uid, user in self.users_by_id.items() if user["tenant_id"] == tenant_id]

    # ------------------------------------------------------------ tenants and users

    def add_tenant(self, data: dict) -> dict:
        if not isinstance(data, dict):
            raise bad_request("The request body must be a JSON object.", "InvalidRequest")
        tenant_id = data.get("id") or str(uuid.uuid4())
        if not isinstance(tenant_id, str) or not GUID.match(tenant_id):
            raise bad_request("'id' must be a GUID.", "InvalidRequest")
        tenant_id = tenant_id.lower()
        name = data.get("display_name", "Contoso")
        if not isinstance(name, str) or len(name) > 256:
            raise bad_request("'display_name' must be a string.", "InvalidRequest")
        domain = data.get("domain") or f"{re.sub(r'[^a-z0-9]', '', name.lower()) or 'tenant'}.onmicrosoft.com"
        with self.lock:
            if tenant_id in self._tenants:
                raise GraphError(409, "Conflict", "A tenant with this id already exists.")
            tenant = {"id": tenant_id, "display_name": name, "domain": domain}
            self._tenants[tenant_id] = tenant
            return dict(tenant)

    def add_user(self, data: dict) -> dict:
        if not isinstance(data, dict):
            raise bad_request("The request body must be a JSON object.", "InvalidRequest")
        with self.lock:
            tenant_id = data.get("tenant_id")
            if tenant_id is None and len(self._tenants) == 1:
                tenant_id = next(iter(self._tenants))
            tenant_id = tenant_id.lower() if isinstance(tenant_id, str) else tenant_id
            if tenant_id not in self._tenants:
                raise bad_request("'tenant_id' must name an existing tenant.", "InvalidRequest")
            user_id = data.get("id") or str(uuid.uuid4())
            if not isinstance(user_id, str) or not GUID.match(user_id):
                raise bad_request("'id' must be a GUID.", "InvalidRequest")
            user_id = user_id.lower()
            if user_id in self.users_by_id:
                raise GraphError(409, "Conflict", "A user with this id already exists.")
            mail = data.get("mail")
            if not isinstance(mail, str) or not re.fullmatch(r"[^@\s]+@[^@\s]+", mail) or len(mail) > 320:
                raise bad_request("'mail' must be an email address.", "InvalidRequest")
            upn = data.get("user_principal_name") or mail
            display = data.get("display_name") or mail.split("@")[0]
            time_zone = data.get("time_zone") or "UTC"
            for name, value in (("user_principal_name", upn), ("display_name", display), ("time_zone", time_zone)):
                if not isinstance(value, str) or len(value) > 256:
                    raise bad_request(f"'{name}' must be a string.", "InvalidRequest")
            try:
                zone(time_zone)
            except ValueError:
                raise bad_request("'time_zone' is not a known time zone.", "InvalidRequest") from None
            if self.find_user(mail) or self.find_user(upn):
                raise GraphError(409, "Conflict", "A user with this mail or userPrincipalName already exists.")
            user_type = data.get("user_type", "Member")
            if user_type not in ("Member", "Guest"):
                raise bad_request("'user_type' must be Member or Guest.", "InvalidRequest")
            roles = data.get("roles", [])
            if not isinstance(roles, list) or not all(isinstance(r, str) and GUID.match(r) for r in roles):
                raise bad_request("'roles' must be a list of directory role template ids.", "InvalidRequest")
            user = {
                "id": user_id, "tenant_id": tenant_id, "display_name": display, "mail": mail,
                "user_principal_name": upn, "time_zone": time_zone,
                "account_enabled": bool(data.get("account_enabled", True)), "user_type": user_type,
                "roles": [r.lower() for r in roles],
                "given_name": display.split(" ")[0], "surname": display.split(" ")[-1] if " " in display else None,
                "job_title": data.get("job_title") if isinstance(data.get("job_title"), str) else None,
            }
            self.users_by_id[user_id] = user
            default = Calendar(new_calendar_id(), user_id, "Calendar", events.new_change_key(), is_default=True)
            self.calendars[user_id] = {default.id: default}
            self.items[user_id] = {}
            self.tombstones[user_id] = {}
            if user_type == "Guest":
                self.mailbox_states[user_id] = "guest"
            elif data.get("licensed", True) is False:
                self.mailbox_states[user_id] = "no_license"
            self.directory.touch(user)
            return dict(user)

    def update_user(self, user_id: str, data: object) -> dict:
        """Change a user's directory fields (account_enabled, user_type, roles, display_name) or password."""
        if not isinstance(data, dict):
            raise bad_request("The request body must be a JSON object.", "InvalidRequest")
        with self.lock:
            user = self.users_by_id.get(user_id.lower()) if isinstance(user_id, str) else None
            if user is None:
                raise not_found(f"The requested user '{str(user_id)[:64]}' is invalid.", "ErrorInvalidUser")
            if "account_enabled" in data:
                user["account_enabled"] = bool(data["account_enabled"])
                if user["account_enabled"] and self.mailbox_states.get(user["id"]) == "disabled":
                    del self.mailbox_states[user["id"]]
                elif not user["account_enabled"]:
                    self.mailbox_states.setdefault(user["id"], "disabled")
            if data.get("user_type") in ("Member", "Guest"):
                user["user_type"] = data["user_type"]
            if isinstance(data.get("roles"), list):
                user["roles"] = [str(r).lower() for r in data["roles"]]
            if isinstance(data.get("display_name"), str):
                user["display_name"] = data["display_name"][:256]
            self.directory.touch(user)
            snapshot = dict(user)
        for listener in self.user_listeners:
            listener(snapshot["id"], "disabled" if not snapshot["account_enabled"] else "updated")
        return snapshot

    def delete_user(self, user_id: str) -> None:
        """Delete the account: the directory reports it removed and Graph no longer finds it."""
        with self.lock:
            user = self.users_by_id.pop(user_id.lower(), None) if isinstance(user_id, str) else None
            if user is None:
                raise not_found(f"The requested user '{str(user_id)[:64]}' is invalid.", "ErrorInvalidUser")
            self.directory.forget(user)
        for listener in self.user_listeners:
            listener(user["id"], "deleted")

    def change_password(self, user_id: str) -> dict:
        """The user changes (or an admin resets) their password: listeners revoke grants and drop what Microsoft
        drops with them (subscriptions made with the user's tokens)."""
        user = self.require_user(user_id)
        for listener in self.user_listeners:
            listener(user["id"], "password_changed")
        return user
    def set_working_hours(self, user_id: str, data: object) -> dict:
        """Store a user's Outlook working hours: ``daysOfWeek`` names, ``startTime``/``endTime`` like
        "08:00:00.0000000", ``timeZone.name``; kept as given (Outlook's own users set odd ones too)."""
        if not isinstance(data, dict) or not isinstance(data.get("daysOfWeek"), list) \
                or not all(isinstance(data.get(k), str) for k in ("startTime", "endTime")) \
                or not isinstance(data.get("timeZone"), dict):
            raise bad_request("working hours need daysOfWeek, startTime, endTime and timeZone.", "InvalidRequest")
        with self.lock:
            user = self.require_user(user_id)
            self.users_by_id[user["id"]]["working_hours"] = dict(data)
            return dict(data)

    def set_mailbox_state(self, user_id: str, data: object) -> str:
        """Give a user's mailbox one of MAILBOX_STATES (or "ok"); Graph then answers its mailbox requests so."""
        user = self.require_user(user_id)
        state = data.get("state") if isinstance(data, dict) else None
        if state != "ok" and state not in MAILBOX_STATES:
            raise bad_request(f"'state' must be ok or one of: {', '.join(MAILBOX_STATES)}.", "InvalidRequest")
        with self.lock:
            if state == "ok":
                self.mailbox_states.pop(user["id"], None)
            else:
                self.mailbox_states[user["id"]] = state
        return state

    def check_mailbox(self, user_id: str) -> None:
        """Raise Graph's answer for a mailbox it cannot read."""
        with self.lock:
            state = self.mailbox_states.get(user_id)
        if state is not None:
            status, code, message = MAILBOX_STATES[state]
            raise GraphError(status, code, message)

    def require_user(self, user_id: str) -> dict:
        user = self.get_user(user_id)
        if user is None:
            raise not_found(f"The requested user '{user_id}' is invalid.", "ErrorInvalidUser")
        return user

    # ------------------------------------------------------------ calendars

    def calendars_of(self, user_id: str) -> list[Calendar]:
        """The user's calendar list: own calendars (the default first), then copies others shared with them."""
        self.require_user(user_id)
        with self.lock:
            listed = list(self.calendars[user_id].values())
        return sorted(listed, key=lambda c: (c.shared, not c.is_default))

    def get_calendar(self, user_id: str, calendar_id: str | None = None) -> Calendar:
        """One entry of the user's calendar list (the default when ``calendar_id`` is None); 404 if unknown."""
        self.require_user(user_id)
        with self.lock:
            listed = self.calendars[user_id]
            if calendar_id is None:
                return next(c for c in listed.values() if c.is_default)
            calendar = listed.get(calendar_id) if isinstance(calendar_id, str) else None
        if calendar is None:
            raise item_not_found()
        return calendar

    def source(self, calendar: Calendar) -> Calendar:
        """The calendar holding what a list entry shows: itself, or the owner's calendar for a shared copy."""
        if not calendar.shared:
            return calendar
        with self.lock:
            found = self.calendars.get(calendar.owner_id or "", {}).get(calendar.source_id or "")
        if found is None:
            raise item_not_found()
        return found

    def shared_with(self, calendar: Calendar, user_id: str) -> bool:
        """Whether ``user_id`` lists a copy of the own calendar ``calendar``."""
        with self.lock:
            return any(c.source_id == calendar.id and c.owner_id == calendar.user_id
                       for c in self.calendars.get(user_id, {}).values())

    def _check_unique(self, user_id: str, name: str, keep: str | None = None) -> None:
        for calendar in self.calendars[user_id].values():
            if not calendar.shared and calendar.id != keep and calendar.name.lower() == name.lower():
                raise GraphError(409, "ErrorFolderExists", "A folder with the specified name already exists.")

    def create_calendar(self, user_id: str, data: dict) -> Calendar:
        """A new own calendar, or (with ``owner_user_id``) a copy of a calendar another user shares with this one."""
        if not isinstance(data, dict):
            raise bad_request("The request body must be a JSON object.", "InvalidRequest")
        self.require_user(user_id)
        color = parse_color(data)
        owner_ref = data.get("owner_user_id")
        with self.lock:
            if owner_ref is None:
                name = parse_name(data)
                self._check_unique(user_id, name)
                calendar = Calendar(new_calendar_id(), user_id, name, events.new_change_key(), color=color)
                self.calendars[user_id][calendar.id] = calendar
                return calendar
            return self._share(user_id, owner_ref, data, color)

    def _share(self, user_id: str, owner_ref: object, data: dict, color: str) -> Calendar:
        owner = self.get_user(owner_ref) if isinstance(owner_ref, str) else None
        if owner is None or owner["id"] == user_id:
            raise bad_request("'owner_user_id' must name another existing user.", "InvalidRequest")
        source_id = data.get("calendar_id")
        if source_id is None:
            name = parse_name(data)
            self._check_unique(owner["id"], name)
            source = Calendar(new_calendar_id(), owner["id"], name, events.new_change_key(), color=color)
            self.calendars[owner["id"]][source.id] = source
        else:
            source = self.calendars[owner["id"]].get(source_id) if isinstance(source_id, str) else None
            if source is None or source.shared:
                raise bad_request("'calendar_id' must name one of the owner's own calendars.", "InvalidRequest")
            if self.shared_with(source, user_id):
                raise GraphError(409, "ErrorFolderExists", "This calendar is already shared with the user.")
            name = parse_name(data, required=False) or (owner["display_name"] if source.is_default else source.name)
        copy = Calendar(new_calendar_id(), user_id, name, events.new_change_key(), color=source.color,
                        owner_id=owner["id"], source_id=source.id)
        self.calendars[user_id][copy.id] = copy
        return copy

    def rename_calendar(self, user_id: str, calendar_id: str, data: dict) -> Calendar:
        """Rename a calendar list entry (a new changeKey); a shared copy's name is the recipient's own."""
        name = parse_name(data)
        with self.lock:
            calendar = self.get_calendar(user_id, calendar_id)
            if not calendar.shared:
                self._check_unique(user_id, name, keep=calendar.id)
            calendar.rename(name)
            return calendar

    def delete_calendar(self, user_id: str, calendar_id: str) -> None:
        """Delete an own calendar with its events (notifying ``deleted``), or drop a shared copy from the list."""
        with self.lock:
            calendar = self.get_calendar(user_id, calendar_id)
            if calendar.is_default:
                raise bad_request("The default calendar cannot be deleted.", "ErrorInvalidRequest")
            del self.calendars[user_id][calendar.id]
            gone = [] if calendar.shared else self._drop_calendar(calendar)
        for item_id in gone:
            self._notify(user_id, item_id, "deleted")

    def _drop_calendar(self, calendar: Calendar) -> list[str]:
        owner = calendar.user_id
        gone = [item.id for item in self.items[owner].values() if item.calendar_id == calendar.id]
        for item_id in gone:
            self.rest_ids.pop(self.items[owner][item_id].rest_id, None)
            self.deleted_rest_ids[item_id] = self.items[owner][item_id].rest_id
            del self.items[owner][item_id]
            self.seq += 1
            self.tombstones[owner][item_id] = (self.seq, calendar.id)
        for listed in self.calendars.values():
            for copy in [c for c in listed.values() if c.source_id == calendar.id and c.owner_id == owner]:
                del listed[copy.id]
        return gone

    # ------------------------------------------------------------ calendar items

    def _bump(self, item: Item) -> None:
        self.seq += 1
        item.seq = self.seq

    def _notify(self, user_id: str, event_id: str, change_type: str, previous_rest_id: str | None = None) -> None:
        for listener in list(self.listeners):
            listener(user_id, event_id, change_type, previous_rest_id=previous_rest_id)

    # ------------------------------------------------------------ the two id formats

    def immutable_id(self, event_id: str) -> str:
        """The immutable form of an item or occurrence id given in either format (unknown ids unchanged)."""
        with self.lock:
            if event_id in self.rest_ids:
                return self.rest_ids[event_id]
            parsed = events.parse_occurrence_id(event_id)
            if parsed and parsed[0] in self.rest_ids:
                return events.occurrence_id(self.rest_ids[parsed[0]], parsed[1])
        return event_id

    def rest_id(self, event_id: str) -> str:
        """The regular form of an immutable item or occurrence id, as Graph would give it now (a deleted
        item's is the one it had last)."""
        with self.lock:
            parsed = events.parse_occurrence_id(event_id)
            master, key = parsed if parsed else (event_id, None)
            item = next((i[master] for i in self.items.values() if master in i), None)
            rest = item.rest_id if item else self.deleted_rest_ids.get(master, master)
        return events.occurrence_id(rest, key) if key else rest

    def translate_ids(self, user_id: str, ids: list[str], source: str, target: str) -> list[dict]:
        """translateExchangeIds between ``restId`` and ``restImmutableEntryId`` for items of one mailbox."""
        results = []
        for given in ids:
            immutable = self.immutable_id(given) if source == "restId" else given
            try:
                self.find(user_id, immutable)
            except GraphError:
                results.append({"sourceId": given, "errorDetails": {
                    "code": "ErrorItemNotFound", "message": "The specified object was not found in the store."}})
                continue
            results.append({"sourceId": given,
                            "targetId": immutable if target == "restImmutableEntryId" else self.rest_id(immutable)})
        return results

    def move_event(self, user_id: str, event_id: str, data: object) -> Item:
        """Move an item to another of the owner's own calendars, as Outlook does when it is dragged there: the
        immutable id stays, the regular id changes (a new folder), and it counts as a change."""
        target = data.get("calendar_id") if isinstance(data, dict) else None
        if not isinstance(target, str):
            raise bad_request("'calendar_id' must name one of the user's own calendars.", "InvalidRequest")
        with self.lock:
            item, instance = self.find(user_id, event_id)
            calendar = self.get_calendar(user_id, target)
            if instance is not None or calendar.shared:
                raise bad_request("Only a whole item can move, and only to one of its owner's own calendars.",
                                  "ErrorInvalidRequest")
            if calendar.id == item.calendar_id:
                return item
            previous = item.rest_id
            del self.rest_ids[previous]
            item.calendar_id = calendar.id
            item.generation += 1
            self.rest_ids[item.rest_id] = item.id
            item.touch(self.clock())
            self._bump(item)
        self._notify(user_id, item.id, "moved", previous_rest_id=previous)
        return item

    def event_calendar(self, user_id: str, data: object) -> Calendar:
        """The calendar that holds a new event: ``calendar_id`` of the input (the default when absent)."""
        calendar_id = data.get("calendar_id") if isinstance(data, dict) else None
        if calendar_id is not None and not isinstance(calendar_id, str):
            raise bad_request("'calendar_id' must be a string.", "InvalidRequest")
        return self.source(self.get_calendar(user_id, calendar_id))

    def create_event(self, user_id: str, data: dict) -> Item:
        """Create an event in the user's default calendar or the one ``calendar_id`` names (a shared copy's owner's)."""
        self.require_user(user_id)
        fields = events.parse_fields(data, partial=False)
        with self.lock:
            calendar = self.event_calendar(user_id, data)
            owner = self.users_by_id[calendar.user_id]
            item = events.new_item(owner, fields, self.clock(), calendar.id)
            self._bump(item)
            self.items[owner["id"]][item.id] = item
            self.rest_ids[item.rest_id] = item.id
        self._notify(owner["id"], item.id, "created")
        return item

    @staticmethod
    def _find_in(items: dict[str, Item], event_id: str,
                 calendar_id: str | None = None) -> tuple[Item, Instance | None] | None:
        parsed = events.parse_occurrence_id(event_id)
        item = items.get(event_id) or (items.get(parsed[0]) if parsed else None)
        if item is None or (calendar_id is not None and item.calendar_id != calendar_id):
            return None
        if item.id == event_id:
            return item, None
        if parsed and events.is_occurrence_of(item, parsed[1]):
            return item, events.occurrence(item, parsed[1])
        return None

    def find(self, user_id: str, event_id: str) -> tuple[Item, Instance | None]:
        """The stored item for an id (either format) in the user's mailbox, and the resolved instance when it
        names an occurrence."""
        self.require_user(user_id)
        event_id = self.immutable_id(event_id)
        with self.lock:
            found = self._find_in(self.items[user_id], event_id)
        if found is None:
            raise item_not_found()
        return found

    def find_visible(self, user_id: str, event_id: str) -> tuple[Item, Instance | None]:
        """Like ``find``, also looking in the calendars others share with the user."""
        self.require_user(user_id)
        event_id = self.immutable_id(event_id)
        with self.lock:
            found = self._find_in(self.items[user_id], event_id)
            for copy in self.calendars[user_id].values():
                if found is not None:
                    break
                if copy.shared:
                    found = self._find_in(self.items.get(copy.owner_id or "", {}), event_id, copy.source_id)
        if found is None:
            raise item_not_found()
        return found

    def update_event(self, user_id: str, event_id: str, data: dict) -> tuple[Item, Instance | None]:
        """Update a single event, a whole series, or one occurrence (which becomes an exception)."""
        with self.lock:
            item, instance = self.find(user_id, event_id)
            fields = events.parse_fields(data, partial=True, allow_recurrence=instance is None)
            now = self.clock()
            if instance is None:
                events.apply_fields(item, fields, now)
            else:
                override = {k: v for k, v in fields.items() if k in events.OVERRIDABLE or k == "tz"}
                current = item.exceptions.get(instance.key, {})
                current.update(override)
                current.update(_modified=now, _change_key=events.new_change_key())
                item.exceptions[instance.key] = current
            self._bump(item)
            changed = item.id if instance is None else instance.id
        self._notify(user_id, changed, "updated")
        return self.find(user_id, event_id)

    def delete_event(self, user_id: str, event_id: str) -> None:
        """Delete a single event or series, or one occurrence of a series."""
        with self.lock:
            item, instance = self.find(user_id, event_id)
            if instance is None:
                del self.items[user_id][item.id]
                self.seq += 1
                self.tombstones[user_id][item.id] = (self.seq, item.calendar_id)
                self.rest_ids.pop(item.rest_id, None)
                self.deleted_rest_ids[item.id] = item.rest_id
            else:
                item.deleted.add(instance.key)
                item.exceptions.pop(instance.key, None)
                self._bump(item)
        if instance is None:
            self._notify(user_id, item.id, "deleted")
        else:  # "Removal of a recurring event instance causes only update notification on the SeriesMaster"
            self._notify(user_id, item.id, "updated")

    def calendar_items(self, calendar: Calendar) -> list[Item]:
        """The stored items of an own calendar (call under the lock)."""
        return [item for item in self.items[calendar.user_id].values() if item.calendar_id == calendar.id]

    def calendar_tombstones(self, calendar: Calendar) -> dict[str, int]:
        """Item id -> seq of deletion for items deleted from an own calendar (call under the lock)."""
        return {item_id: seq for item_id, (seq, calendar_id) in self.tombstones[calendar.user_id].items()
                if calendar_id == calendar.id}

    def calendar(self, user_id: str, start: dt.datetime, end: dt.datetime,
                 calendar_id: str | None = None) -> list[Instance]:
        """A calendar's view in the window (the default calendar's unless named): singles, occurrences, exceptions."""
        listing = self.get_calendar(user_id, calendar_id)
        if end <= start:
            raise bad_request("endDateTime must be after startDateTime.", "ErrorInvalidParameter")
        if start.year < 1900 or end.year > 8999 or end - start > dt.timedelta(days=3660):
            raise bad_request("The calendar window must lie within 1900..8999 and span at most ten years.",
                              "ErrorInvalidParameter")
        with self.lock:
            source = self.source(listing)
            found = [inst for item in self.calendar_items(source) for inst in events.instances(item, start, end)]
        found.sort(key=lambda inst: (inst.start_utc, inst.id))
        return found
