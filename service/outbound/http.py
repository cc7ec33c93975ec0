"""POST a delivery to a receiver, with the guards a URL typed by an operator needs.

- Only ``http``/``https`` URLs with a host and no user-info; never the service itself (``CALSYNC_PUBLIC_URL``'s
  host and port, or any name resolving to its loopback/private address on that port).
- The host is resolved here, every address must be public (loopback, private, link-local, multicast and
  reserved ranges are refused unless ``CALSYNC_OUTBOUND_ALLOW_PRIVATE=1``), and the connection goes to the
  address that was checked, so a DNS answer that changes in between (rebinding) cannot redirect it.
- One deadline (``CALSYNC_OUTBOUND_TIMEOUT``, 10 s) covers connecting, TLS, sending and the status line,
  however slowly the receiver trickles bytes; at most ``MAX_RESPONSE_BYTES`` of the answer are read; no
  redirect is followed (a 3xx is a failure).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

MAX_RESPONSE_BYTES = 4096
MAX_URL_LENGTH = 2048
USER_AGENT = "calsync-webhooks/1"


class RefusedUrl(ValueError):
    """The URL may not be called; the message is safe to show (it never echoes the URL)."""


@dataclass(frozen=True)
class Answer:
    status: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def parse(url: object) -> SplitResult:
    """The URL's parts if it is one we could ever call; RefusedUrl otherwise."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH or any(c.isspace() for c in url):
        raise RefusedUrl(f"url must be an http(s) URL of at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise RefusedUrl("url is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise RefusedUrl("url must start with http:// or https://")
    if not parts.hostname:
        raise RefusedUrl("url has no host")
    if parts.username is not None or parts.password is not None:
        raise RefusedUrl("url must not carry a user name or password")
    if parts.fragment:
        raise RefusedUrl("url must not have a #fragment")
    return parts


def _port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def _addresses(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise RefusedUrl("url's host does not resolve") from None
    return list(dict.fromkeys(info[4][0] for info in infos))


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check(url: str, self_url: str, allow_private: bool) -> tuple[SplitResult, str]:
    """Parse, resolve and vet a receiver URL; returns its parts and the address to connect to."""
    parts = parse(url)
    port = _port(parts)
    addresses = _addresses(parts.hostname, port)
    if not addresses:
        raise RefusedUrl("url's host does not resolve")
    own = urlsplit(self_url)
    own_port = _port(own)
    # The same host name, or one of calsync's own non-public addresses (a public address may be a load
    # balancer shared with other services, so another host name there is someone else).
    own_private = {a for a in _addresses_or_none(own.hostname, own_port) if not _public(a)}
    if port == own_port and (parts.hostname.lower() == (own.hostname or "").lower() or set(addresses) & own_private):
        raise RefusedUrl("url points at calsync itself")
    if not allow_private and not all(_public(a) for a in addresses):
        raise RefusedUrl("url resolves to a loopback, private or reserved address")
    return parts, addresses[0]


def _addresses_or_none(host: str | None, port: int) -> list[str]:
    try:
        return _addresses(host, port) if host else []
    except RefusedUrl:
        return []


def post(parts: SplitResult, address: str, headers: dict[str, str], body: bytes, timeout: float,
         context: ssl.SSLContext) -> Answer:
    """POST ``body`` to the vetted URL at ``address`` within ``timeout`` seconds in all; never raises."""
    started = time.monotonic()
    deadline = started + timeout
    try:
        status = _exchange(parts, address, headers, body, deadline, context)
        error = None if 200 <= status < 300 else f"HTTP {status}"
    except TimeoutError:
        status, error = None, f"timed out after {timeout:g} s"
    except ssl.SSLError as exc:
        status, error = None, f"TLS: {exc.reason or type(exc).__name__}"
    except ConnectionRefusedError:
        status, error = None, "connection refused"
    except (OSError, ValueError) as exc:
        status, error = None, f"{type(exc).__name__}: {str(exc)[:200]}"
    return Answer(status, error, int((time.monotonic() - started) * 1000))


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _exchange(parts: SplitResult, address: str, headers: dict[str, str], body: bytes, deadline: float,
              context: ssl.SSLContext) -> int:
    sock = socket.create_connection((address, _port(parts)), timeout=_remaining(deadline))
    try:
        if parts.scheme == "https":
            sock.settimeout(_remaining(deadline))
            sock = context.wrap_socket(sock, server_hostname=parts.hostname)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"POST {target} HTTP/1.1", f"Host: {parts.netloc}", f"User-Agent: {USER_AGENT}",
                 "Content-Type: application/json", f"Content-Length: {len(body)}", "Connection: close",
                 *(f"{name}: {value}" for name, value in headers.items())]
        sock.settimeout(_remaining(deadline))
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        received = b""
        while b"\r\n" not in received:
            if len(received) >= MAX_RESPONSE_BYTES:
                raise ValueError("no status line in the first 4 KB")
            sock.settimeout(_remaining(deadline))
            chunk = sock.recv(MAX_RESPONSE_BYTES - len(received))
            if not chunk:
                raise ValueError("connection closed before a status line")
            received += chunk
        return _status(received.split(b"\r\n", 1)[0])
    finally:
        sock.close()


def _status(line: bytes) -> int:
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise ValueError("not an HTTP/1.x status line")
    return int(parts[1])
