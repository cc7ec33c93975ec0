"""What the emulated Teams knows: installations, 1:1 chats with the bot, the activities the bot sent."""

from __future__ import annotations

import secrets
import threading
import time
from collections import defaultdict, deque

INSTALL_ROLE = "TeamsAppInstallation.ReadWriteSelfForUser.All"
BOT_ISSUER = "https://api.botframework.com"
BOT_AUDIENCE = "https://api.botframework.com"
# Teams' documented per-bot, per-conversation limit: 7 operations a second (teams platform "rate limiting").
PER_CONVERSATION_PER_SECOND = 7
PER_TENANT_PER_SECOND = 50       # "the global limit per app per tenant is 50 requests per second"
MAX_MESSAGE_BYTES = 28 * 1024     # Teams refuses a message over about 28 KB ("MessageSizeTooBig")


class TeamsState:
    def __init__(self, catalog: set[str] | None = None):
        self.lock = threading.Lock()
        self.catalog: set[str] = set(catalog or ())     # app ids in the tenant's app catalog; empty: any
        self.installs: dict[tuple[str, str], dict] = {}  # (user_id, app_id) -> {id, chat_id}
        self._by_user: dict[str, list[dict]] = defaultdict(list)   # user_id -> their installs: a listing is O(1)
        self.chats: dict[str, dict] = {}                  # chat id -> {user_id, tenant_id, blocked}
        self.activities: list[dict] = []
        self.bot_app_id: str | None = None
        self.messaging_endpoint: str | None = None
        self.announcements: list[dict] = []              # the bot-installation conversationUpdates sent and answers
        self._recent: dict[str, deque] = defaultdict(deque)

    def install(self, user_id: str, tenant_id: str, app_id: str) -> tuple[dict, bool]:
        """(installation, created): created False when the app was installed for the user already."""
        with self.lock:
            found = self.installs.get((user_id, app_id))
            if found:
                return dict(found), False
            chat_id = f"19:{user_id}_{secrets.token_hex(8)}@unq.gbl.spaces"
            install = {"id": secrets.token_urlsafe(24), "chat_id": chat_id, "app_id": app_id, "user_id": user_id}
            self.installs[(user_id, app_id)] = install
            self._by_user[user_id].append(install)
            self.chats[chat_id] = {"user_id": user_id, "tenant_id": tenant_id, "blocked": False}
            return dict(install), True

    def installed(self, user_id: str) -> list[dict]:
        with self.lock:
            return [dict(i) for i in self._by_user.get(user_id, ())]

    def admit(self, chat_id: str) -> float | None:
        """None if the bot may post in the chat now, else the seconds to wait (Teams' 429 Retry-After): at most
        7 a second in one conversation and 50 a second in the tenant."""
        now = time.monotonic()
        with self.lock:
            tenant = f"tenant:{self.chats[chat_id]['tenant_id']}"
            for key, limit in ((chat_id, PER_CONVERSATION_PER_SECOND), (tenant, PER_TENANT_PER_SECOND)):
                recent = self._recent[key]
                while recent and recent[0] <= now - 1.0:
                    recent.popleft()
                if len(recent) >= limit:
                    return max(0.05, 1.0 - (now - recent[0]))
            self._recent[chat_id].append(now)
            self._recent[tenant].append(now)
            return None

    def record(self, chat_id: str, activity: dict) -> str:
        with self.lock:
            activity_id = f"1:{secrets.token_hex(12)}"
            self.activities.append({"id": activity_id, "conversation_id": chat_id,
                                    "user_id": self.chats[chat_id]["user_id"], "activity": activity,
                                    "received_at": time.time()})
            return activity_id

    def sent(self, user_id: str | None = None) -> list[dict]:
        with self.lock:
            return [dict(a) for a in self.activities if user_id is None or a["user_id"] == user_id]
