"""GraphClient: the one way calsync calls Microsoft Graph.

Every call has a timeout. 429/503/504 honour ``Retry-After`` (fractional seconds too) for short waits
in the call itself; a longer wait raises ``Throttled`` so the job can be rescheduled instead of holding a
worker (other users' jobs keep flowing). With a ``MailboxGate`` every request holds one of the mailbox's
four slots (Outlook's concurrency limit, across all workers) and a 429 pauses the whole mailbox for its
``Retry-After``. A 401 refreshes the token once. Graph's error bodies become
``GraphError`` with the documented ``code``; callers branch on status and code, never on the message.

Every request asks for immutable ids (``Prefer: IdType="ImmutableId"``: "This header only applies to the
request it is included with. If you want to always use immutable IDs, you must include this header with
every API request", outlook-immutable-id) and carries a ``client-request-id`` of its own; every failed
call is logged with that id and Graph's ``request-id``, the two Microsoft's support asks for.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urljoin, urlsplit

import requests
import requests.adapters

from service import metrics
from service.mailbox import MailboxBusy, MailboxGate

log = logging.getLogger(__name__)

RETRYABLE = frozenset({429, 503, 504})
IMMUTABLE_IDS = 'IdType="ImmutableId"'
# Graph's answers for a mailbox calsync cannot read, whatever the token (guests, no Exchange Online licence,
# on-premises or soft-deleted mailboxes; Microsoft KB 4462988: HTTP 404, "MailboxNotEnabledForRESTAPI or
# MailboxNotSupportedForRESTAPI", "REST API is not yet supported for this mailbox").
NO_MAILBOX_CODES = frozenset({"mailboxnotenabledforrestapi", "mailboxnotsupportedforrestapi",
                              "errormailboxnotenabledforrestapi"})


MAX_BATCH = 20    # requests in one JSON batch (graph/json-batching: "currently limited to 20")


@dataclass
class BatchItem:
    """One request of a ``$batch``: ``url`` relative to the version (``users/{id}/calendars``); ``mailbox`` is
    whose mailbox it reads (its slot is held while the batch is out), empty for directory or service calls."""

    id: str
    method: str
    url: str
    body: dict | None = None
    mailbox: str = ""

    def payload(self) -> dict:
        request: dict = {"id": self.id, "method": self.method, "url": "/" + self.url.lstrip("/"),
                         "headers": {"Prefer": IMMUTABLE_IDS}}
        if self.body is not None:
            request["body"] = self.body
            request["headers"]["Content-Type"] = "application/json"
        return request


class TokenProvider(Protocol):
    def __call__(self, force_refresh: bool = False) -> str: ...


class GraphError(Exception):
    """Graph answered with an error status (or could not be reached: status 0)."""

    def __init__(self, status: int, code: str = "", message: str = "", retry_after: float | None = None,
                 request_id: str | None = None, client_request_id: str | None = None):
        super().__init__(f"Graph {status} {code}".strip())
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.request_id = request_id                  # Graph's, for Microsoft's support
        self.client_request_id = client_request_id    # ours, sent with the request


class Throttled(GraphError):
    """Still throttled or unavailable after the waits we allow inside one call."""


class Unauthorized(GraphError):
    """401 even with a freshly refreshed token."""


@dataclass
class GraphClient:
    session: requests.Session
    base_url: str
    token: TokenProvider
    timeout: float = 10.0
    max_attempts: int = 4
    max_inline_wait: float = 5.0          # longer Retry-After values go back to the job layer
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    requests_made: int = 0                # observability: Graph calls this client sent
    gate: MailboxGate | None = None       # Outlook's per-mailbox limits, shared by every worker
    mailbox: str = ""                     # whose mailbox the requests read (the signed-in user)

    def url(self, path_or_url: str) -> str:
        """Absolute Graph URL; nextLink/deltaLink values are used exactly as Graph returned them."""
        if path_or_url.startswith(("https://", "http://")):
            return path_or_url
        return urljoin(self.base_url.rstrip("/") + "/", path_or_url.lstrip("/"))

    def request(self, method: str, path_or_url: str, *, gated: bool = True, **kwargs) -> requests.Response:
        """Send one logical request; returns the 2xx response or raises GraphError. ``gated=False``: hold no slot
        of this client's mailbox (a ``$batch``, whose requests hold their own mailboxes' slots)."""
        url = self.url(path_or_url)
        headers = dict(kwargs.pop("headers", None) or {})
        headers["Prefer"] = ", ".join(p for p in (headers.get("Prefer"), IMMUTABLE_IDS) if p)
        headers["client-request-id"] = client_request_id = str(uuid.uuid4())
        refreshed = False
        new_connection = False
        for attempt in range(1, self.max_attempts + 1):
            response = None
            headers["Authorization"] = f"Bearer {self.token(force_refresh=refreshed)}"
            try:
                with self._slot() if gated else nullcontext():
                    self.requests_made += 1
                    send = self._send_on_new_connection if new_connection else self.session.request
                    started = time.monotonic()
                    try:
                        response = send(method, url, headers=headers, timeout=self.timeout, **kwargs)
                    finally:
                        status = str(response.status_code) if response is not None else "error"
                        metrics.GRAPH_SECONDS.labels(method, status).observe(time.monotonic() - started)
            except MailboxBusy as exc:
                raise Throttled(429, "MailboxBusy", str(exc), retry_after=exc.retry_after) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                _log_failure(method, url, 0, type(exc).__name__, None, client_request_id, attempt)
                if attempt == self.max_attempts:
                    raise GraphError(0, "unreachable", type(exc).__name__,
                                     client_request_id=client_request_id) from None
                self._backoff(attempt, None)
                continue
            if response.status_code < 400:
                return response
            error = _error_from(response, client_request_id)
            _log_failure(method, url, error.status, error.code, error.request_id, client_request_id, attempt)
            if response.status_code == 401 and not refreshed:
                refreshed = True
                continue
            if response.status_code == 401:
                raise Unauthorized(401, error.code, error.message, request_id=error.request_id,
                                   client_request_id=client_request_id)
            if response.status_code not in RETRYABLE:
                raise error
            wait = error.retry_after
            if response.status_code == 429 and self.gate is not None:
                self.gate.pause(self.mailbox, wait if wait is not None else 2.0 ** attempt)
            if attempt == self.max_attempts or (wait is not None and wait > self.max_inline_wait):
                raise Throttled(error.status, error.code, error.message, retry_after=wait, request_id=error.request_id,
                                client_request_id=client_request_id)
            new_connection = response.status_code == 503  # Graph advises a new connection for a retry after a 503
            self._backoff(attempt, wait)
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns or raises

    def _slot(self):
        return self.gate.slot(self.mailbox) if self.gate is not None else nullcontext()

    def _send_on_new_connection(self, method: str, url: str, *, timeout: float, **kwargs) -> requests.Response:
        """One request over a connection of its own, leaving the shared session's pool to the other threads.

        The session prepares it (headers, verify, proxies as configured); only the transport is a one-off
        adapter, closed once the body has been read.
        """
        prepared = self.session.prepare_request(requests.Request(method, url, **kwargs))
        settings = self.session.merge_environment_settings(prepared.url, {}, None, None, None)
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=1)
        try:
            response = adapter.send(prepared, timeout=timeout, **settings)
            response.content  # noqa: B018 - read the body before the connection goes
            return response
        finally:
            adapter.close()

    def get_json(self, path_or_url: str, **kwargs) -> dict:
        return self.request("GET", path_or_url, **kwargs).json()

    def batch(self, items: list[BatchItem]) -> dict[str, dict | GraphError]:
        """Up to ``MAX_BATCH`` requests in one ``POST /$batch`` (graph/json-batching); each one's JSON body (``{}``
        when it has none) or its ``GraphError``, by the item's id.

        Each request is what it would be alone: it asks for immutable ids, holds a slot of the mailbox it reads
        (``BatchItem.mailbox``; Graph counts every request of a batch against the limits), a 429 pauses that
        mailbox, and 429/503/504 are sent again, in a new batch of the throttled ones, after the longest
        Retry-After among them ("You may retry all the failed requests in a new batch after the longest
        retry-after value", graph/throttling), within this client's attempts and inline wait; past those, that
        request's answer is ``Throttled``. The batch itself has this client's retries (``request``)."""
        if not 0 < len(items) <= MAX_BATCH or len({item.id.lower() for item in items}) != len(items):
            raise ValueError(f"a batch holds 1 to {MAX_BATCH} requests with distinct ids")
        answers: dict[str, dict | GraphError] = {}
        pending = list(items)
        for attempt in range(1, self.max_attempts + 1):
            retry: list[tuple[BatchItem, GraphError]] = []
            with ExitStack() as slots:
                sendable = []
                for item in pending:
                    try:
                        if self.gate is not None and item.mailbox:
                            slots.enter_context(self.gate.slot(item.mailbox))
                        sendable.append(item)
                    except MailboxBusy as exc:
                        answers[item.id] = Throttled(429, "MailboxBusy", str(exc), retry_after=exc.retry_after)
                if not sendable:
                    break
                body = {"requests": [item.payload() for item in sendable]}
                got = self.request("POST", "$batch", gated=False, json=body).json()
            by_id = {str(r.get("id", "")).lower(): r for r in (got.get("responses") or []) if isinstance(r, dict)}
            for item in sendable:
                answer = by_id.get(item.id.lower())
                if answer is None:
                    answers[item.id] = GraphError(0, "BatchResponseMissing", "no response for this request")
                    continue
                status = int(answer.get("status") or 0)
                content = answer.get("body")
                if 200 <= status < 400:
                    answers[item.id] = content if isinstance(content, dict) else {}
                    continue
                error = _batch_error(status, content, answer.get("headers"))
                _log_failure(item.method, self.url(item.url), status, error.code, error.request_id, "-", attempt)
                if status == 429 and self.gate is not None and item.mailbox:   # as request() does
                    self.gate.pause(item.mailbox, error.retry_after if error.retry_after is not None
                                    else 2.0 ** attempt)
                if status in RETRYABLE:
                    retry.append((item, error))
                else:
                    answers[item.id] = error
            if not retry:
                break
            longest = max((e.retry_after for _, e in retry if e.retry_after is not None), default=None)
            if attempt == self.max_attempts or (longest is not None and longest > self.max_inline_wait):
                for item, error in retry:
                    answers[item.id] = Throttled(error.status, error.code, error.message,
                                                 retry_after=error.retry_after, request_id=error.request_id)
                break
            self._backoff(attempt, longest)
            pending = [item for item, _ in retry]
        return answers

    def _backoff(self, attempt: int, retry_after: float | None) -> None:
        if retry_after is not None:
            delay = retry_after
        else:
            delay = min(0.5 * 2 ** (attempt - 1), self.max_inline_wait) * random.uniform(0.5, 1.0)  # noqa: S311
        log.info("Graph asked us to wait %.2fs (attempt %d)", delay, attempt)
        self.sleep(delay)


def retry_after_seconds(value: str | None) -> float | None:
    """Parse Retry-After as (possibly fractional) seconds; HTTP dates and junk count as absent."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(seconds, 0.0) if seconds == seconds else None  # NaN is not a delay


def mailbox_unavailable(exc: GraphError, *, mailbox_wide: bool = False) -> str | None:
    """Why this error means calsync cannot read the mailbox at all, as a reason code; None when it does not.

    ``no_exchange_mailbox``: MailboxNotEnabledForRESTAPI and its kin, wherever they come from. With
    ``mailbox_wide`` (the caller asked for something only a mailbox answers, such as its calendar list, not one
    calendar of it) also ``mailbox_not_found`` (404 ErrorInvalidUser) and ``mailbox_access_denied`` (403
    ErrorAccessDenied: an application access policy, a disabled account).
    """
    code = (exc.code or "").lower()
    if code in NO_MAILBOX_CODES:
        return "no_exchange_mailbox"
    if mailbox_wide and exc.status == 404 and code == "errorinvaliduser":
        return "mailbox_not_found"
    if mailbox_wide and exc.status == 403 and code == "erroraccessdenied":
        return "mailbox_access_denied"
    return None


def _log_failure(method: str, url: str, status: int, code: str, request_id: str | None, client_request_id: str,
                 attempt: int) -> None:
    """One line per failed Graph call, with the ids Microsoft's support asks for (the path only: query strings
    carry delta and skip tokens)."""
    log.warning("Graph %s %s failed: %s %s (attempt %d, request-id %s, client-request-id %s)", method,
                urlsplit(url).path, status or "unreachable", code, attempt, request_id or "-", client_request_id)


def _batch_error(status: int, body: object, headers: object) -> GraphError:
    """A failed request of a batch as the GraphError it would have raised alone."""
    headers = {str(k).lower(): str(v) for k, v in headers.items()} if isinstance(headers, dict) else {}
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    inner = error.get("innerError") if isinstance(error.get("innerError"), dict) else {}
    request_id = headers.get("request-id") or inner.get("request-id")
    return GraphError(status, str(error.get("code") or "")[:100], str(error.get("message") or "")[:500],
                      retry_after_seconds(headers.get("retry-after")),
                      request_id=str(request_id)[:100] if request_id else None)


def _error_from(response: requests.Response, client_request_id: str | None = None) -> GraphError:
    code, message, inner = "", "", {}
    try:
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            code = str(body["error"].get("code") or "")[:100]
            message = str(body["error"].get("message") or "")[:500]
            inner = body["error"].get("innerError") if isinstance(body["error"].get("innerError"), dict) else {}
    except ValueError:
        pass
    request_id = response.headers.get("request-id") or inner.get("request-id")
    return GraphError(response.status_code, code, message, retry_after_seconds(response.headers.get("Retry-After")),
                      request_id=str(request_id)[:100] if request_id else None,
                      client_request_id=client_request_id)
