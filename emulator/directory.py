"""The directory half of the emulated tenant: `/users/delta`, groups and their transitive members, and the
per-app mailbox scopes Exchange Online's RBAC for Applications (or an application access policy) imposes.

Every change to a user (created, disabled, guest, deleted) bumps a sequence number; a delta token is the
tenant and the sequence it was issued at, so a round returns each user changed since then once, in their
latest state, and a deleted one as `{"id", "@removed": {"reason": "changed"}}` (a soft delete, as Graph
reports it for 30 days). Paging follows Graph: `@odata.nextLink` while more remain, then `@odata.deltaLink`.
"""

from __future__ import annotations

import base64
import json
import threading
from collections import OrderedDict
from collections.abc import Callable

from emulator.errors import GraphError, bad_request

DEFAULT_PAGE = 100     # users/delta pages; the caller's `Prefer: odata.maxpagesize` may lower or raise it
MAX_PAGE = 999
ROUNDS_KEPT = 64      # delta rounds whose page order is remembered (a round being paged through)
USER_FIELDS = ("id", "displayName", "mail", "userPrincipalName", "accountEnabled", "userType")


def user_json(user: dict) -> dict:
    return {"id": user["id"], "displayName": user.get("display_name"), "mail": user.get("mail"),
            "userPrincipalName": user.get("user_principal_name"),
            "accountEnabled": user.get("account_enabled", True), "userType": user.get("user_type", "Member"),
            "givenName": user.get("given_name"), "surname": user.get("surname"), "jobTitle": user.get("job_title")}


def _token(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def _untoken(raw: str) -> dict:
    try:
        data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, TypeError):
        data = None
    if not isinstance(data, dict):
        raise bad_request("The delta token is not valid.", "Request_BadRequest")
    return data


