"""No cross-site posts, no foreign Host: ASGI middleware answering 403 to a request whose Host
header names neither the served address, a loopback name nor an `--allowed-host` (which would
open DNS rebinding), and to a POST whose Origin is not the page it was served to."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from .limits import refuse
from .uploads import BadRequest

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
WILDCARDS = ("0.0.0.0", "::", "")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def _host_port(netloc: str, default_port: int) -> tuple[str, int] | None:
    """('name', port) of 'name[:port]' (brackets off IPv6), or None if it does not parse."""
    try:
        parts = urlsplit(f"//{netloc}")
        return (parts.hostname or "").lower(), parts.port or default_port
    except ValueError:
        return None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostGuard:
    """403 for a Host not served here and for cross-origin POSTs (the `Origin` header's
    scheme://host:port differs from the request's Host, or `Sec-Fetch-Site: cross-site`)."""

    def __init__(self, app: Any, served_host: str, allowed_hosts: Iterable[str] = ()) -> None:
        self.app = app
        self.extra = frozenset(name.lower().strip("[]") for name in allowed_hosts)
        self.names = frozenset({served_host.lower().strip("[]"), *LOOPBACK_NAMES, *self.extra})
        self.any_ip = served_host in WILDCARDS  # listening everywhere: any address literal

    def host_allowed(self, name: str) -> bool:
        """Whether a request naming host `name` is one this server answers."""
        return name in self.names or (self.any_ip and _is_ip(name))

    def problem(self, scope: dict) -> str | None:
        """Why this request is refused, or None."""
        headers = {k.lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        host = _host_port(headers.get(b"host", ""), 80) if b"host" in headers else None
        if host is None or not self.host_allowed(host[0]):
            shown = headers.get(b"host", "(none)")[:100]
            return (f"the Host header {shown!r} is not a name this server answers to; "
                    "start it with --allowed-host NAME to add one")
        if scope.get("method", "GET") in SAFE_METHODS:
            return None
        if headers.get(b"sec-fetch-site") == "cross-site":
            return "cross-site requests are refused"
        origin = headers.get(b"origin")
        if origin is None:
            return None  # not a browser (curl, scripts): nothing to check
        parts = urlsplit(origin) if origin != "null" else None
        default = 443 if parts is not None and parts.scheme == "https" else 80
        source = _host_port(parts.netloc, default) if parts is not None else None
        if source is None or (source != host and source[0] not in self.extra):
            return f"cross-origin POST from {origin[:100]!r} refused"
        return None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            problem = self.problem(scope)
            if problem is not None:
                await refuse(send, BadRequest(403, problem))
                return
        await self.app(scope, receive, send)
