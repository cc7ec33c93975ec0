"""calendarView delta: rounds of pages, @odata.nextLink / @odata.deltaLink, and @removed entries, per calendar.

A delta token remembers the window and a snapshot (instance id -> changeKey) taken when its round began.
The next round returns instances that are new or changed since that snapshot and ``@removed`` entries for
those that left it, plus Graph's documented quirk: items changed or deleted *outside* the window also show
up under ``@removed``. Tokens and rounds belong to one (user, calendar): each calendar of a mailbox is tracked on
its own, as Graph documents. A round or token whose calendar was deleted answers 404 ErrorItemNotFound. Tokens can
be invalidated per user from the control API.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from urllib.parse import urlencode

from emulator import events
from emulator.errors import GraphError, bad_request
from emulator.state import State

MAX_TOKENS = 50_000
MAX_ROUNDS = 5_000


@dataclass
class DeltaToken:
    user_id: str
    calendar_id: str  # the entry in user_id's calendar list
    start: dt.datetime
    end: dt.datetime
    snapshot: dict[str, str]  # instance id -> changeKey
    items: set[str]  # stored item ids seen in the window
    seq: int
    epoch: int
    rest_ids: dict[str, str] = field(default_factory=dict)  # instance id -> its regular id when the token was made


@dataclass
class Round:
    user_id: str
    calendar_id: str
    start: dt.datetime
    end: dt.datetime
    entries: list[dict]
    delta_token: str
    epoch: int
    page_size: int | None = None
    served: set[int] = field(default_factory=set)


class DeltaEngine:
    def __init__(self, state: State):
        self.state = state
        self._lock = threading.Lock()
        self.tokens: OrderedDict[str, DeltaToken] = OrderedDict()
        self.rounds: OrderedDict[str, Round] = OrderedDict()
        self.epochs: dict[str, tuple[int, str]] = {}  # user -> (epoch, mode) after invalidation
        # Reported by developers, not documented by Microsoft: "No indication is given for a deleted occurrence"
        # in calendarView delta (microsoft-graph-docs PR #4501, found by experiment). Off unless a test asks.
        self.silent_occurrence_removal = False
        self.injected: dict[tuple[str, str], list] = {}  # (user, calendar) -> raw entries for its next round

    def invalidate(self, user_id: str, mode: str = "gone") -> None:
        """Make every token issued so far for ``user_id`` fail: 'gone' (410 + Location) or 'expired'."""
        if mode not in ("gone", "expired"):
            raise bad_request("'mode' must be 'gone' or 'expired'.", "InvalidRequest")
        self.state.require_user(user_id)
        with self._lock:
            epoch, _ = self.epochs.get(user_id, (0, mode))
            self.epochs[user_id] = (epoch + 1, mode)

    def _epoch(self, user_id: str) -> int:
        return self.epochs.get(user_id, (0, ""))[0]

    def _check_epoch(self, user_id: str, epoch: int, link_base: str, start: dt.datetime, end: dt.datetime) -> None:
        current, mode = self.epochs.get(user_id, (0, ""))
        if epoch >= current:
            return
        if mode == "gone":
            window = urlencode({"startDateTime": _iso(start), "endDateTime": _iso(end)})
            raise GraphError(
                410, "resyncRequired", "The delta token is no longer valid; the app must reset the sync state.",
                {"Location": f"{link_base}?{window}&$deltatoken="},
            )
        raise GraphError(410, "SyncStateNotFound", "The sync state generation is not found. Please re-sync.")

    def start_round(
        self, user_id: str, calendar_id: str, start: dt.datetime, end: dt.datetime, base_url: str, out_tz: str | None
    ) -> str:
        """An initial (full) round of one calendar for the window; returns the round id."""
        return self._make_round(user_id, calendar_id, start, end, None, base_url, out_tz)

    def continue_round(self, delta_token: str, base_url: str, out_tz: str | None, link_base: str) -> str:
        """A round of changes since ``delta_token``; returns the round id."""
        with self._lock:
            token = self.tokens.get(delta_token)
        if token is None:
            raise bad_request("The delta token is malformed or unknown.", "SyncStateInvalid")
        self._check_epoch(token.user_id, token.epoch, link_base, token.start, token.end)
        return self._make_round(token.user_id, token.calendar_id, token.start, token.end, token, base_url, out_tz)

    def _make_round(
        self, user_id: str, calendar_id: str, start: dt.datetime, end: dt.datetime, since: DeltaToken | None,
        base_url: str, out_tz: str | None,
    ) -> str:
        state = self.state
        with state.lock:
            source = state.source(state.get_calendar(user_id, calendar_id))
            current = state.calendar(user_id, start, end, calendar_id)
            seq = state.seq
            entries = []
            snapshot = {inst.id: inst.change_key for inst in current}
            rest_ids = {inst.id: _rest_id(inst) for inst in current}
            items = {inst.item.id for inst in current}
            for inst in current:
                if since is None or since.snapshot.get(inst.id) != inst.change_key:
                    entries.append(_entry(events.render(inst.item, inst, base_url, out_tz), inst))
            if since is not None:
                # A regular id gone from this calendar is reported under the id the client knew (the item may
                # have moved to another calendar, where it has a new one).
                known = lambda iid: since.rest_ids.get(iid) or state.rest_id(iid)  # noqa: E731
                gone = [iid for iid in since.snapshot if iid not in snapshot and not self._silent(iid)]
                entries.extend(_removed(iid, known(iid)) for iid in gone)
                seen = set(since.snapshot) | set(snapshot)
                for item in state.calendar_items(source):  # changed outside the window
                    if item.seq > since.seq and item.id not in items and item.id not in seen:
                        entries.append(_removed(item.id, item.rest_id))
                for item_id, deleted_seq in state.calendar_tombstones(source).items():
                    if deleted_seq > since.seq and item_id not in since.items and item_id not in seen:
                        entries.append(_removed(item_id, state.rest_id(item_id)))
        with self._lock:
            entries.extend(_raw(e) for e in self.injected.pop((user_id, calendar_id), []))
        token = DeltaToken(user_id, calendar_id, start, end, snapshot, items, seq, self._epoch(user_id), rest_ids)
        token_id = secrets.token_urlsafe(24)
        round_id = secrets.token_urlsafe(18)
        with self._lock:
            self.tokens[token_id] = token
            self.rounds[round_id] = Round(user_id, calendar_id, start, end, entries, token_id, token.epoch)
            while len(self.tokens) > MAX_TOKENS:
                self.tokens.popitem(last=False)
            while len(self.rounds) > MAX_ROUNDS:
                self.rounds.popitem(last=False)
        return round_id

    def inject(self, user_id: str, calendar_id: str | None, entries: object) -> int:
        """Raw entries (anything JSON: unknown types, nulls, oversized events) for the next round of a calendar
        (the default one when None), to see what a client makes of what a real tenant may send."""
        calendar = self.state.get_calendar(user_id, calendar_id)
        if not isinstance(entries, list) or not 1 <= len(entries) <= 1000:
            raise bad_request("'entries' must be a list of 1 to 1,000 raw entries.", "InvalidRequest")
        with self._lock:
            self.injected.setdefault((calendar.user_id, calendar.id), []).extend(entries)
        return len(entries)

    def _silent(self, instance_id: str) -> bool:
        """With the quirk on, an occurrence gone from a series that still exists is not reported (call under the
        state's lock)."""
        parsed = events.parse_occurrence_id(instance_id)
        return (self.silent_occurrence_removal and parsed is not None
                and any(parsed[0] in items for items in self.state.items.values()))

    def page(self, skiptoken: str, page_size: int | None, link_base: str, default_size: int = 10,
             immutable: bool = True) -> tuple[list[dict], str | None, str | None]:
        """(entries, next skiptoken or None, delta token when this is the last page).

        A page size given on the round's first request sticks to the round unless a later request names another.
        """
        round_id, _, offset_text = skiptoken.rpartition(".")
        with self._lock:
            rnd = self.rounds.get(round_id)
        if rnd is None or not offset_text.isdigit():
            raise bad_request("The skip token is malformed or unknown.", "SyncStateInvalid")
        self.state.source(self.state.get_calendar(rnd.user_id, rnd.calendar_id))  # 404 once the calendar is gone
        self._check_epoch(rnd.user_id, rnd.epoch, link_base, rnd.start, rnd.end)
        offset = int(offset_text)
        if page_size is not None and offset == 0:
            rnd.page_size = page_size
        page_size = page_size or rnd.page_size or default_size
        chunk = [_with_ids(entry, immutable) for entry in rnd.entries[offset:offset + page_size]]
        end = offset + page_size
        if end < len(rnd.entries):
            return chunk, f"{round_id}.{end}", None
        return chunk, None, rnd.delta_token

    def round_owner(self, skiptoken: str) -> tuple[str, str] | None:
        """(user, calendar) a round's skip token belongs to, if known."""
        with self._lock:
            rnd = self.rounds.get(skiptoken.rpartition(".")[0])
        return (rnd.user_id, rnd.calendar_id) if rnd else None

    def token_owner(self, delta_token: str) -> tuple[str, str] | None:
        """(user, calendar) a delta token belongs to, if known."""
        with self._lock:
            token = self.tokens.get(delta_token)
        return (token.user_id, token.calendar_id) if token else None


def _rest_id(inst: events.Instance) -> str:
    return events.occurrence_id(inst.item.rest_id, inst.key) if inst.key else inst.item.rest_id


def _entry(event: dict, inst: events.Instance) -> dict:
    """A delta entry, remembering its regular ids for a page asked without `IdType="ImmutableId"`."""
    rest = {"id": _rest_id(inst)}
    if event.get("seriesMasterId"):
        rest["seriesMasterId"] = inst.item.rest_id
    return {"@odata.type": "#microsoft.graph.event"} | event | {"_rest": rest}


def _removed(event_id: str, rest_id: str) -> dict:
    return {"@odata.type": "#microsoft.graph.event", "id": event_id, "@removed": {"reason": "deleted"},
            "_rest": {"id": rest_id}}


def _raw(entry: object) -> object:
    return entry | {"_rest": {}} if isinstance(entry, dict) else entry


def _with_ids(entry: object, immutable: bool) -> object:
    """The entry as served: immutable ids, or the regular ones it had when its round was made."""
    if not isinstance(entry, dict):
        return entry
    served = {k: v for k, v in entry.items() if k != "_rest"}
    return served if immutable else served | entry["_rest"]


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
