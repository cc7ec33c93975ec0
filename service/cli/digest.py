"""``calsync people import FILE``, ``calsync digest preview --user EMAIL`` and ``calsync tenants domains``."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import click

from service.cli.context import needs_data, runtime_from_env
from service.digest.render import render_html, render_text, subject
from service.digest.send import compose
from service.insights import days, org
from service.insights.people import InvalidPerson, detect_format, import_rows, read_rows
from service.store import tenants as tenants_store
from service.store import users as users_store
from service.store import utcnow


def register(cli: click.Group) -> None:
    cli.add_command(people)
    cli.add_command(digest)
    cli.add_command(tenants)


@click.group(help="Tenants: the domains that count as inside each organization.")
def tenants() -> None:
    pass


@tenants.command("domains")
@click.argument("tenant_id")
@click.argument("domains", nargs=-1)
@click.option("--clear", is_flag=True, help="Remove every configured domain.")
@needs_data()
def tenant_domains(tenant_id: str, domains: tuple[str, ...], clear: bool) -> None:
    """Show, or replace with DOMAINS, the domains of TENANT_ID that count as internal (each user's own email
    domain always does)."""
    rt = runtime_from_env()
    if domains or clear:
        cleaned = [org.clean_domain(d) for d in domains]
        bad = [d for d, c in zip(domains, cleaned, strict=True) if c is None]
        if bad:
            raise click.ClickException(f"not a domain name: {', '.join(bad)}")
        tenants_store.set_domains(rt.db, tenant_id, cleaned)
    click.echo(f"{tenant_id}: {', '.join(tenants_store.domains(rt.db, tenant_id)) or '(none)'}")


@click.group(help="The people directory (names, emails, assessment results).")
def people() -> None:
    pass


@people.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["auto", "csv", "json"]), default="auto", show_default=True)
@needs_data()
def import_people(file: Path, fmt: str) -> None:
    """Create or update people from a CSV or JSON file. Every problem of a rejected row is listed; unknown CSV
    columns are named and ignored; the exit code is 1 when any row was rejected."""
    fmt = detect_format(file) if fmt == "auto" else fmt
    warnings: list[str] = []
    try:
        rows = list(read_rows(file.read_text(encoding="utf-8-sig"), fmt, warn=warnings.append))
    except (InvalidPerson, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{file.name}: {exc}") from None
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    rt = runtime_from_env()
    # The bar goes to stderr so the summary on stdout stays clean for scripts.
    with click.progressbar(length=len(rows), label=f"Importing {len(rows):,} row(s)", file=sys.stderr) as bar:
        summary = import_rows(rt.db, rows, progress=bar.update)
    click.echo(f"created {summary.created}, updated {summary.updated}, unchanged {summary.unchanged}, "
               f"rejected {len(summary.rejected)}")
    for row, _ in summary.rejected:
        problems = summary.problems.get(row) or []
        click.echo(f"  row {row}: {problems[0]}" if len(problems) < 2 else
                   f"  row {row}:" + "".join(f"\n    - {p}" for p in problems))
    if summary.rejected:
        click.echo(f"{len(summary.rejected)} row(s) rejected: fix them and import the file again "
                   "(rows already imported come back unchanged)", err=True)
        raise SystemExit(1)


@click.group(help="Daily digest emails.")
def digest() -> None:
    pass


@digest.command("preview")
@click.option("--user", "user_key", required=True, help="The user's email (or Graph id).")
@click.option("--date", "day", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Local date (YYYY-MM-DD); default: today in the user's time zone.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the HTML version to this file.")
@needs_data()
def preview(user_key: str, day, html_file: Path | None) -> None:
    """Render a user's digest to the terminal (and an .html file) without sending it."""
    rt = runtime_from_env()
    user = users_store.find(rt.db, user_key)
    if user is None:
        raise click.ClickException(f"no user {user_key!r}")
    local_day: date = day.date() if day else utcnow().astimezone(days.user_zone(user)).date()
    result = compose(rt.db, rt.settings, user, local_day, record=False, preview=True)   # says why, if not sent
    click.echo(f"Subject: {subject(result)}\n")
    click.echo(render_text(result))
    if html_file:
        html_file.write_text(render_html(result), encoding="utf-8")
        click.echo(f"HTML written to {html_file}", err=True)