class Directory:
    """Change log of users, groups and mailbox scopes; safe to share between request threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seq = 0
        self.changed: dict[str, tuple[int, str]] = {}   # user id -> (seq of last change, tenant)
        self.removed: dict[str, dict] = {}              # user id -> the user as last seen (deleted ones)
        self.groups: dict[str, dict] = {}               # group id -> {id, tenant_id, display_name, members: set}
        # (tenant, app id) -> (kind, user ids): "access_policy" restricts what the Entra grant allows to these
        # mailboxes; "rbac" (RBAC for Applications) grants these mailboxes on its own, in addition to the Entra grant.
        self.scopes: dict[tuple[str, str], tuple[str, set[str]]] = {}
        self._rounds: OrderedDict[tuple[str, int, int], list[str]] = OrderedDict()   # (tenant, since, upto)

    # ------------------------------------------------------------ change log

    def touch(self, user: dict) -> None:
        with self.lock:
            self.seq += 1
            self.changed[user["id"]] = (self.seq, user["tenant_id"])

    def forget(self, user: dict) -> None:
        with self.lock:
            self.seq += 1
            self.changed[user["id"]] = (self.seq, user["tenant_id"])
            self.removed[user["id"]] = dict(user)
            for group in self.groups.values():
                group["members"].discard(user["id"])

    def delta_page(self, tenant_id: str, get_user: Callable[[str], dict | None], live_ids: Callable[[str], list[str]],
                   token: str | None, skip: str | None, page_size: int, base_url: str,
                   select: list[str] | None) -> dict:
        """One page of `/users/delta`: from scratch (no token), from a delta token, or a `$skiptoken` page.

        A round's order is fixed when its first page is asked for (the users as of the sequence ``upto`` its
        tokens carry) and kept for its later pages, so a page costs what is on it, not the whole directory:
        ``live_ids(tenant)`` lists the tenant's users once per round, ``get_user`` reads only the page's."""
        if skip:
            state = _untoken(skip)
            since, upto, offset = int(state.get("since", 0)), int(state.get("upto", 0)), int(state.get("offset", 0))
            if state.get("tenant") != tenant_id:
                raise bad_request("The skip token belongs to another tenant.", "Request_BadRequest")
        else:
            since = 0
            if token:
                state = _untoken(token)
                if state.get("tenant") != tenant_id:
                    raise bad_request("The delta token belongs to another tenant.", "Request_BadRequest")
                since = int(state.get("seq", 0))
            with self.lock:
                upto, offset = self.seq, 0
        ordered = self._round(tenant_id, since, upto, live_ids)
        values = []
        for uid in ordered[offset:offset + page_size]:
            user = get_user(uid)
            if user is not None and user["tenant_id"] == tenant_id:
                entry = user_json(user)
                if select:
                    entry = {k: v for k, v in entry.items() if k in select or k == "id"}
                values.append(entry)
            elif since and uid in self.removed:
                values.append({"id": uid, "@removed": {"reason": "changed"}})
        body: dict = {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users", "value": values}
        if offset + page_size < len(ordered):
            body["@odata.nextLink"] = f"{base_url}?$skiptoken=" + _token(
                {"tenant": tenant_id, "since": since, "upto": upto, "offset": offset + page_size})
        else:
            body["@odata.deltaLink"] = f"{base_url}?$deltatoken=" + _token({"tenant": tenant_id, "seq": upto})
        return body

    def _round(self, tenant_id: str, since: int, upto: int, live_ids: Callable[[str], list[str]]) -> list[str]:
        """The user ids of one delta round, in page order: from scratch every live user (none of the deleted),
        else each user changed in (since, upto] once. Computed on the round's first page, then remembered."""
        key = (tenant_id, since, upto)
        with self.lock:
            ordered = self._rounds.get(key)
            if ordered is not None:
                self._rounds.move_to_end(key)
                return ordered
            if since:
                ordered = [uid for _, uid in sorted((seq, uid) for uid, (seq, tenant) in self.changed.items()
                                                    if tenant == tenant_id and since < seq <= upto)]
        if not since:
            ordered = sorted(live_ids(tenant_id))
        with self.lock:
            self._rounds[key] = ordered
            while len(self._rounds) > ROUNDS_KEPT:
                self._rounds.popitem(last=False)
        return ordered

    # ------------------------------------------------------------ groups

    def add_group(self, tenant_id: str, group_id: str, display_name: str) -> dict:
        with self.lock:
            if group_id in self.groups:
                raise GraphError(409, "Conflict", "A group with this id already exists.")
            group = {"id": group_id, "tenant_id": tenant_id, "display_name": display_name, "members": set()}
            self.groups[group_id] = group
            return self.group_json(group)

    def set_members(self, group_id: str, add: list[str], remove: list[str]) -> dict:
        with self.lock:
            group = self.groups.get(group_id)
            if group is None:
                raise GraphError(404, "Request_ResourceNotFound", f"Resource '{group_id}' does not exist.")
            group["members"].update(add)
            group["members"].difference_update(remove)
            return self.group_json(group)

    @staticmethod
    def group_json(group: dict) -> dict:
        return {"id": group["id"], "tenant_id": group["tenant_id"], "displayName": group["display_name"],
                "members": sorted(group["members"])}

    def transitive_members(self, tenant_id: str, group_id: str) -> list[str]:
        """Member ids (users and nested groups), flattened, each once, in a stable order."""
        with self.lock:
            group = self.groups.get(group_id)
            if group is None or group["tenant_id"] != tenant_id:
                raise GraphError(404, "Request_ResourceNotFound",
                                 f"Resource '{group_id[:64]}' does not exist or one of its queried reference-property "
                                 "objects are not present.")
            seen: list[str] = []
            pending = sorted(group["members"])
            while pending:
                member = pending.pop(0)
                if member in seen or member == group_id:
                    continue
                seen.append(member)
                nested = self.groups.get(member)
                if nested is not None:
                    pending.extend(sorted(nested["members"]))
            return seen

    def is_group(self, member_id: str) -> dict | None:
        with self.lock:
            group = self.groups.get(member_id)
            return self.group_json(group) if group else None

    # ------------------------------------------------------------ mailbox scopes (RBAC for Applications)

    def set_scope(self, tenant_id: str, app_id: str, user_ids: list[str] | None, kind: str = "access_policy") -> None:
        """Scope the app's mailbox access in the tenant (None: no scope)."""
        with self.lock:
            key = (tenant_id.lower(), app_id.lower())
            if user_ids is None:
                self.scopes.pop(key, None)
            else:
                self.scopes[key] = (kind, {u.lower() for u in user_ids})

    def may_read(self, tenant_id: str, app_id: str, user_id: str, entra_grant: bool) -> bool:
        """Whether an app token may read a mailbox: Exchange's answer from the Entra grant and the scopes. RBAC
        for Applications adds to the Entra grant, so a tenant-wide Entra grant defeats an RBAC scope; an
        application access policy restricts the Entra grant."""
        with self.lock:
            kind, allowed = self.scopes.get((tenant_id.lower(), app_id.lower()), (None, set()))
        inside = user_id.lower() in allowed
        if kind == "rbac":
            return entra_grant or inside
        if kind == "access_policy":
            return entra_grant and inside
        return entra_grant
