"""Operator commands: ``calsync webhooks add|list|show|pause|resume|remove|rotate-secret|replay``.

Outbound endpoints (webhooks calsync sends to the rest of the product); Graph's inbound webhooks are not
configured here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from service import outbox
from service.cli.context import needs_data, runtime_from_env
from service.cli.output import echo_table, moment
from service.outbound import endpoints
from service.store import outbound as store


def register(cli: click.Group) -> None:
    cli.add_command(webhooks)


@click.group(help="Outbound webhook endpoints: signed events calsync sends to the rest of the product.")
def webhooks() -> None:
    pass


def _found(db, endpoint_id: str) -> store.Endpoint:
    endpoint = store.get_endpoint(db, endpoint_id)
    if endpoint is None:
        raise click.ClickException(f"no endpoint {endpoint_id}")
    return endpoint


@webhooks.command("add")
@click.argument("url")
@click.option("--event", "event_types", multiple=True, type=click.Choice(outbox.EVENT_TYPES),
              help="An event type to send (repeat it); default: all of them.")
@click.option("--description", default="", help="What the endpoint is for.")
@needs_data()
def add(url: str, event_types: tuple[str, ...], description: str) -> None:
    """Register URL; prints the endpoint id and its signing secret (shown this once)."""
    rt = runtime_from_env()
    try:
        created = endpoints.register(rt.db, rt.settings, url, list(event_types) or None, description)
    except endpoints.InvalidEndpoint as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"endpoint: {created.endpoint.id}\nevents:   {', '.join(created.endpoint.event_types)}")
    click.echo(f"secret:   {created.secret}   (shown once: store it in the receiver now)")


@webhooks.command("list")
@needs_data()
def list_endpoints() -> None:
    """Every endpoint: URL, status (failing when its last attempts failed), events and its deliveries."""
    rt = runtime_from_env()
    rows = []
    for endpoint in store.endpoints(rt.db):
        counts = store.counts_for(rt.db, endpoint.id)
        state = endpoints.health(endpoint)
        status = state + (f" ({endpoint.paused_reason})" if endpoint.paused_reason else "")
        rows.append((endpoint.url, status, moment(endpoint.failing_since, ""), moment(endpoint.last_success_at),
                     ", ".join(endpoint.event_types), counts["pending"], counts["delivered"], counts["failed"],
                     endpoint.id))
    echo_table(["URL", "STATUS", "FAILING SINCE", "LAST SUCCESS", "EVENTS", "PENDING", "DELIVERED", "FAILED", "ID"],
               rows, empty="no endpoints (add one with: calsync webhooks add URL)")


@webhooks.command("show")
@click.argument("endpoint_id")
@click.option("--attempts", default=20, show_default=True, type=click.IntRange(0, store.ATTEMPT_LOG_SIZE))
@needs_data()
def show(endpoint_id: str, attempts: int) -> None:
    """One endpoint as JSON, with its latest attempts (status, duration, error)."""
    rt = runtime_from_env()
    click.echo(json.dumps(endpoints.describe(rt.db, _found(rt.db, endpoint_id), attempts), indent=2))


@webhooks.command("pause")
@click.argument("endpoint_id")
@needs_data()
def pause(endpoint_id: str) -> None:
    """Stop sending to the endpoint (events are still recorded, for a replay)."""
    rt = runtime_from_env()
    if not endpoints.pause(rt.db, endpoint_id):
        raise click.ClickException(f"no endpoint {endpoint_id}")
    click.echo(f"{endpoint_id} paused")


@webhooks.command("resume")
@click.argument("endpoint_id")
@needs_data(redis=True)
def resume(endpoint_id: str) -> None:
    rt = runtime_from_env()
    if not endpoints.resume(rt.db, rt.redis, endpoint_id):
        raise click.ClickException(f"no endpoint {endpoint_id}")
    click.echo(f"{endpoint_id} active")


@webhooks.command("remove")
@click.argument("endpoint_id")
@needs_data()
def remove(endpoint_id: str) -> None:
    """Delete the endpoint and its deliveries."""
    rt = runtime_from_env()
    if not endpoints.remove(rt.db, endpoint_id):
        raise click.ClickException(f"no endpoint {endpoint_id}")
    click.echo(f"{endpoint_id} removed")


@webhooks.command("rotate-secret")
@click.argument("endpoint_id")
@needs_data()
def rotate_secret(endpoint_id: str) -> None:
    """A new signing secret (shown once); the old one keeps signing for 24 h."""
    rt = runtime_from_env()
    secret = endpoints.rotate(rt.db, rt.settings, endpoint_id)
    if secret is None:
        raise click.ClickException(f"no endpoint {endpoint_id}")
    click.echo(f"secret: {secret}   (shown once; the previous secret stays valid for 24 h)")


def _when(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date-time") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


@webhooks.command("replay")
@click.argument("endpoint_id")
@click.option("--delivery", "delivery_id", help="Send this one delivery again.")
@click.option("--since", help="Send every event from this time (ISO 8601; UTC when no offset) ...")
@click.option("--until", help="... until this time (default: now).")
@needs_data(redis=True)
def replay(endpoint_id: str, delivery_id: str | None, since: str | None, until: str | None) -> None:
    """Send one delivery, or every event of a time range, to the endpoint again."""
    rt = runtime_from_env()
    endpoint = _found(rt.db, endpoint_id)
    try:
        if delivery_id:
            if not endpoints.replay_delivery(rt.db, rt.redis, endpoint_id, delivery_id):
                raise click.ClickException(f"no delivery {delivery_id} for {endpoint_id}")
            queued = 1
        elif since:
            end = _when(until) if until else datetime.now(UTC)
            queued = endpoints.replay_range(rt.db, rt.redis, endpoint, _when(since), end)
        else:
            raise click.UsageError("give --delivery or --since")
    except endpoints.InvalidEndpoint as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{queued} delivery(ies) queued")
