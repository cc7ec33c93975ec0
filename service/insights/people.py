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

from service.store import people as people_store

DATA_DIR = Path(__file__).parent / "data"
EMAIL_RE = re.compile(r"^[^@\s,;<>\"]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
MAX_ALIASES = 20
MAX_TEXT = 200
BASE_COLUMNS = {"email", "aliases", "name", "team", "manager", "visibility", "viewers", "external_tips"}
VISIBILITY_LEVELS = ("organization", "restricted", "private")
MAX_VIEWERS = 200


class InvalidPerson(ValueError):
    """A row that cannot be stored; ``problems`` says every reason (safe to show), the message joins them."""

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


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

class Problems:
    """The problems found in one row, all of them (a row is reported whole, not one mistake per import)."""

    def __init__(self):
        self.found: list[str] = []

    def check(self, step: Callable[[], object], default: object = None) -> object:
        """``step()``, or ``default`` with its InvalidPerson's problems noted."""
        try:
            return step()
        except InvalidPerson as exc:
            self.found += exc.problems
            return default

    def raise_any(self) -> None:
        if self.found:
            raise InvalidPerson(list(dict.fromkeys(self.found)))


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
    """A category code from its code or label in any case (``d``, ``Dominance``, ``intj``)."""
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
        scores, problems = {}, Problems()
        for raw_code, raw in value.items():
            code = problems.check(lambda raw_code=raw_code: _code(spec, raw_code, what))
            if code is not None:
                number = problems.check(lambda code=code, raw=raw: _score(rule, raw, f"{what}.{code}"))
                if number is not None:
                    scores[code] = number
        problems.raise_any()
        return scores
    raise InvalidPerson(f"{what}: unsupported field type {kind}")


def _score(rule: dict, raw: object, what: str) -> int | float:
    try:
        number = float(raw)
    except (TypeError, ValueError):
        raise InvalidPerson(f"{what} must be a number") from None
    if not rule.get("min", 0) <= number <= rule.get("max", 100) or number != number:
        raise InvalidPerson(f"{what} must be between {rule.get('min', 0)} and {rule.get('max', 100)}")
    return int(number) if number.is_integer() else number


def expand_notation(name: str, spec: dict, raw: dict) -> dict:
    """Common shorthands written into one field, spread over the fields they name: ``3w4`` is Enneagram type 3
    with wing 4, ``Di`` is DISC primary D and secondary I, ``INTJ-A`` is the 16-type INTJ (the framework's
    ``notation`` patterns in frameworks.json). A field already given keeps its value when it agrees."""
    patterns = [re.compile(p, re.IGNORECASE) for p in spec.get("notation", [])]
    if not patterns:
        return raw
    expanded = dict(raw)
    for key, value in raw.items():
        if not isinstance(value, str):
            continue
        for pattern in patterns:
            found = pattern.fullmatch(value.strip())
            if found is None:
                continue
            for field_name, part in found.groupdict().items():
                if part is None:
                    continue
                given = raw.get(field_name) if field_name != key else None
                if given not in (None, "") and str(given).strip().casefold() != part.casefold():
                    raise InvalidPerson(f"{name}.{key} {value.strip()!r} says {field_name} {part}, but "
                                        f"{name}.{field_name} is {given}")
                expanded[field_name] = part
            break
    return expanded


def validate_assessment(name: str, raw: object) -> dict:
    """One framework's assessment, checked against its declared fields; every problem is reported."""
    spec = frameworks().get(name)
    if spec is None:
        raise InvalidPerson(f"unknown assessment framework {name!r}")
    if isinstance(raw, str | int) and not isinstance(raw, bool):
        raw = {spec["style"]: str(raw)}   # a bare value is the style's field, or a notation (``3w4``)
    if not isinstance(raw, dict):
        raise InvalidPerson(f"{name} must be an object")
    problems = Problems()
    raw = problems.check(lambda: expand_notation(name, spec, raw), raw)
    problems.raise_any()   # a contradicting shorthand says it all
    for key in sorted(set(raw) - set(spec["fields"])):
        problems.found.append(f"{name}: unknown field {key!r}")
    result = {}
    for key, rule in spec["fields"].items():
        value = raw.get(key)
        if value is None or value == "" or value == {} or value == []:
            continue
        checked = problems.check(lambda key=key, rule=rule, value=value: _field_value(spec, rule, value,
                                                                                      f"{name}.{key}"))
        if checked is not None:
            result[key] = checked
    if spec.get("require_any") and not any(key in result or key in raw for key in spec["require_any"]):
        problems.found.append(f"{name} needs {' or '.join(spec['require_any'])}")
    problems.check(lambda: _check_relations(name, spec, result))
    problems.raise_any()
    return result


def _check_relations(name: str, spec: dict, result: dict) -> None:
    problems = Problems()
    for key, rule in spec["fields"].items():
        if key not in result:
            continue
        other = rule.get("differs_from")
        if other and result.get(other) == result[key]:
            problems.found.append(f"{name}.{key} must differ from {name}.{other}")
        anchor = rule.get("adjacent_to")
        if anchor and anchor in result:
            ring = spec.get("ring") or list(spec["categories"])
            i = ring.index(result[anchor])
            if result[key] not in (ring[i - 1], ring[(i + 1) % len(ring)]):
                problems.found.append(f"{name}.{key} must be next to {name}.{anchor} ({ring[i - 1]} or "
                                      f"{ring[(i + 1) % len(ring)]})")
    problems.raise_any()


def validate_person(row: object) -> dict:
    """A directory entry from one input row; raises InvalidPerson listing every problem in the row."""
    if not isinstance(row, dict):
        raise InvalidPerson("row must be an object")
    problems = Problems()
    primary = problems.check(lambda: normalise_email(row.get("email")))
    aliases = row.get("aliases") or []
    if isinstance(aliases, str):
        aliases = [a for a in re.split(r"[;,\s]+", aliases) if a]
    if not isinstance(aliases, list) or len(aliases) > MAX_ALIASES:
        problems.found.append(f"aliases must be a list of at most {MAX_ALIASES} addresses")
        aliases = []
    checked = [problems.check(lambda a=a: normalise_email(a, f"alias {str(a)[:64]!r}")) for a in aliases]
    name = problems.check(lambda: _text(row.get("name"), "name"))
    team = problems.check(lambda: _text(row.get("team"), "team"))
    assessments = row.get("assessments") or {}
    if not isinstance(assessments, dict):
        problems.found.append("assessments must be an object")
        assessments = {}
    validated = {}
    for framework, raw in sorted(assessments.items()):
        result = problems.check(lambda framework=framework, raw=raw: validate_assessment(framework, raw))
        if result is not None:
            validated[framework] = result
    say = problems.check(lambda: validate_say(row), {})
    problems.raise_any()
    emails = [primary] + [e for e in checked if e and e != primary]
    return {"primary_email": primary, "emails": list(dict.fromkeys(emails)), "name": name, "team": team,
            "assessments": validated, **say}


def validate_say(row: dict) -> dict:
    """The person's manager and their say over tips about them, only the fields the row carries (an import
    without them leaves what the person chose alone): ``manager`` (an address), ``visibility`` (organization,
    restricted, private), ``viewers`` (the addresses a restricted person lists, at most 200) and
    ``external_tips`` (whether attendees from outside their organisation may get tips about them)."""
    problems = Problems()
    found: dict = {}
    if row.get("manager") not in (None, ""):
        found["manager"] = problems.check(lambda: normalise_email(row.get("manager"), "manager"))
    if row.get("visibility") not in (None, ""):
        level = str(row.get("visibility")).strip().lower() if isinstance(row.get("visibility"), str) else None
        if level not in VISIBILITY_LEVELS:
            problems.found.append("visibility must be one of " + ", ".join(VISIBILITY_LEVELS))
        found["visibility"] = level
    if row.get("viewers") not in (None, ""):
        viewers = row.get("viewers")
        if isinstance(viewers, str):
            viewers = [v for v in re.split(r"[;,\s]+", viewers) if v]
        if not isinstance(viewers, list) or len(viewers) > MAX_VIEWERS:
            problems.found.append(f"viewers must be a list of at most {MAX_VIEWERS} addresses")
            viewers = []
        found["viewers"] = sorted({problems.check(lambda v=v: normalise_email(v, f"viewer {str(v)[:64]!r}")) or ""
                                   for v in viewers} - {""})
    if row.get("external_tips") not in (None, ""):
        flag = row.get("external_tips")
        text = str(flag).strip().lower() if isinstance(flag, str | bool) else ""
        if text not in ("true", "false", "yes", "no", "1", "0"):
            problems.found.append("external_tips must be true or false")
        found["external_tips"] = text in ("true", "yes", "1")
    problems.raise_any()
    return found


# --- input formats ----------------------------------------------------------------------------------

def column_target(column: str) -> tuple[str, ...] | str:
    """Where a CSV column goes: ``("email",)``, ``("disc", "primary")``, ``("disc", "scores", "D")``,
    ``("enneagram",)`` (a framework's notation, ``3w4``), or a string saying why it is not known. Framework,
    field and column names are read in any case."""
    key = column.strip()
    if key.lower() in BASE_COLUMNS:
        return (key.lower(),)
    parts = [p.strip() for p in key.split(".")]
    known = frameworks()
    framework = parts[0].lower()
    if framework not in known:
        return f"{column!r} is not a column calsync knows ({', '.join(sorted(BASE_COLUMNS))}, or " \
               f"<framework>.<field> for {', '.join(sorted(known))})"
    fields = known[framework]["fields"]
    if len(parts) == 1:
        return (framework,)
    field_name = parts[1].lower()
    if field_name not in fields or len(parts) > 3 or (len(parts) == 3) != (fields[field_name]["type"] == "scores"):
        return f"{column!r}: {framework} has no such field ({', '.join(fields)})"
    return (framework, field_name) if len(parts) == 2 else (framework, field_name, parts[2])


def csv_row_to_record(row: dict[str, str], targets: dict[str, tuple[str, ...]] | None = None) -> dict:
    """A flat CSV row (``disc.primary``, ``disc.scores.D``, ``enneagram`` = ``3w4``) as a nested record; columns
    without a target (unknown, warned about once) are left out."""
    record: dict = {"assessments": {}}
    for column, value in row.items():
        if column is None:
            raise InvalidPerson("row has more cells than the header")
        target = (targets or {}).get(column) if targets is not None else column_target(column)
        if not isinstance(target, tuple):
            continue
        value = (value or "").strip() if isinstance(value, str) else value
        if len(target) == 1 and target[0] in BASE_COLUMNS:
            record[target[0]] = value
        elif not value:
            continue
        elif len(target) == 1:
            record["assessments"].setdefault(target[0], {})[frameworks()[target[0]]["style"]] = value
        elif len(target) == 2:
            record["assessments"].setdefault(target[0], {})[target[1]] = value
        else:
            record["assessments"].setdefault(target[0], {}).setdefault(target[1], {})[target[2]] = value
    record["assessments"] = {k: v for k, v in record["assessments"].items() if v}
    return record


def read_rows(text: str, fmt: str, warn: Callable[[str], None] | None = None) -> Iterator[tuple[int, object]]:
    """(row number, raw record) pairs from CSV or JSON text; raises InvalidPerson if the file is unreadable.
    ``warn`` hears about each CSV column that is not imported (a typo, an extra column)."""
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
    targets = {column: column_target(column) for column in reader.fieldnames}
    for target in targets.values():
        if not isinstance(target, tuple) and warn is not None:
            warn(f"column {target}; it is ignored")
    for number, row in enumerate(reader, start=2):
        try:
            yield number, csv_row_to_record(row, targets)
        except InvalidPerson as exc:
            yield number, exc


def detect_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    return "json" if suffix == ".json" else "csv"


# --- import -------------------------------------------------------------------------------------------

CHUNK = 1000   # rows validated, looked up (one query) and written (one bulk write) together


@dataclass
class ImportSummary:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)      # (row, every problem joined by "; ")
    problems: dict[int, list[str]] = field(default_factory=dict)       # row -> each problem

    def reject(self, row: int, problems: list[str]) -> None:
        self.rejected.append((row, "; ".join(problems)))
        self.problems[row] = list(problems)

    def as_dict(self) -> dict:
        return {"created": self.created, "updated": self.updated, "unchanged": self.unchanged,
                "rejected": [{"row": row, "reason": reason, "problems": self.problems.get(row, [reason])}
                             for row, reason in sorted(self.rejected)]}


