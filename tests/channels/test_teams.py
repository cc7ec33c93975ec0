"""Teams end to end against the emulator: no consent is "unavailable: admin consent needed" once (no loop);
with consent the app is installed through Graph, the card goes through the Bot Connector (the Agents SDK's
ConnectorClient), and a pressed button comes back as an invoke checked by the Agents SDK's JWT validation."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from microsoft_agents.activity import Activity, ActivityTypes

from emulator.teams import state as teams_mod
from harness.waiting import wait_until
from service import queues
from service.channels import claims, dispatch
from service.channels import teams as teams_send
from service.channels.errors import Busy
from service.store import channels as channels_store
from tests.support.channels import grant_teams_install, person


@pytest.fixture
def teams_stack(make_stack):
    with make_stack() as stack:
        stack.emulator.control.request("POST", "/teams/config", {
            "messaging_endpoint": f"{stack.url}/channels/teams/messages", "bot_app_id": stack.settings.bot_id})
        yield stack


def send_digest(stack, user_id: str) -> None:
    today = stack.runtime.db.events.find_one({"user_id": user_id})["start"].date().isoformat()
    queues.enqueue(stack.runtime.redis, queues.DIGEST, queues.SEND_DIGEST, user_id, today)
    stack.run_jobs()


def activities(stack) -> list[dict]:
    return stack.emulator.control.request("GET", "/teams/activities")["value"]


def graph_calls(stack, fragment: str) -> list[dict]:
    return [r for r in stack.emulator.control.graph_requests() if fragment in r["path"]]


def test_without_admin_consent_teams_is_unavailable_email_stands_in_and_nothing_loops(teams_stack, smtp_inbox):
    emu, user = person(teams_stack, {"digest": ["teams"]})

    send_digest(teams_stack, user.id)
    teams_stack.runtime.db.digests_sent.delete_many({})
    teams_stack.runtime.db.channel_sends.delete_many({})
    send_digest(teams_stack, user.id)

    record = teams_stack.runtime.db.digests_sent.find_one({"user_id": user.id})
    assert record["channels"] == {"teams": "unavailable: admin consent needed", "email": "sent"}
    subjects = [m["Subject"] for m in smtp_inbox.messages]
    assert subjects.count("calsync could not reach you on Microsoft Teams") == 1
    assert graph_calls(teams_stack, "/teamwork/installedApps") == []   # never asked Graph without the role
    assert channels_store.teams_unavailable(teams_stack.runtime.db, emu["tenant_id"])


def test_with_consent_the_app_is_installed_and_the_digest_card_arrives_once(teams_stack, smtp_inbox):
    emu, user = person(teams_stack, {"digest": ["teams"]})
    grant_teams_install(teams_stack, emu)

    send_digest(teams_stack, user.id)
    send_digest(teams_stack, user.id)

    (sent,) = activities(teams_stack)
    card = sent["activity"]["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["version"] == "1.5" and "Quarterly planning" in json.dumps(card["content"])
    assert sent["conversation_id"] == channels_store.link(teams_stack.runtime.db, "teams", user.id)["conversation_id"]
    assert smtp_inbox.messages == []
    assert len([c for c in graph_calls(teams_stack, "/teamwork/installedApps") if c["method"] == "POST"]) == 1


def _press(stack, label: str, **extra) -> dict:
    (sent,) = activities(stack)
    body = sent["activity"]["attachments"][0]["content"]["body"]
    action = next(a for b in body if b["type"] == "ActionSet" for a in b["actions"] if a["title"] == label)
    return stack.emulator.control.request("POST", "/teams/press", {
        "activity_id": sent["id"], "verb": action["verb"], "data": action["data"], **extra})


def test_exclude_pressed_in_teams_excludes_the_meeting(teams_stack):
    emu, user = person(teams_stack, {"digest": ["teams"]})
    grant_teams_install(teams_stack, emu)
    send_digest(teams_stack, user.id)

    pressed = _press(teams_stack, "Exclude this meeting")

    assert pressed["status"] == 200 and pressed["body"]["statusCode"] == 200
    assert "kept out of your insights" in pressed["body"]["value"]
    assert teams_stack.runtime.db.exclusions.count_documents({"user_id": user.id}) == 1


def _forged(stack) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = {"iss": "https://api.botframework.com", "aud": stack.settings.bot_id, "exp": 4_000_000_000,
              "serviceurl": stack.emulator.base_url + "/teams/connector/"}
    kid = stack.emulator.emulator.identity.jwks()["keys"][0]["kid"]
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


@pytest.mark.parametrize("token", ["forged", "garbage", "expired", "other-audience"])
def test_presses_with_a_bad_token_are_refused_and_change_nothing(teams_stack, token):
    emu, user = person(teams_stack, {"digest": ["teams"]})
    grant_teams_install(teams_stack, emu)
    send_digest(teams_stack, user.id)
    identity = teams_stack.emulator.emulator.identity
    now = int(identity.now().timestamp())
    tokens = {"forged": _forged(teams_stack), "garbage": "not.a.token",
              "expired": identity.sign({"iss": "https://api.botframework.com", "aud": teams_stack.settings.bot_id,
                                        "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}),
              "other-audience": identity.sign({"iss": "https://api.botframework.com", "aud": "another-bot",
                                               "iat": now, "nbf": now, "exp": now + 3600})}

    pressed = _press(teams_stack, "Exclude this meeting", token=tokens[token])

    assert pressed["status"] == 401
    assert teams_stack.runtime.db.exclusions.count_documents({}) == 0


def test_a_press_for_another_persons_meeting_is_refused(teams_stack):
    emu, user = person(teams_stack, {"digest": ["teams"]})
    _, other = person(teams_stack, mail="other@contoso.com")
    grant_teams_install(teams_stack, emu)
    send_digest(teams_stack, user.id)
    theirs = str(teams_stack.runtime.db.events.find_one({"user_id": other.id})["_id"])

    (sent,) = activities(teams_stack)
    pressed = teams_stack.emulator.control.request("POST", "/teams/press", {
        "activity_id": sent["id"], "verb": "exclude", "data": {"action": "exclude", "meeting": theirs}})

    assert pressed["status"] == 200 and pressed["body"]["statusCode"] == 400
    assert teams_stack.runtime.db.exclusions.count_documents({}) == 0


def test_a_blocked_bot_disables_teams_for_that_person_with_a_status(teams_stack, smtp_inbox):
    emu, user = person(teams_stack, {"digest": ["teams"]})
    grant_teams_install(teams_stack, emu)
    send_digest(teams_stack, user.id)
    teams_stack.emulator.control.request("POST", "/teams/block", {"user_id": emu["id"]})
    teams_stack.runtime.db.digests_sent.delete_many({})
    teams_stack.runtime.db.channel_sends.delete_many({})

    send_digest(teams_stack, user.id)

    link = channels_store.link(teams_stack.runtime.db, "teams", user.id)
    assert link["status"] == "disabled" and "blocked" in link["reason"]
    subjects = [m["Subject"] for m in smtp_inbox.messages]
    assert subjects[0].startswith("Your day") and subjects[1] == "calsync could not reach you on Microsoft Teams"


def test_a_batch_sends_each_message_once_under_the_jobs_claim_holder(teams_stack, smtp_inbox):
    emu, user = person(teams_stack, {"digest": ["teams"]})
    grant_teams_install(teams_stack, emu)
    card = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "Your day"}]}
    items = [(user, "digest", dispatch.Outgoing("digest", f"batch:{n}", "Your day", card=card)) for n in range(3)]
    rt = teams_stack.runtime

    with claims.held_by("job-1:execution-1"):
        first = dispatch.deliver_many(rt, items, concurrency=3)
        again = dispatch.deliver_many(rt, items, concurrency=3)

    assert first == [{"teams": "sent"}] * 3 and again == [{"teams": "sent"}] * 3
    assert sorted(a["activity"]["text"] for a in activities(teams_stack)) == ["Your day"] * 3
    claimed = list(rt.db.channel_sends.find({"_id": {"$regex": "^batch:"}}))
    assert len(claimed) == 3 and {c["holder"] for c in claimed} == {"job-1:execution-1"}
    assert {c["status"] for c in claimed} == {"sent"} and smtp_inbox.messages == []


def test_an_installation_announced_by_teams_gives_the_chat_and_the_card_needs_no_graph_call(teams_stack, smtp_inbox):
    emu, user = person(teams_stack, {"digest": ["teams"]})

    # The app installed for the person by other means than calsync's Graph call (an admin's app setup policy):
    # Teams posts the bot a conversationUpdate adding it to their 1:1 chat.
    announced = teams_stack.emulator.control.request("POST", "/teams/install", {"user_id": emu["id"]})
    assert announced["status"] == 200

    link = channels_store.link(teams_stack.runtime.db, "teams", user.id)
    assert link["status"] == "ok" and link["conversation_id"] == announced["chat_id"]
    assert link["service_url"] == teams_stack.emulator.base_url + "/teams/connector/"
    send_digest(teams_stack, user.id)
    (sent,) = activities(teams_stack)
    assert sent["conversation_id"] == announced["chat_id"] and smtp_inbox.messages == []
    assert graph_calls(teams_stack, "/teamwork/installedApps") == []      # no install, no list, no /chat lookup


def test_calsyncs_own_installation_is_announced_and_recorded_once(teams_stack):
    emu, user = person(teams_stack, {"digest": ["teams"]})
    grant_teams_install(teams_stack, emu)

    send_digest(teams_stack, user.id)

    def announcements() -> list[dict]:
        return teams_stack.emulator.control.request("GET", "/teams/announcements")["value"]

    wait_until(lambda: announcements(), timeout=30, message="Teams' installation update to reach the bot")
    (announced,) = announcements()
    link = channels_store.link(teams_stack.runtime.db, "teams", user.id)
    assert announced["status"] == 200 and announced["conversation_id"] == link["conversation_id"]
    assert len(activities(teams_stack)) == 1
    # What the emulator posted is an activity as the Agents SDK reads one: the bot added to a personal chat.
    activity = Activity.model_validate(announced["activity"])
    assert activity.type == ActivityTypes.conversation_update and activity.conversation.conversation_type == "personal"
    assert [m.id for m in activity.members_added] == [activity.recipient.id]
    assert activity.conversation.id == link["conversation_id"] and activity.service_url == link["service_url"]


@pytest.mark.parametrize("token", ["forged", "garbage"])
def test_an_installation_update_with_a_bad_token_is_refused_and_records_nothing(teams_stack, token):
    emu, user = person(teams_stack, {"digest": ["teams"]})

    announced = teams_stack.emulator.control.request("POST", "/teams/install", {
        "user_id": emu["id"], "token": _forged(teams_stack) if token == "forged" else "not.a.token"})

    assert announced["status"] == 401
    assert channels_store.link(teams_stack.runtime.db, "teams", user.id) is None


def test_a_card_throttled_by_teams_is_sent_once_in_the_same_job_after_retry_after(teams_stack, smtp_inbox):
    """A 429 (the tenant's 50 posts a second spent) is a post Teams did not take: the job waits Teams' Retry-After
    and posts again, rather than failing and spending a retry; every worker waits out that tenant's pause."""
    emu, user = person(teams_stack, {"digest": ["teams"]})
    grant_teams_install(teams_stack, emu)
    rt, teams = teams_stack.runtime, teams_stack.emulator.emulator.teams
    card = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "Your day"}]}
    message = dispatch.Outgoing("digest", "throttled:1", "Your day", card=card)
    with teams.lock:                              # the tenant's 50 posts a second spent for the next 2 s
        teams._recent[f"tenant:{emu['tenant_id']}"].extend([time.monotonic() + 1] * teams_mod.PER_TENANT_PER_SECOND)
    answers: list[float | None] = []              # what the limit answered each post: None, Teams took it
    admitting = teams.admit
    teams.admit = lambda chat_id: answers.append(admitting(chat_id)) or answers[-1]

    assert dispatch.deliver(rt, user, "digest", message) == {"teams": "sent"}

    assert len(answers) == 2 and answers[0] is not None and answers[1] is None   # a 429, then posted again once

    (sent,) = activities(teams_stack)
    assert sent["activity"]["text"] == "Your day" and smtp_inbox.messages == []
    assert rt.db.channel_sends.find_one({"_id": "throttled:1:teams"})["status"] == "sent"
    assert teams_send._throttled(rt, "t", _response_error(503)) is None


def test_a_pause_longer_than_a_job_waits_is_a_busy_retry_later(teams_stack, smtp_inbox):
    emu, user = person(teams_stack, {"digest": ["teams"]})
    grant_teams_install(teams_stack, emu)
    rt = teams_stack.runtime
    rt.redis.set(teams_send.PAUSE_KEY.format(tenant=emu["tenant_id"]), "1", px=int(teams_send.MAX_WAIT * 1000) + 5000)
    card = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "Your day"}]}

    with pytest.raises(Busy) as raised:
        dispatch.deliver(rt, user, "digest", dispatch.Outgoing("digest", "paused:1", "Your day", card=card))

    assert raised.value.retry_after > teams_send.MAX_WAIT and activities(teams_stack) == []
    assert rt.db.channel_sends.find_one({"_id": "paused:1:teams"})["status"] == "failed"


def _response_error(status: int):
    import aiohttp
    from multidict import CIMultiDict

    return aiohttp.ClientResponseError(None, (), status=status, headers=CIMultiDict())
