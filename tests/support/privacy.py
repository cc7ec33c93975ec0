"""A private meeting as Graph's delta sends it, shared by the privacy tests of the digest and the channels."""

from __future__ import annotations

from datetime import datetime, timedelta

SECRET = "Acquisition of Fabrikam"   # a private subject that must never be shown


def graph_item(graph_id: str, start: datetime, subject: str, sensitivity: str = "normal", **extra) -> dict:
    """A delta item as Graph sends it (the body too: it is dropped before anything is written)."""
    return {"id": graph_id, "subject": subject, "sensitivity": sensitivity, "iCalUId": f"uid-{graph_id}",
            "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"},
            "end": {"dateTime": (start + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S.0000000"),
                    "timeZone": "UTC"},
            "lastModifiedDateTime": "2026-06-20T10:00:00Z", "changeKey": f"ck-{graph_id}", "type": "singleInstance",
            "body": {"contentType": "text", "content": f"{subject}: the numbers"},
            "organizer": {"emailAddress": {"name": "Me", "address": "me@example.com"}},
            "attendees": [{"type": "required", "status": {"response": "accepted"},
                           "emailAddress": {"name": "Ana", "address": "ana@example.com"}}], **extra}