def import_rows(
    db: Database, rows: Iterable[tuple[int, object]], progress: Callable[[int], None] | None = None,
    chunk: int = CHUNK,
) -> ImportSummary:
    """Validate and upsert every row, ``chunk`` rows to a lookup and a bulk write; bad rows are reported with
    every problem they have, never fatal."""
    summary = ImportSummary()
    seen: dict[str, int] = {}
    batch: list[tuple[int, dict]] = []
    for number, raw in rows:
        try:
            if isinstance(raw, InvalidPerson):
                raise raw
            person = validate_person(raw)
            repeated = next((seen[e] for e in person["emails"] if e in seen), None)
            if repeated is not None:
                raise InvalidPerson(f"an email repeats row {repeated} of this file")
            seen.update(dict.fromkeys(person["emails"], number))
            batch.append((number, person))
        except InvalidPerson as exc:
            summary.reject(number, exc.problems)
            if progress:
                progress(1)
        if len(batch) >= chunk:
            _store(db, batch, summary, progress)
            batch = []
    if batch:
        _store(db, batch, summary, progress)
    summary.rejected.sort()
    return summary


def _store(db: Database, batch: list[tuple[int, dict]], summary: ImportSummary,
           progress: Callable[[int], None] | None) -> None:
    """One chunk: who already owns its emails (one query), then every create and update in one bulk write."""
    existing = {doc["_id"]: doc for doc in people_store.by_emails(db, [e for _, p in batch for e in p["emails"]])}
    owner_of = {email: person_id for person_id, doc in existing.items() for email in doc["emails"]}
    writes: list[tuple[int, str, str | None, dict]] = []     # (row, created | updated, person id, fields)
    targeted: dict[str, int] = {}
    for number, person in batch:
        owners = {owner_of[e] for e in person["emails"] if e in owner_of}
        if len(owners) > 1:
            summary.reject(number, ["these emails belong to more than one existing person"])
            continue
        if not owners:
            writes.append((number, "created", None, person))
            continue
        person_id = owners.pop()
        if person_id in targeted:
            summary.reject(number, [f"names the same existing person as row {targeted[person_id]}"])
            continue
        targeted[person_id] = number
        current = existing[person_id]
        if all(current.get(k) == v for k, v in person.items()):
            summary.unchanged += 1
        else:
            writes.append((number, "updated", person_id, person))
    refused = people_store.write_many(db, [(person_id, fields) for _, _, person_id, fields in writes])
    for position, (number, outcome, _, _) in enumerate(writes):
        if position in refused:
            summary.reject(number, ["an email is already used by another person"])
        else:
            setattr(summary, outcome, getattr(summary, outcome) + 1)
    if progress:
        progress(len(batch))
