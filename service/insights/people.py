"""People directory input: validate rows (CSV or JSON) against the frameworks declared as data, then upsert.

A row is ``{email, aliases, name, team, assessments: {framework: {field: value}}}``. In CSV, assessment
columns are ``<framework>.<field>`` (``disc.primary``, ``enneagram.wing``), scores are
``<framework>.<field>.<code>`` (``disc.scores.D``) and lists/aliases are separated by ``;``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from service.store import people as people_store

DATA_DIR = Path(__file__).parent / "data"
EMAIL_RE = re.compile(r"^[^@\s,;<>\"]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
MAX_ALIASES = 20
MAX_TEXT = 200
BASE_COLUMNS = {"email", "aliases", "name", "team"}


class InvalidPerson(ValueError):
    """A row that cannot be stored; the message says why and is safe to show."""


@cache
def frameworks() -> dict[str, dict]:
    """The assessment frameworks from data/frameworks.json, keyed by name."""
    return json.loads((DATA_DIR / "frameworks.json").read_text(encoding="utf-8"))["frameworks"]


def style_of(framework: str, assessment: dict) -> str | None:
    """The one code that summarises a person in ``framework`` (primary style, type…), if any."""
    spec = frameworks().get(framework)
    if not spec or not isinstance(assessment, dict):
        return None
    code = assessment.get(spec.get("style", ""))
    if code:
        return code
    scores = assessment.get(spec.get("style_from_scores", ""))
    if isinstance(scores, dict) and scores:
        return max(sorted(scores), key=lambda c: scores[c])
    return None


def styles(person: dict | None) -> dict[str, str]:
    """framework → style code for every assessment the person has."""
    if not person:
        return {}
    found = {}
    for name, assessment in (person.get("assessments") or {}).items():
        code = style_of(name, assessment)
        if code:
            found[name] = code
    return found


def style_label(framework: str, code: str) -> str:
    spec = frameworks().get(framework, {})
    name, label = spec.get("label", framework), spec.get("categories", {}).get(code, code)
    return f"{name} {code}" if label == code else f"{name} {code} ({label})"


# --- validation -----------------------------------------------------------------------------------

def normalise_email(value: object, what: str = "email") -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidPerson(f"{what} is missing")
    email = value.strip().lower()
    if len(email) > 254 or not EMAIL_RE.match(email):
        raise InvalidPerson(f"{what} is not a valid address")
    return email


def _text(value: object, what: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise InvalidPerson(f"{what} must be text")
    text = str(value).strip()
    if len(text) > MAX_TEXT:
        raise InvalidPerson(f"{what} is longer than {MAX_TEXT} characters")
    return text or None


def _code(spec: dict, value: object, what: str) -> str:
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else None
    if text is None:
        raise InvalidPerson(f"{what} must be one of {', '.join(spec['categories'])}")
    for code in spec["categories"]:
        if code.casefold() == text.casefold() or spec["categories"][code].casefold() == text.casefold():
            return code
    raise InvalidPerson(f"{what} must be one of {', '.join(spec['categories'])}")


def _field_value(spec: dict, rule: dict, value: object, what: str):
    kind = rule["type"]
    if kind == "category":
        return _code(spec, value, what)
    if kind == "category_list":
        items = value.split(";") if isinstance(value, str) else value
        if not isinstance(items, list):
            raise InvalidPerson(f"{what} must be a list")
        codes = [_code(spec, item, what) for item in items if str(item).strip()]
        if len(codes) != len(set(codes)) or len(codes) > rule.get("max", len(spec["categories"])):
            raise InvalidPerson(f"{what} must list at most {rule.get('max')} different codes")
        return codes
    if kind == "scores":
        if not isinstance(value, dict):
            raise InvalidPerson(f"{what} must map codes to numbers")
        scores = {}
        for raw_code, raw in value.items():
            code = _code(spec, raw_code, what)
            try:
                number = float(raw)
            except (TypeError, ValueError):
                raise InvalidPerson(f"{what}.{code} must be a number") from None
            if not rule.get("min", 0) <= number <= rule.get("max", 100) or number != number:
                raise InvalidPerson(f"{what}.{code} must be between {rule.get('min', 0)} and {rule.get('max', 100)}")
            scores[code] = int(number) if number.is_integer() else number
        return scores
    raise InvalidPerson(f"{what}: unsupported field type {kind}")


def validate_assessment(name: str, raw: object) -> dict:
    """One framework's assessment, checked against its declared fields."""
    spec = frameworks().get(name)
    if spec is None:
        raise InvalidPerson(f"unknown assessment framework {name!r}")
    if not isinstance(raw, dict):
        raise InvalidPerson(f"{name} must be an object")
    unknown = set(raw) - set(spec["fields"])
    if unknown:
        raise InvalidPerson(f"{name}: unknown field {sorted(unknown)[0]!r}")
    result = {}
    for key, rule in spec["fields"].items():
        value = raw.get(key)
        if value is None or value == "" or value == {} or value == []:
            continue
        result[key] = _field_value(spec, rule, value, f"{name}.{key}")
    if not any(key in result for key in spec.get("require_any", [])) and spec.get("require_any"):
        raise InvalidPerson(f"{name} needs {' or '.join(spec['require_any'])}")
    _check_relations(name, spec, result)
    return result


