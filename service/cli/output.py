"""What the commands print for people: aligned tables with a header row, times in words."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import click

from service import when

OPERATOR_ZONE = "UTC"   # the commands show operators' times in UTC, and say so


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], empty: str = "(none)") -> str:
    """Columns padded to their widest cell (the last one left ragged); ``empty`` when there are no rows."""
    cells = [[_cell(value) for value in row] for row in rows]
    if not cells:
        return empty
    widths = [max(len(str(h)), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    lines = [_line(headers, widths), _line(["-" * w for w in widths], widths)]
    lines += [_line(row, widths) for row in cells]
    return "\n".join(lines)


def _line(values: Sequence[str], widths: list[int]) -> str:
    return "  ".join(str(v).ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return moment(value)
    return " ".join(str(value).split())


def moment(value: datetime | None, missing: str = "never") -> str:
    """An operator's time: "Sun 13 Dec, 18:31 (3 minutes ago)" in UTC."""
    return when.moment(value, OPERATOR_ZONE, missing=missing)


def echo_table(headers: Sequence[str], rows: Iterable[Sequence[object]], empty: str = "(none)",
               zone_note: bool = True) -> None:
    click.echo(table(headers, rows, empty))
    if zone_note:
        click.echo(f"(times in {OPERATOR_ZONE})", err=True)
