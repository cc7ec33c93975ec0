"""Microsoft Teams: calsync's bot writes to a person in their 1:1 chat with it, as an Adaptive Card.

Installation needs nothing from the person: with the application permission
``TeamsAppInstallation.ReadWriteSelfForUser.All`` (an admin of their tenant consents once), Graph's
``POST /users/{id}/teamwork/installedApps`` installs the app for them (409 when it already is), and
``GET …/installedApps/{id}/chat`` names the 1:1 chat. Messages go to the Bot Connector at the conversation's
``serviceUrl`` with a token from the identity platform for ``https://api.botframework.com/.default``, through
the Microsoft 365 Agents SDK's ``ConnectorClient``, on a session kept alive per process
(``service.channels.connections``). A tenant without consent is "unavailable: admin consent
needed" and is not asked again for a day: nothing loops.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from urllib.parse import quote

import aiohttp
import msal

from service.channels import connections, pauses
from service.channels.errors import Busy, Unavailable
from service.identity.apptokens import AppConsentMissing
from service.identity.msal_app import build_app
from service.store import channels as store
from service.store import utcnow
from service.store.records import User

log = logging.getLogger(__name__)

ROLE = "TeamsAppInstallation.ReadWriteSelfForUser.All"
CARD = "application/vnd.microsoft.card.adaptive"
NO_CONSENT = "unavailable: admin consent needed"
ASK_AGAIN = timedelta(hours=24)
# Teams' 429 (per app per tenant: 50 requests a second) pauses every worker's posts to that tenant for its
# Retry-After; a post waits out pauses up to MAX_WAIT seconds in all within its job, then the job retries later.
PAUSE_KEY = "calsync:teams:pause:{tenant}"
MAX_WAIT = 10.0

_bot_apps: dict[tuple[str, str], msal.ConfidentialClientApplication] = {}
_bot_lock = threading.Lock()


def send(rt, user: User, message) -> None:
    if message.card is None:
        raise Unavailable("no card form of this message")
    link = store.link(rt.db, store.TEAMS, user.id)
    if link and link["status"] == store.DISABLED:
        raise Unavailable(link["reason"])
    if link is None:
        link = install(rt, user)
    # The Agents SDK's package imports its whole hosting framework (pydantic models, ~1 s on this machine):
    # only a process that talks to Teams pays for it, not every web and worker process at start.
    from microsoft_agents.activity import Activity, Attachment  # noqa: PLC0415 - see above

    activity = Activity(type="message", text=message.text[:1000], summary=message.text.split("\n", 1)[0][:200],
                        attachments=[Attachment(content_type=CARD, content=message.card)])
    token, service_url = bot_token(rt, user), link["service_url"]

    async def post(session, lock) -> None:
        from microsoft_agents.hosting.core import ConnectorClient  # noqa: PLC0415 - see above

        async with lock:    # ConnectorClient sets its token in the session's headers: one post at a time on it
            client = ConnectorClient(service_url, token, session=session)
            await client.conversations.send_to_conversation(link["conversation_id"], activity)

    tenant = link.get("tenant_id") or user.tenant_id or ""
    waited = 0.0
    while True:
        waited += pauses.wait(getattr(rt, "redis", None), PAUSE_KEY.format(tenant=tenant), MAX_WAIT - waited,
                              "Teams' rate limit")
        try:
            connections.run(post, rt.ssl_context, rt.settings.http_timeout, base_url=_slash(service_url))
            return
        except aiohttp.ClientResponseError as exc:
            wait = _throttled(rt, tenant, exc)
            if wait is None or waited + wait > MAX_WAIT:
                _connector_error(rt, user, exc)
            # A 429 is a post Teams did not take: sent again in this job, after the wait Teams asked for, rather
            # than the job failing and spending one of its few retries (a burst at the tenant's 50 a second
            # would spend them all within seconds, and the message would be lost).


def _throttled(rt, tenant: str, exc: aiohttp.ClientResponseError) -> float | None:
    """Teams' Retry-After for a 429 (1 s when it names none), shared by every worker through Redis for the
    tenant (the limit is per app per tenant); None for any other answer."""
    if exc.status != 429:
        return None
    wait = pauses.retry_after(exc.headers.get("Retry-After") if exc.headers else None)
    pauses.pause(getattr(rt, "redis", None), PAUSE_KEY.format(tenant=tenant), wait)
    return wait


def _slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def _connector_error(rt, user: User, exc: aiohttp.ClientResponseError) -> None:
    if exc.status == 429 or exc.status >= 500:
        retry = exc.headers.get("Retry-After") if exc.headers else None
        raise Busy(f"Bot Connector answered {exc.status}", float(retry) if retry else None) from None
    if exc.status == 403:       # the person blocked or removed the bot, or an admin blocked the app
        store.disable_link(rt.db, store.TEAMS, user.id, "unavailable: the bot was removed or blocked in Teams")
        raise Unavailable("the bot was removed or blocked in Teams") from None
    if exc.status == 404:       # the chat is gone: install again on the next try
        store.forget_link(rt.db, store.TEAMS, user.id)
        raise Busy("the Teams chat is gone; it is found again on the next try") from None
    raise Busy(f"Bot Connector answered {exc.status}") from None


def bot_token(rt, user: User) -> str:
    """A token the Bot Connector accepts: client credentials for the Bot Framework's resource."""
    tenant = rt.settings.bot_tenant or user.tenant_id
    key = (rt.settings.client_id, tenant)
    with _bot_lock:
        app = _bot_apps.get(key)
        if app is None:
            app = _bot_apps[key] = build_app(rt.settings, rt.http, tenant=tenant)
    result = app.acquire_token_for_client([rt.settings.botframework_scope])
    if "access_token" not in result:
        log.warning("bot token for tenant %s refused: %s", tenant, result.get("error"))
        raise Busy(f"the identity platform refused the bot's token ({result.get('error')})")
    return result["access_token"]