def _check_relations(name: str, spec: dict, result: dict) -> None:
    for key, rule in spec["fields"].items():
        if key not in result:
            continue
        other = rule.get("differs_from")
        if other and result.get(other) == result[key]:
            raise InvalidPerson(f"{name}.{key} must differ from {name}.{other}")
        anchor = rule.get("adjacent_to")
        if anchor and anchor in result:
            ring = spec.get("ring") or list(spec["categories"])
            i = ring.index(result[anchor])
            if result[key] not in (ring[i - 1], ring[(i + 1) % len(ring)]):
                raise InvalidPerson(f"{name}.{key} must be next to {name}.{anchor} ({ring[i - 1]} or "
                                    f"{ring[(i + 1) % len(ring)]})")


def validate_person(row: object) -> dict:
    """A directory entry from one input row; raises InvalidPerson with the reason."""
    if not isinstance(row, dict):
        raise InvalidPerson("row must be an object")
    primary = normalise_email(row.get("email"))
    aliases = row.get("aliases") or []
    if isinstance(aliases, str):
        aliases = [a for a in re.split(r"[;,\s]+", aliases) if a]
    if not isinstance(aliases, list) or len(aliases) > MAX_ALIASES:
        raise InvalidPerson(f"aliases must be a list of at most {MAX_ALIASES} addresses")
    emails = [primary] + [e for e in (normalise_email(a, "alias") for a in aliases) if e != primary]
    assessments = row.get("assessments") or {}
    if not isinstance(assessments, dict):
        raise InvalidPerson("assessments must be an object")
    return {
        "primary_email": primary,
        "emails": list(dict.fromkeys(emails)),
        "name": _text(row.get("name"), "name"),
        "team": _text(row.get("team"), "team"),
        "assessments": {name: validate_assessment(name, raw) for name, raw in sorted(assessments.items())},
    }


# --- input formats ----------------------------------------------------------------------------------

def csv_row_to_record(row: dict[str, str]) -> dict:
    """A flat CSV row (``disc.primary``, ``disc.scores.D``) as a nested record."""
    record: dict = {"assessments": {}}
    for column, value in row.items():
        if column is None:
            raise InvalidPerson("row has more cells than the header")
        key = column.strip().lower() if column.strip().lower() in BASE_COLUMNS else column.strip()
        value = (value or "").strip()
        if key in BASE_COLUMNS:
            record[key] = value
            continue
        parts = key.split(".")
        if len(parts) not in (2, 3) or not value:
            if len(parts) not in (2, 3):
                raise InvalidPerson(f"unknown column {column!r}")
            continue
        target = record["assessments"].setdefault(parts[0].lower(), {})
        if len(parts) == 2:
            target[parts[1].lower()] = value
        else:
            target.setdefault(parts[1].lower(), {})[parts[2]] = value
    record["assessments"] = {k: v for k, v in record["assessments"].items() if v}
    return record


def read_rows(text: str, fmt: str) -> Iterator[tuple[int, object]]:
    """(row number, raw record) pairs from CSV or JSON text; raises InvalidPerson if the file is unreadable."""
    if fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidPerson(f"not valid JSON (line {exc.lineno})") from None
        if isinstance(data, dict) and isinstance(data.get("people"), list):
            data = data["people"]
        if not isinstance(data, list):
            raise InvalidPerson('JSON must be a list of people or {"people": [...]}')
        yield from enumerate(data, start=1)
        return
    if fmt != "csv":
        raise InvalidPerson(f"unsupported format {fmt!r}")
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    if not reader.fieldnames or "email" not in [f.strip().lower() for f in reader.fieldnames]:
        raise InvalidPerson("CSV needs a header row with an 'email' column")
    for number, row in enumerate(reader, start=2):
        try:
            yield number, csv_row_to_record(row)
        except InvalidPerson as exc:
            yield number, exc


def detect_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    return "json" if suffix == ".json" else "csv"


# --- import -------------------------------------------------------------------------------------------

@dataclass
class ImportSummary:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"created": self.created, "updated": self.updated, "unchanged": self.unchanged,
                "rejected": [{"row": row, "reason": reason} for row, reason in self.rejected]}


def upsert_person(db: Database, person: dict) -> str:
    """Create or update the person owning these emails; returns created, updated or unchanged."""
    owners = set(people_store.owners(db, person["emails"]).values())
    if len(owners) > 1:
        raise InvalidPerson("these emails belong to more than one existing person")
    try:
        if not owners:
            people_store.create(db, person)
            return "created"
        person_id = owners.pop()
        current = people_store.get(db, person_id) or {}
        if all(current.get(k) == v for k, v in person.items()):
            return "unchanged"
        people_store.replace_fields(db, person_id, person)
        return "updated"
    except DuplicateKeyError:
        raise InvalidPerson("an email is already used by another person") from None


def import_rows(
    db: Database, rows: Iterable[tuple[int, object]], progress: Callable[[int], None] | None = None
) -> ImportSummary:
    """Validate and upsert every row; bad rows are reported, never fatal."""
    summary = ImportSummary()
    seen: dict[str, int] = {}
    for number, raw in rows:
        try:
            if isinstance(raw, InvalidPerson):
                raise raw
            person = validate_person(raw)
            repeated = next((seen[e] for e in person["emails"] if e in seen), None)
            if repeated is not None:
                raise InvalidPerson(f"an email repeats row {repeated} of this file")
            outcome = upsert_person(db, person)
            seen.update(dict.fromkeys(person["emails"], number))
            setattr(summary, outcome, getattr(summary, outcome) + 1)
        except InvalidPerson as exc:
            summary.rejected.append((number, str(exc)))
        if progress:
            progress(1)
    return summary
