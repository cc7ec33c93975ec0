"""Slack end to end against the emulator: OAuth install, a digest as a DM through a real RQ worker, once;
a revoked token falls back to email and says so once; buttons through the signed interactivity endpoint."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest
import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from emulator.slack.state import Bucket as SlackBucket
from service import queues
from service.channels.errors import Busy
from service.digest import links, send
from service.store import channels as channels_store
from service.store import users as users_store
from tests.support.channels import person
from tests.support.factories import add_people


@pytest.fixture
def slack_stack(make_stack):
    with make_stack() as stack:
        stack.emulator.control.request("POST", "/slack/config",
                                       {"interactivity_url": f"{stack.url}/channels/slack/interactivity"})
        yield stack


def install_slack(stack, user_id: str, emails: list[str]) -> dict:
    team = stack.emulator.control.request("POST", "/slack/workspaces", {"name": "Contoso", "emails": emails})
    session = requests.Session()
    session.verify = stack.emulator.ca_bundle
    session.trust_env = False
    answer = session.get(f"{stack.url}/channels/slack/install?t={links.settings_token(stack.settings, user_id)}",
                         allow_redirects=True)
    assert answer.status_code == 200 and answer.url.endswith("#channels") or "/digest/settings" in answer.url
    return team


def send_digest(stack, user_id: str) -> None:
    today = stack.runtime.db.events.find_one({"user_id": user_id})["start"].date().isoformat()
    queues.enqueue(stack.runtime.redis, queues.DIGEST, queues.SEND_DIGEST, user_id, today)
    stack.run_jobs()


def slack_messages(stack) -> list[dict]:
    return stack.emulator.control.request("GET", "/slack/messages")["value"]


def test_an_installed_workspace_gets_the_digest_as_a_dm_once_and_no_email(slack_stack, smtp_inbox):
    emu, user = person(slack_stack, {"digest": ["slack"]})
    install_slack(slack_stack, user.id, [emu["mail"]])
    stored = channels_store.workspace_for_tenant(slack_stack.runtime.db, emu["tenant_id"])

    send_digest(slack_stack, user.id)
    send_digest(slack_stack, user.id)

    assert not stored["bot_token"].startswith("xoxb-")          # encrypted at rest
    (dm,) = slack_messages(slack_stack)
    assert dm["text"].startswith("Your day") and "Quarterly planning" in json.dumps(dm["blocks"])
    assert len(dm["blocks"]) <= 50
    assert smtp_inbox.messages == []
    record = slack_stack.runtime.db.digests_sent.find_one({"user_id": user.id})
    assert record["status"] == "sent" and record["channels"] == {"slack": "sent"}


def test_a_revoked_token_disables_the_workspace_falls_back_to_email_and_says_so_once(slack_stack, smtp_inbox):
    emu, user = person(slack_stack, {"digest": ["slack"]})
    team = install_slack(slack_stack, user.id, [emu["mail"]])
    slack_stack.emulator.control.request("POST", f"/slack/workspaces/{team['id']}/revoke")

    send_digest(slack_stack, user.id)
    slack_stack.runtime.db.digests_sent.delete_many({})
    slack_stack.runtime.db.channel_sends.delete_many({})
    send_digest(slack_stack, user.id)

    subjects = [m["Subject"] for m in smtp_inbox.messages]
    assert subjects.count("calsync could not reach you on Slack") == 1
    assert sum(s.startswith("Your day") for s in subjects) == 2
    workspace = channels_store.workspace(slack_stack.runtime.db, team["id"])
    assert workspace["status"] == "disabled" and "revoked" in workspace["reason"]
    assert slack_messages(slack_stack) == []


def test_someone_without_a_slack_account_is_disabled_with_a_clear_status(slack_stack, smtp_inbox):
    emu, user = person(slack_stack, {"digest": ["slack", "email"]})
    install_slack(slack_stack, user.id, ["someone.else@contoso.com"])

    send_digest(slack_stack, user.id)

    link = channels_store.link(slack_stack.runtime.db, "slack", user.id)
    assert link["status"] == "disabled" and "no Slack account" in link["reason"]
    record = slack_stack.runtime.db.digests_sent.find_one({"user_id": user.id})
    assert record["channels"]["email"] == "sent" and record["channels"]["slack"].startswith("unavailable")


def _press(stack, ts: str, label: str, **extra) -> dict:
    (message,) = [m for m in slack_messages(stack) if m["ts"] == ts]
    action = next(e["action_id"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]
                  if e["text"]["text"] == label)
    return stack.emulator.control.request("POST", "/slack/press", {"ts": ts, "action_id": action, **extra})


def test_exclude_pressed_in_slack_excludes_the_meeting_and_a_replay_changes_nothing(slack_stack):
    emu, user = person(slack_stack, {"digest": ["slack"]})
    install_slack(slack_stack, user.id, [emu["mail"]])
    send_digest(slack_stack, user.id)
    (dm,) = slack_messages(slack_stack)

    pressed = _press(slack_stack, dm["ts"], "Exclude this meeting")
    replay = requests.post(f"{slack_stack.url}/channels/slack/interactivity", data=pressed["request"]["body"],
                           headers={"Content-Type": "application/x-www-form-urlencoded",
                                    "X-Slack-Request-Timestamp": pressed["request"]["timestamp"],
                                    "X-Slack-Signature": pressed["request"]["signature"]}, timeout=10)

    assert pressed["status"] == 200 and "kept out of your insights" in pressed["body"]
    (told,) = slack_stack.emulator.control.request("GET", "/slack/responses")["value"]
    assert told["response_type"] == "ephemeral" and "kept out of your insights" in told["text"]
    assert slack_stack.runtime.db.exclusions.count_documents({"user_id": user.id}) == 1
    assert replay.status_code == 409


@pytest.mark.parametrize("change, status", [
    ({"signature": "v0=" + "0" * 64}, 401),        # forged
    ({"skew": -600}, 401),                          # stale: ten minutes old
])
def test_forged_or_stale_presses_are_refused_and_change_nothing(slack_stack, change, status):
    emu, user = person(slack_stack, {"digest": ["slack"]})
    install_slack(slack_stack, user.id, [emu["mail"]])
    send_digest(slack_stack, user.id)
    (dm,) = slack_messages(slack_stack)

    pressed = _press(slack_stack, dm["ts"], "Exclude this meeting", **change)

    assert pressed["status"] == status
    assert slack_stack.runtime.db.exclusions.count_documents({}) == 0


def _signed(stack, body: str) -> dict:
    import time

    from emulator.slack.routes import sign  # the emulator's signer, as Slack signs
    timestamp = str(int(time.time()))
    return {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": sign(stack.settings.slack_signing_secret, timestamp, body)}


@pytest.mark.parametrize("body, status", [
    ("payload=" + "x" * 50_000, 413),                                                     # 50 KB
    ("payload=not-json", 400),
    (urlencode({"payload": json.dumps({"type": "block_actions", "team": {"id": "T1"}, "user": {"id": "U1"},
                                       "actions": [{"value": "{}"}]})}), 403),           # nobody we know
])
def test_bad_interactivity_bodies_get_a_clear_4xx(slack_stack, body, status):
    answer = requests.post(f"{slack_stack.url}/channels/slack/interactivity", data=body,
                           headers=_signed(slack_stack, body), timeout=10)

    assert answer.status_code == status
    assert "xoxb" not in answer.text


def test_a_button_for_another_persons_meeting_is_refused(slack_stack):
    emu, user = person(slack_stack, {"digest": ["slack"]})
    other_emu, other = person(slack_stack, mail="other@contoso.com")
    install_slack(slack_stack, user.id, [emu["mail"]])
    send_digest(slack_stack, user.id)
    theirs = str(slack_stack.runtime.db.events.find_one({"user_id": other.id})["_id"])
    team, slack_user = (channels_store.link(slack_stack.runtime.db, "slack", user.id)[k]
                        for k in ("team_id", "slack_user"))
    body = urlencode({"payload": json.dumps({"type": "block_actions", "team": {"id": team},
                                             "user": {"id": slack_user}, "actions": [{"value": json.dumps(
                                                 {"action": "exclude", "meeting": theirs})}]})})

    answer = requests.post(f"{slack_stack.url}/channels/slack/interactivity", data=body,
                           headers=_signed(slack_stack, body), timeout=10)

    assert answer.status_code == 400 and "not in your calendar" in answer.text
    assert slack_stack.runtime.db.exclusions.count_documents({}) == 0


def test_the_emulator_answers_slack_sdk_with_slacks_errors_and_limits(slack_stack):
    control = slack_stack.emulator.control
    team = control.request("POST", "/slack/workspaces", {"name": "Fabrikam", "emails": ["a@fabrikam.com"]})
    code = slack_stack.emulator.emulator.slack.issue_code(team["id"], None, "chat:write,im:write,users:read.email")
    web = WebClient(base_url=slack_stack.settings.slack_api_url, ssl=slack_stack.runtime.ssl_context)
    token = web.oauth_v2_access(client_id=slack_stack.settings.slack_client_id,
                                client_secret=slack_stack.settings.slack_client_secret, code=code)["access_token"]
    web = WebClient(token=token, base_url=slack_stack.settings.slack_api_url, ssl=slack_stack.runtime.ssl_context)
    channel = web.conversations_open(users=web.users_lookupByEmail(email="a@fabrikam.com")["user"]["id"])["channel"]

    with pytest.raises(SlackApiError) as too_many:
        web.chat_postMessage(channel=channel["id"], text="x", blocks=[{"type": "section", "text": {
            "type": "mrkdwn", "text": "x"}}] * 51)
    with pytest.raises(SlackApiError) as unknown:
        web.users_lookupByEmail(email="nobody@fabrikam.com")
    with pytest.raises(SlackApiError) as limited:      # about one a second per channel, a burst of 3
        for _ in range(5):
            web.chat_postMessage(channel=channel["id"], text="hello")

    assert too_many.value.response["error"] == "invalid_blocks"
    assert unknown.value.response["error"] == "users_not_found"
    assert limited.value.response.status_code == 429 and int(limited.value.response.headers["Retry-After"]) >= 1


def test_a_reconnect_reminder_goes_to_slack_when_chosen(slack_stack, smtp_inbox):
    emu, user = person(slack_stack, {"reconnect": ["slack"]})
    install_slack(slack_stack, user.id, [emu["mail"]])
    users_store.mark_needs_reconnect(slack_stack.runtime.db, user.id, "invalid_grant")

    queues.enqueue(slack_stack.runtime.redis, queues.MAINTENANCE, queues.SEND_RECONNECT_MAIL, user.id)
    slack_stack.run_jobs()

    (dm,) = slack_messages(slack_stack)
    assert dm["text"].startswith("Please reconnect your calendar") and "/connect" in json.dumps(dm["blocks"])
    assert smtp_inbox.messages == []


def test_coaching_chosen_for_slack_alone_comes_as_its_own_dm_beside_the_emailed_digest(slack_stack, smtp_inbox):
    add_people(slack_stack.runtime.db)
    emu, user = person(slack_stack, {"digest": ["email"], "coaching": ["slack"]})
    install_slack(slack_stack, user.id, [emu["mail"]])

    send_digest(slack_stack, user.id)

    (dm,) = slack_messages(slack_stack)
    assert dm["text"].startswith("Coaching for") and "Ana" in dm["text"]
    assert [m["Subject"] for m in smtp_inbox.messages][0].startswith("Your day")


def test_coaching_chosen_for_email_comes_as_a_mail_of_its_own_when_the_digest_goes_to_slack(slack_stack,
                                                                                              smtp_inbox):
    add_people(slack_stack.runtime.db)
    emu, user = person(slack_stack, {"digest": ["slack"], "coaching": ["email"]})
    install_slack(slack_stack, user.id, [emu["mail"]])

    send_digest(slack_stack, user.id)
    send_digest(slack_stack, user.id)                                   # a retry sends nothing twice

    (dm,) = slack_messages(slack_stack)
    assert dm["text"].startswith("Your day")
    (mail,) = smtp_inbox.messages
    assert mail["Subject"].startswith("Coaching for") and mail["Message-ID"].startswith(f"<coaching-{user.id}-")
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "Ana" in text and "Ana" in html and "Was this useful?" in html            # the tips, with feedback
    assert "YOUR MEETINGS" not in text and "Your meetings" not in html               # not the digest again
    assert "Good morning" not in text + html and "Unsubscribe" not in text + html
    assert "List-Unsubscribe" not in mail                              # the digest's would turn the digest off
    record = slack_stack.runtime.db.channel_sends.find_one({"_id": {"$regex": ":coaching:email$"}})
    assert record["status"] == "sent"


def test_coaching_left_at_its_default_follows_the_digest_to_slack_and_sends_no_mail(slack_stack, smtp_inbox):
    add_people(slack_stack.runtime.db)
    emu, user = person(slack_stack, {"digest": ["slack"]})
    install_slack(slack_stack, user.id, [emu["mail"]])

    send_digest(slack_stack, user.id)

    (dm,) = slack_messages(slack_stack)
    assert dm["text"].startswith("Your day") and "Ana" in json.dumps(dm["blocks"])   # its coaching is in it
    assert smtp_inbox.messages == []


def test_a_429_pauses_the_workspace_for_every_worker_until_retry_after(slack_stack, smtp_inbox):
    emu, user = person(slack_stack, {"digest": ["slack"]})
    install_slack(slack_stack, user.id, [emu["mail"]])
    control = slack_stack.emulator.control
    control.request("POST", "/slack/config", {"rate_scale": 0.001})    # users.lookupByEmail: 0.1 a minute
    today = slack_stack.runtime.db.events.find_one({"user_id": user.id})["start"].date().isoformat()
    rt = slack_stack.runtime

    with pytest.raises(Busy):
        send.deliver(rt.db, rt.settings, rt.mailer, user.id, today, redis=rt.redis, rt=rt)
    team = channels_store.workspace_for_tenant(rt.db, emu["tenant_id"])["_id"]
    paused_for = rt.redis.pttl(f"calsync:slack:pause:{team}") / 1000
    control.request("POST", "/slack/config", {"rate_scale": 1})
    with pytest.raises(Busy):   # still paused: Slack is not asked again before Retry-After
        send.deliver(rt.db, rt.settings, rt.mailer, user.id, today, redis=rt.redis, rt=rt)
    rt.redis.delete(f"calsync:slack:pause:{team}")                     # Retry-After has passed
    result = send.deliver(rt.db, rt.settings, rt.mailer, user.id, today, redis=rt.redis, rt=rt)

    assert 60 < paused_for <= 600
    assert result == "sent" and len(slack_messages(slack_stack)) == 1 and smtp_inbox.messages == []


def test_a_short_429_is_waited_out_and_the_call_made_again_in_the_same_job(slack_stack, smtp_inbox):
    """users.lookupByEmail's tier spent, Slack asks for a second: the job waits it and asks again (Slack ran
    nothing it answered 429), instead of failing and spending one of its retries; the DM arrives once."""
    emu, user = person(slack_stack, {"digest": ["slack"]})
    team = install_slack(slack_stack, user.id, [emu["mail"]])
    slack = slack_stack.emulator.emulator.slack
    with slack.lock:              # the tier's bucket spent (two lookups owed): the next lookup is a 429
        bucket = slack._buckets.setdefault((team["id"], "users.lookupByEmail"), SlackBucket(100, 100 / 60))
        bucket.level, bucket.at = -2.0, time.monotonic()
        answers: list[float | None] = []                # what the tier answered each lookup: None, it ran
        taking = bucket.take
        bucket.take = lambda: answers.append(taking()) or answers[-1]
    today = slack_stack.runtime.db.events.find_one({"user_id": user.id})["start"].date().isoformat()
    rt = slack_stack.runtime

    result = send.deliver(rt.db, rt.settings, rt.mailer, user.id, today, redis=rt.redis, rt=rt)

    assert result == "sent" and len(slack_messages(slack_stack)) == 1 and smtp_inbox.messages == []
    assert len(answers) == 2 and answers[0] is not None and answers[1] is None   # a 429, then asked again once
