"""``GET /api/openapi.json``: the OpenAPI 3.1 description of the JSON API (``service/api/openapi.json``).

Served without a token (it describes the API, it holds nothing); ``tests/digest/test_openapi.py`` keeps it
true by validating real answers against it, and a short schemathesis run against the app.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from flask import Blueprint, jsonify

DOCUMENT = Path(__file__).parent / "openapi.json"

bp = Blueprint("openapi", __name__)


@lru_cache(maxsize=1)
def document() -> dict:
    return json.loads(DOCUMENT.read_text())


@bp.get("/api/openapi.json")
def openapi():
    response = jsonify(document())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