def install(rt, user: User) -> dict:
    """Install calsync's Teams app for the person (if it is not yet) and record their 1:1 chat with the bot."""
    tenant = user.tenant_id
    if not tenant:
        raise Unavailable("no Microsoft 365 tenant known for this person")
    known = store.teams_unavailable(rt.db, tenant)
    if known:
        raise Unavailable(known)
    try:
        token = rt.app_tokens.require(tenant, ROLE)
    except AppConsentMissing as exc:
        log.info("Teams unavailable in tenant %s: %s", tenant, exc.reason)
        store.mark_teams_unavailable(rt.db, tenant, NO_CONSENT, utcnow() + ASK_AGAIN)
        raise Unavailable(NO_CONSENT) from None
    graph = rt.settings.graph_url.rstrip("/")
    person = quote(_entra_id(rt, user), safe="")
    headers = {"Authorization": f"Bearer {token}"}
    installed = f"{graph}/users/{person}/teamwork/installedApps"
    catalog = f"{graph}/appCatalogs/teamsApps/{rt.settings.teams_app_id}"
    answer = rt.http.post(installed, json={"teamsApp@odata.bind": catalog}, headers=headers,
                          timeout=rt.settings.http_timeout)
    _graph_check(rt, tenant, answer, allowed=(201, 409))      # 409: installed already
    answer = rt.http.get(installed, params={"$expand": "teamsApp",
                                            "$filter": f"teamsApp/id eq '{rt.settings.teams_app_id}'"},
                         headers=headers, timeout=rt.settings.http_timeout)
    _graph_check(rt, tenant, answer)
    found = answer.json().get("value") or []
    if not found:
        raise Busy("the Teams app is not listed yet after its installation")
    answer = rt.http.get(f"{installed}/{quote(found[0]['id'], safe='')}/chat", headers=headers,
                         timeout=rt.settings.http_timeout)
    _graph_check(rt, tenant, answer)
    fields = {"conversation_id": answer.json()["id"], "service_url": rt.settings.teams_service_url,
              "installation_id": found[0]["id"], "tenant_id": tenant}
    store.save_link(rt.db, store.TEAMS, user.id, **fields)
    log.info("Teams app installed for user %s", user.id)
    return {**fields, "status": store.OK}


def _graph_check(rt, tenant: str, answer, allowed: tuple[int, ...] = (200,)) -> None:
    if answer.status_code in allowed:
        return
    if answer.status_code == 403:
        store.mark_teams_unavailable(rt.db, tenant, NO_CONSENT, utcnow() + ASK_AGAIN)
        raise Unavailable(NO_CONSENT)
    if answer.status_code == 404:
        raise Unavailable("calsync's Teams app is not in this organisation's app catalog")
    raise Busy(f"Graph answered {answer.status_code} installing the Teams app",
               float(answer.headers["Retry-After"]) if "Retry-After" in answer.headers else None)


def _entra_id(rt, user: User) -> str:
    if user.entra_id:       # a User read from the store carries it: no second read
        return user.entra_id
    doc = rt.db.users.find_one({"_id": user.id}, {"entra_id": 1}) or {}
    return doc.get("entra_id") or user.id


def remember_installation(rt, user_id: str, activity: dict) -> bool:
    """The bot was added to the person's 1:1 chat (a ``conversationUpdate`` from Teams, its token already
    validated): record the conversation and its serviceUrl, and the link is usable again if it was disabled (the
    person reinstalled the app). Returns whether it was recorded (an odd activity is dropped, logged)."""
    conversation = activity.get("conversation") or {}
    conversation_id, service_url = conversation.get("id"), activity.get("serviceUrl")
    tenant = conversation.get("tenantId") or ((activity.get("channelData") or {}).get("tenant") or {}).get("id")
    if not (isinstance(conversation_id, str) and 0 < len(conversation_id) <= 300 and isinstance(service_url, str)
            and service_url.startswith("https://") and len(service_url) <= 300):
        log.info("a Teams installation update for user %s named no usable conversation; dropped", user_id)
        return False
    store.save_link(rt.db, store.TEAMS, user_id, conversation_id=conversation_id, service_url=service_url,
                    tenant_id=tenant if isinstance(tenant, str) else None)
    log.info("Teams app installed for user %s: their 1:1 conversation is known", user_id)
    return True


def remember_service_url(rt, user_id: str, service_url: str, conversation_id: str) -> None:
    """An activity from Teams names the conversation's current serviceUrl: later messages go there."""
    link = store.link(rt.db, store.TEAMS, user_id)
    if link and link.get("conversation_id") == conversation_id and link.get("service_url") != service_url:
        store.save_link(rt.db, store.TEAMS, user_id, service_url=service_url, conversation_id=conversation_id)
