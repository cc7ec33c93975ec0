"""What the emulated Slack knows: workspaces, their members, bot tokens, DMs, messages, rate-limit buckets."""

from __future__ import annotations

import secrets
import threading
import time

# Requests a minute per (workspace, method), docs.slack.dev "Rate limits": Tier 3 50+, Tier 4 100+;
# chat.postMessage is special: about one message a second per channel, short bursts allowed.
TIERS = {"users.lookupByEmail": 100, "conversations.open": 50, "oauth.v2.access": 50}
POST_PER_SECOND = 1.0
POST_BURST = 3
# Block Kit limits (docs.slack.dev: blocks reference and the section block).
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_ACTIONS_ELEMENTS = 25
MAX_BUTTON_VALUE = 2000


class Bucket:
    def __init__(self, capacity: float, per_second: float):
        self.capacity, self.per_second = capacity, per_second
        self.level, self.at = capacity, time.monotonic()

    def take(self) -> float | None:
        """None if a request may go now, else the seconds until one may."""
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.at) * self.per_second)
        self.at = now
        if self.level >= 1:
            self.level -= 1
            return None
        return (1 - self.level) / self.per_second


class SlackState:
    def __init__(self):
        self.lock = threading.Lock()
        self.client_id = "1111.2222"
        self.client_secret = "slack-emulator-client-secret"    # noqa: S105 - a public test value
        self.signing_secret = "slack-emulator-signing-secret"  # noqa: S105 - a public test value
        self.interactivity_url: str | None = None
        self.teams: dict[str, dict] = {}            # team id -> {name, status, members: {uid: {...}}}
        self.tokens: dict[str, dict] = {}           # bot token -> {team_id, revoked}
        self.codes: dict[str, dict] = {}            # OAuth code -> {team_id, redirect_uri, scope}
        self.dms: dict[tuple[str, str], str] = {}   # (team, user) -> D channel
        self._dm_users: dict[tuple[str, str], str] = {}   # (team, D channel) -> user: a post names its DM's user
        self.messages: list[dict] = []
        self.responses: list[dict] = []             # what apps posted to a press's response_url
        self.rate_scale = 1.0                       # a control multiplies every limit (tests slow it down)
        self._buckets: dict[tuple, Bucket] = {}

    def add_team(self, name: str, emails: list[str]) -> dict:
        with self.lock:
            team_id = "T" + secrets.token_hex(5).upper()
            members = {}
            for email in emails:
                uid = "U" + secrets.token_hex(5).upper()
                members[uid] = {"id": uid, "email": email.lower(), "deleted": False, "team_id": team_id}
            self.teams[team_id] = {"id": team_id, "name": name, "status": "active", "members": members}
            return {"id": team_id, "name": name, "members": {m["email"]: uid for uid, m in members.items()}}

    def issue_code(self, team_id: str, redirect_uri: str | None, scope: str) -> str:
        with self.lock:
            code = secrets.token_urlsafe(16)
            self.codes[code] = {"team_id": team_id, "redirect_uri": redirect_uri, "scope": scope}
            return code

    def redeem(self, code: str, redirect_uri: str | None) -> dict | None:
        with self.lock:
            grant = self.codes.pop(code, None)
            if grant is None or (grant["redirect_uri"] and grant["redirect_uri"] != redirect_uri):
                return None
            token = "xoxb-" + secrets.token_hex(20)
            self.tokens[token] = {"team_id": grant["team_id"], "revoked": False}
            return {"token": token, **grant}

    def admit(self, team_id: str, method: str, channel: str | None = None) -> float | None:
        with self.lock:
            if method == "chat.postMessage":
                key = (team_id, method, channel)
                bucket = self._buckets.setdefault(key, Bucket(POST_BURST, POST_PER_SECOND * self.rate_scale))
            else:
                per_minute = TIERS.get(method, 20) * self.rate_scale
                key = (team_id, method)
                bucket = self._buckets.setdefault(key, Bucket(per_minute, per_minute / 60))
            return bucket.take()

    def set_rate_scale(self, scale: float) -> None:
        with self.lock:
            self.rate_scale = scale
            self._buckets.clear()

    def dm(self, team_id: str, user_id: str) -> str:
        with self.lock:
            channel = self.dms.setdefault((team_id, user_id), "D" + secrets.token_hex(5).upper())
            self._dm_users[(team_id, channel)] = user_id
            return channel

    def has_dm(self, team_id: str, channel: str) -> bool:
        with self.lock:
            return (team_id, channel) in self._dm_users

    def post(self, team_id: str, channel: str, text: str | None, blocks: list | None) -> str:
        with self.lock:
            ts = f"{time.time():.6f}"
            user = self._dm_users.get((team_id, channel))
            self.messages.append({"team_id": team_id, "channel": channel, "user": user, "ts": ts, "text": text,
                                  "blocks": blocks})
            return ts
