"""The tips library: how to work with each style, what happens when styles mix, group notes.

Loaded from ``data/tips_<framework>.json``; choices rotate by date so the digest does not repeat itself.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from functools import cache

from service.insights.people import DATA_DIR, frameworks, styles


@dataclass(frozen=True)
class Tip:
    framework: str
    style: str
    text: str

    @property
    def key(self) -> str:
        """A stable name for the tip (its framework and a checksum of its text), for the coaching history."""
        return f"{self.framework}:{zlib.crc32(self.text.encode()):08x}"


@cache
def library() -> dict[str, dict]:
    """framework → its tips document (frameworks without a tips file have none)."""
    found = {}
    for name in frameworks():
        path = DATA_DIR / f"tips_{name}.json"
        if path.is_file():
            found[name] = json.loads(path.read_text(encoding="utf-8"))
    return found


def _pick(options: list[str], seed: str) -> str:
    return options[zlib.crc32(seed.encode()) % len(options)]


def tips_for(person: dict | None, my_styles: dict[str, str], seed: str, limit: int = 2) -> list[Tip]:
    """One or two tips for meeting ``person``: a pairing tip when the user's own style is known, then a style tip."""
    chosen: list[Tip] = []
    their = styles(person)
    for framework, code in their.items():
        doc = library().get(framework)
        if not doc or code not in doc.get("styles", {}):
            continue
        pair = doc.get("pairs", {}).get(f"{my_styles.get(framework)}+{code}")
        if pair and len(chosen) < limit:
            chosen.append(Tip(framework, code, pair))
        options = doc["styles"][code].get("tips") or []
        if options and len(chosen) < limit:
            chosen.append(Tip(framework, code, _pick(options, f"{seed}:{framework}:{code}")))
        if len(chosen) >= limit:
            break
    return chosen


def candidates(person: dict | None, my_styles: dict[str, str], seed: str) -> list[Tip]:
    """Every tip for meeting ``person``, best first: per framework the pairing tip (when the user's own style
    is known), then the style's tips in an order rotated by ``seed``."""
    found: list[Tip] = []
    for framework, code in styles(person).items():
        doc = library().get(framework)
        if not doc or code not in doc.get("styles", {}):
            continue
        pair = doc.get("pairs", {}).get(f"{my_styles.get(framework)}+{code}")
        if pair:
            found.append(Tip(framework, code, pair))
        options = list(doc["styles"][code].get("tips") or [])
        if options:
            first = zlib.crc32(f"{seed}:{framework}:{code}".encode()) % len(options)
            found += [Tip(framework, code, text) for text in options[first:] + options[:first]]
    return found


def size_notes(people: int) -> list[Tip]:
    """Tips for a meeting of ``people`` people (the user included), one per framework that has them."""
    notes = []
    for framework, doc in sorted(library().items()):
        for rule in doc.get("sizes", []):
            if rule.get("min_people", 0) <= people <= rule.get("max_people", people):
                notes.append(Tip(framework, rule["id"], rule["text"]))
                break
    return notes


def group_notes(framework: str, counts: dict[str, int]) -> list[str]:
    """Notes on a meeting's style mix, from the rules in the framework's tips file."""
    doc = library().get(framework)
    if not doc:
        return []
    total = sum(counts.values())
    notes = []
    for rule in doc.get("group_notes", []):
        if total < rule.get("min_total", 2):
            continue
        if any(counts.get(code, 0) < n for code, n in rule.get("min", {}).items()):
            continue
        if any(counts.get(code, 0) > n for code, n in rule.get("max", {}).items()):
            continue
        notes.append(rule["text"])
    return notes


@cache
def _by_key() -> dict[str, Tip]:
    found: dict[str, Tip] = {}
    for framework, doc in library().items():
        for code, style in doc.get("styles", {}).items():
            for text in style.get("tips") or []:
                found.setdefault(Tip(framework, code, text).key, Tip(framework, code, text))
        for pair, text in doc.get("pairs", {}).items():
            found.setdefault(Tip(framework, pair.split("+")[-1], text).key, Tip(framework, pair.split("+")[-1], text))
    return found


def by_key(key: str) -> Tip | None:
    """The tip a key names (feedback pages show it again), or None when the library no longer has it."""
    return _by_key().get(key)
