"""Opaque page cursors for the JSON APIs and the ops pages: a list of strings as unpadded base64url JSON.

The cursor is a keyset (the sort key of the row a page ends on), never an offset, so a page costs the
same at the millionth row as at the first.
"""

from __future__ import annotations

import base64
import binascii
import json

from service import inputs

MAX_CURSOR_CHARS = 2048


def encode(parts: list[str]) -> str:
    """The cursor for ``parts``."""
    return base64.urlsafe_b64encode(json.dumps(parts, separators=(",", ":")).encode()).decode().rstrip("=")


def decode(raw: str, parts: int) -> list[str]:
    """The ``parts`` strings inside ``raw``; ValueError for anything else (a cursor is client input)."""
    if not isinstance(raw, str) or len(raw) > MAX_CURSOR_CHARS:
        raise ValueError("cursor is not valid")
    try:
        data = inputs.json_loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, binascii.Error):
        raise ValueError("cursor is not valid") from None
    if not isinstance(data, list) or len(data) != parts or not all(isinstance(x, str) for x in data):
        raise ValueError("cursor is not valid")
    return data
