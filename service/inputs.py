"""Client input read one way everywhere: JSON bodies and cursors, whole numbers, instants.

Each reader either returns a value every later step can use (store in MongoDB, put in Redis, do date
arithmetic on) or raises ``BadInput`` with a message that is safe to return and never echoes the input.
What Python's parsers accept but nothing downstream can handle is refused here, once, rather than in
each view: lone surrogates (no UTF-8 encoding exists, so BSON and Redis fail on them), nesting deeper
than any real document, NaN and infinities, integers past 64 bits (BSON's largest), Unicode digits such
as ``²`` (``str.isdigit`` accepts them, ``int`` does not), and instants so close to year 1 or 9999 that
converting them to UTC, or adding a week, overflows.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

MAX_DEPTH = 32
MAX_DIGITS = 18
INT64 = (-(2**63), 2**63 - 1)
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)


class BadInput(ValueError):
    """Client input that cannot be used; the message is safe to show. ``name`` is the input's, when known."""

    def __init__(self, message: str, name: str | None = None):
        super().__init__(message)
        self.name = name


def _refuse_constant(name: str):
    raise BadInput("JSON must not contain NaN or Infinity")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadInput("JSON numbers must be finite")
    return value


def json_loads(data: bytes | str) -> object:
    """The JSON document in ``data`` (UTF-8 when bytes), or BadInput."""
    try:
        text = data.decode("utf-8-sig") if isinstance(data, bytes | bytearray) else data
        document = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
    except BadInput:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadInput("body is not valid JSON") from None
    _check(document)
    return document


def _check(document: object) -> None:
    """Walk the document without recursion: depth, strings that encode, integers that fit."""
    stack = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _encodable(value)
        elif isinstance(value, bool) or value is None or isinstance(value, float):
            continue
        elif isinstance(value, int):
            if not INT64[0] <= value <= INT64[1]:
                raise BadInput("JSON integers must fit in 64 bits")
        elif depth > MAX_DEPTH:
            raise BadInput(f"JSON nested deeper than {MAX_DEPTH} levels")
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        else:
            for key, item in value.items():
                _encodable(key)
                stack.append((item, depth + 1))


def _encodable(value: str) -> None:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadInput("JSON strings must be valid Unicode (no lone surrogates)") from None


def text(value: str) -> str:
    """``value`` if it is valid Unicode (it can be stored and sent), else BadInput."""
    _encodable(value)
    return value


def whole_number(raw: str, name: str, low: int, high: int) -> int:
    """An ASCII decimal between ``low`` and ``high``, else BadInput naming ``name``."""
    if not (raw.isascii() and raw.isdigit() and len(raw) <= MAX_DIGITS and low <= int(raw) <= high):
        raise BadInput(f"{name} must be a whole number between {low} and {high}", name)
    return int(raw)


def instant(raw: str, name: str) -> datetime:
    """An ISO 8601 date-time as an aware UTC datetime between 1900 and 3000 (naive means UTC), else BadInput."""
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00").replace(" ", "+"))
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise BadInput(f"{name} must be an ISO 8601 date-time", name) from None
    if not EARLIEST <= value < LATEST:
        raise BadInput(f"{name} must be between {EARLIEST.year} and {LATEST.year}", name)
    return value
