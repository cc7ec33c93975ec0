"""Run the emulator for a test or benchmark: ``with running_emulator(tmp_path) as emu: ...``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from emulator.app import DEFAULT_CONTROL_SECRET, Emulator
from emulator.server import ServerThread
from emulator.tls import make_tls_files


class ControlError(RuntimeError):
    """The control API refused a request; carries the status and the Graph-shaped error body."""

    def __init__(self, status: int, body: Any):
        code = body.get("error", {}).get("code") if isinstance(body, dict) else None
        super().__init__(f"emulator control call failed: {status} {code}")
        self.status = status
        self.body = body


class ControlClient:
    """A small requests wrapper of the control API (/_emulator/...)."""

    def __init__(self, base_url: str, secret: str, ca_bundle: str, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = ca_bundle
        self.session.headers["Authorization"] = f"Bearer {secret}"

    def request(self, method: str, path: str, json: Any = None, params: dict | None = None,
                timeout: float | None = None) -> Any:
        response = self.session.request(method, f"{self.base_url}/_emulator{path}", json=json, params=params,
                                        timeout=timeout or self.timeout)
        body = response.json() if response.content else None
        if response.status_code >= 400:
            raise ControlError(response.status_code, body)
        return body

    # directory
    def create_tenant(self, **fields: Any) -> dict:
        return self.request("POST", "/tenants", fields)

    def create_user(self, **fields: Any) -> dict:
        return self.request("POST", "/users", fields)

    def set_mailbox(self, user_id: str, state: str) -> None:
        """Make the user's mailbox unreadable (no_license, guest, on_premises, not_supported, invalid_user,
        access_denied, disabled: emulator.state.MAILBOX_STATES) or readable again ("ok")."""
        self.request("PUT", f"/users/{user_id}/mailbox", {"state": state})

    def token(self, user_id: str | None = None, tenant_id: str | None = None, **fields: Any) -> str:
        """A Graph access token: delegated for ``user_id``, or application-only for ``tenant_id``."""
        body = {k: v for k, v in {"user_id": user_id, "tenant_id": tenant_id, **fields}.items() if v is not None}
        return self.request("POST", "/tokens", body)["access_token"]

    def set_working_hours(self, user_id: str, working_hours: dict) -> dict:
        return self.request("PUT", f"/users/{user_id}/working-hours", working_hours)

    # calendars
    def create_calendar(self, user_id: str, name: str | None, owner_user_id: str | None = None,
                        **fields: Any) -> dict:
        """A new calendar of the user's, or one ``owner_user_id`` owns and shares with them (its copy is returned)."""
        body = {k: v for k, v in {"name": name, "owner_user_id": owner_user_id, **fields}.items() if v is not None}
        return self.request("POST", f"/users/{user_id}/calendars", body)

    def rename_calendar(self, user_id: str, calendar_id: str, name: str) -> dict:
        return self.request("PATCH", f"/users/{user_id}/calendars/{calendar_id}", {"name": name})

    def delete_calendar(self, user_id: str, calendar_id: str) -> None:
        self.request("DELETE", f"/users/{user_id}/calendars/{calendar_id}")

    def calendars(self, user_id: str) -> list[dict]:
        return self.request("GET", f"/users/{user_id}/calendars")["value"]

    # events
    def create_event(self, user_id: str, event: dict, calendar_id: str | None = None) -> dict:
        body = event | {"calendar_id": calendar_id} if calendar_id else event
        return self.request("POST", f"/users/{user_id}/events", body)

    def create_events(self, user_id: str, events: list[dict], calendar_id: str | None = None) -> list[dict]:
        bodies = [e | {"calendar_id": calendar_id} for e in events] if calendar_id else events
        return self.request("POST", f"/users/{user_id}/events/batch", {"events": bodies})["value"]

    def update_event(self, user_id: str, event_id: str, changes: dict) -> dict:
        return self.request("PATCH", f"/users/{user_id}/events/{event_id}", changes)

    def move_event(self, user_id: str, event_id: str, calendar_id: str) -> dict:
        """Move an event to another of the user's calendars (Outlook's drag): the immutable id stays, ``restId``
        (the regular id) changes."""
        return self.request("POST", f"/users/{user_id}/events/{event_id}/move", {"calendar_id": calendar_id})

    def delete_event(self, user_id: str, event_id: str) -> None:
        self.request("DELETE", f"/users/{user_id}/events/{event_id}")

    def calendar(self, user_id: str, start: str, end: str, calendar_id: str | None = None) -> list[dict]:
        """The truth: a calendar's full view in the window (the default calendar's unless named), as calendarView."""
        params = {"start": start, "end": end} | ({"calendar_id": calendar_id} if calendar_id else {})
        return self.request("GET", f"/users/{user_id}/calendar", params=params)["value"]

    def inject_delta(self, user_id: str, entries: list, calendar_id: str | None = None) -> None:
        """Raw entries the next delta round of the calendar returns as they are (bad input, on purpose)."""
        body = {"entries": entries} | ({"calendar_id": calendar_id} if calendar_id else {})
        self.request("POST", f"/users/{user_id}/delta/inject", body, timeout=60)

    def invalidate_delta(self, user_id: str, mode: str = "gone") -> None:
        self.request("POST", f"/users/{user_id}/delta/invalidate", {"mode": mode})

    # time and faults
    def advance_clock(self, seconds: float = 0, minutes: float = 0) -> dict:
        return self.request("POST", "/clock/advance", {"seconds": seconds, "minutes": minutes})

    def set_quirks(self, **quirks: Any) -> dict:
        """Undocumented behaviours developers report (silent_occurrence_removal)."""
        return self.request("PUT", "/quirks", quirks)

    def set_faults(self, **config: Any) -> dict:
        return self.request("PUT", "/faults", config)

    def clear_faults(self) -> None:
        self.request("DELETE", "/faults")

    # mailbox limits
    def set_limits(self, **config: Any) -> dict:
        """mailbox_concurrency, mailbox_requests_per_10_minutes (absent: Outlook's 4 and 10,000; None lifts)."""
        return self.request("PUT", "/limits", config)

    def limits(self) -> dict:
        """The limits, throttled counts by reason, and per (app, mailbox) peak concurrency and requests."""
        return self.request("GET", "/limits")

    def reset_limits(self) -> None:
        self.request("DELETE", "/limits")

    # subscriptions and deliveries
    def subscriptions(self) -> list[dict]:
        return self.request("GET", "/subscriptions")["value"]

    def remove_subscription(self, subscription_id: str) -> None:
        self.request("DELETE", f"/subscriptions/{subscription_id}")

    def send_lifecycle(self, subscription_id: str, event: str) -> None:
        self.request("POST", f"/subscriptions/{subscription_id}/lifecycle", {"lifecycleEvent": event})

    def deliveries(self, kind: str | None = None) -> list[dict]:
        return self.request("GET", "/deliveries", params={"kind": kind} if kind else None)["value"]

    def clear_deliveries(self) -> None:
        self.request("DELETE", "/deliveries")

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until every queued notification was delivered, given up, or dropped."""
        self.request("POST", "/deliveries/wait-idle", {"timeout": timeout}, timeout=timeout + 10)

    def graph_requests(self) -> list[dict]:
        return self.request("GET", "/requests")["value"]

    def reset(self) -> None:
        self.request("POST", "/reset")

    def close(self) -> None:
        self.session.close()


@dataclass
class EmulatorHandle:
    base_url: str
    ca_bundle: str
    control_secret: str
    control: ControlClient
    emulator: Emulator = field(repr=False)

    @property
    def authority_host(self) -> str:
        return self.base_url

    @property
    def graph_url(self) -> str:
        return self.base_url + "/v1.0"

    def settings_overrides(self) -> dict[str, str]:
        """Keyword arguments for calsync's ``Settings.with_overrides(**...)``."""
        return {"authority_host": self.authority_host, "graph_url": self.graph_url, "ca_bundle": self.ca_bundle,
                "teams_service_url": self.base_url + "/teams/connector/",
                "botframework_jwks_url": self.base_url + "/teams/botframework/keys",
                "slack_api_url": self.base_url + "/slack/api/",
                "slack_authorize_url": self.base_url + "/slack/oauth/v2/authorize",
                "slack_client_id": self.emulator.slack.client_id,
                "slack_client_secret": self.emulator.slack.client_secret,
                "slack_signing_secret": self.emulator.slack.signing_secret}


@contextlib.contextmanager
def running_emulator(directory: str | Path, *, port: int = 0, control_secret: str = DEFAULT_CONTROL_SECRET,
                     **options: Any) -> Iterator[EmulatorHandle]:
    """Start an emulator on a free loopback port with a fresh CA in ``directory``; stop it on exit.

    ``options`` go to ``Emulator`` (seed, time_scale, batch_window, max_batch, delivery_timeout,
    retry_timeout, handshake_timeout, notify_ca_bundle, apps, identity).
    """
    tls = make_tls_files(Path(directory))
    emulator = Emulator(control_secret=control_secret, **options)
    server = ServerThread(emulator, tls, "127.0.0.1", port).start()
    control = ControlClient(server.base_url, control_secret, str(tls.ca_pem))
    try:
        yield EmulatorHandle(server.base_url, str(tls.ca_pem), control_secret, control, emulator)
    finally:
        control.close()
        server.stop()
