"""The emulated tenants, users and calendars, held in memory behind one lock."""

from __future__ import annotations

import datetime as dt
import re
import threading
import uuid
from collections.abc import Callable

from emulator import events
from emulator.errors import GraphError, bad_request, not_found
from emulator.events import Instance, Item
from emulator.zones import zone

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
Listener = Callable[[str, str, str], None]  # (user_id, event_id, change_type)


def item_not_found() -> GraphError:
    return not_found("The specified object was not found in the store.", "ErrorItemNotFound")


class State:
    """Tenants, users and their calendar items; also the Directory the identity half reads."""

    def __init__(self, clock: Callable[[], dt.datetime]):
        self.clock = clock
        self.lock = threading.RLock()
        self._tenants: dict[str, dict] = {}
        self.users_by_id: dict[str, dict] = {}
        self.items: dict[str, dict[str, Item]] = {}
        self.tombstones: dict[str, dict[str, int]] = {}  # user -> item id -> seq of deletion
        self.seq = 0
        self.listeners: list[Listener] = []

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
            user = {
                "id": user_id, "tenant_id": tenant_id, "display_name": display, "mail": mail,
                "user_principal_name": upn, "time_zone": time_zone,
                "given_name": display.split(" ")[0], "surname": display.split(" ")[-1] if " " in display else None,
                "job_title": data.get("job_title") if isinstance(data.get("job_title"), str) else None,
            }
            self.users_by_id[user_id] = user
            self.items[user_id] = {}
            self.tombstones[user_id] = {}
            return dict(user)

    def require_user(self, user_id: str) -> dict:
        user = self.get_user(user_id)
        if user is None:
            raise not_found(f"The requested user '{user_id}' is invalid.", "ErrorInvalidUser")
        return user

    # ------------------------------------------------------------ calendar items

    def _bump(self, item: Item) -> None:
        self.seq += 1
        item.seq = self.seq

    def _notify(self, user_id: str, event_id: str, change_type: str) -> None:
        for listener in list(self.listeners):
            listener(user_id, event_id, change_type)

    def create_event(self, user_id: str, data: dict) -> Item:
        user = self.require_user(user_id)
        fields = events.parse_fields(data, partial=False)
        with self.lock:
            item = events.new_item(user, fields, self.clock())
            self._bump(item)
            self.items[user_id][item.id] = item
        self._notify(user_id, item.id, "created")
        return item

    def find(self, user_id: str, event_id: str) -> tuple[Item, Instance | None]:
        """The stored item for an id, and the resolved instance when the id names an occurrence."""
        self.require_user(user_id)
        with self.lock:
            calendar = self.items[user_id]
            if event_id in calendar:
                item = calendar[event_id]
                return item, None
            parsed = events.parse_occurrence_id(event_id)
            if parsed and parsed[0] in calendar:
                item = calendar[parsed[0]]
                if events.is_occurrence_of(item, parsed[1]):
                    return item, events.occurrence(item, parsed[1])
        raise item_not_found()

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
                self.tombstones[user_id][item.id] = self.seq
            else:
                item.deleted.add(instance.key)
                item.exceptions.pop(instance.key, None)
                self._bump(item)
        self._notify(user_id, event_id, "deleted")

    def calendar(self, user_id: str, start: dt.datetime, end: dt.datetime) -> list[Instance]:
        """The user's calendarView in the window: singles, occurrences and exceptions, by start time."""
        self.require_user(user_id)
        if end <= start:
            raise bad_request("endDateTime must be after startDateTime.", "ErrorInvalidParameter")
        if start.year < 1900 or end.year > 8999 or end - start > dt.timedelta(days=3660):
            raise bad_request("The calendar window must lie within 1900..8999 and span at most ten years.",
                              "ErrorInvalidParameter")
        with self.lock:
            found = [inst for item in self.items[user_id].values() for inst in events.instances(item, start, end)]
        found.sort(key=lambda inst: (inst.start_utc, inst.id))
        return found
