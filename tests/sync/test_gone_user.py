"""A user deleted from the directory: Graph answers 404 for their calendars and for ``/me``.

The Graph emulator cannot delete a directory user (its control API adds users and changes mailboxes; a
mailbox's 404 ``ErrorInvalidUser`` with ``/me`` still answering is a mailbox calsync cannot read, tested in
tests/sync/test_mailboxes.py), so Graph here is one answer on loopback: 404 to every request, as for an
account that no longer exists.
"""

from __future__ import annotations

import json

import requests

from service.graph import GraphClient
from service.store import users
from service.workers import jobs
from tests.support.loopback import serving

GONE = json.dumps({"error": {"code": "ErrorInvalidUser", "message": "The requested user is invalid.",
                             "innerError": {"request-id": "r", "date": "2026-01-01T00:00:00"}}}).encode()



def test_a_user_gone_from_graph_is_disconnected(rt, mailbox, mailboxes):
    user_id = mailbox("liam")
    asked = []

    def deleted_account(path: str, _port: int) -> tuple[int, dict[str, str], bytes]:
        asked.append(path.split("?")[0])
        return 404, {}, GONE

    with serving(deleted_account) as base:
        session = requests.Session()
        session.trust_env = False
        mailboxes.factory = lambda uid: GraphClient(session, f"{base}/v1.0", token=lambda force_refresh=False: "t")

        assert jobs.sync_user(user_id) == "disconnected"

    assert asked == [f"/v1.0/users/{user_id}/calendars", "/v1.0/me"]   # the calendars, then: is /me gone too?
    assert users.get(rt.db, user_id).connection.status == users.DISCONNECTED
