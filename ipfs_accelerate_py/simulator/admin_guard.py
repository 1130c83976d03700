"""Who may use ``/_admin/``: the pure decision, request headers in, refusal (or None) out.

The simulator binds loopback, but a web page the user opens can still reach
loopback, so every admin request is checked, in this order:

1. a browser's cross-origin request -> 403: an ``Origin`` header other than the
   simulator's own (``http://`` + a loopback name or the bound address + the
   port it listens on, never taken from the ``Host`` header, so DNS rebinding
   does not pass), or ``Sec-Fetch-Site: cross-site`` / ``same-site`` (another
   port or subdomain of the same site);
2. no ``Authorization: Bearer <token>`` with the admin token -> 401;
3. a POST whose ``Content-Type`` is not ``application/json`` (none at all
   included: a body-less POST is a "simple" cross-origin request) -> 415.

A browser cannot send JSON or an ``Authorization`` header cross-origin without
a CORS preflight, which the simulator never grants.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "ADMIN_TOKEN_BYTES",
    "AdminRefusal",
    "LOOPBACK_NAMES",
    "admin_refusal",
    "new_admin_token",
]

ADMIN_TOKEN_BYTES = 24
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
REFUSED_FETCH_SITES = frozenset({"cross-site", "same-site"})
JSON_TYPE = "application/json"


@dataclass(frozen=True)
class AdminRefusal:
    """Why an admin request is refused: its status, a message, headers to add."""

    status: int
    code: str
    message: str
    headers: tuple[tuple[str, str], ...] = ()


def new_admin_token() -> str:
    """A fresh random admin token (URL-safe text)."""
    return secrets.token_urlsafe(ADMIN_TOKEN_BYTES)


def _own_origin(origin: str, local_host: str | None, local_port: int | None) -> bool:
    try:
        parts = urlsplit(origin.strip())
        port = parts.port or (80 if parts.scheme == "http" else None)
    except ValueError:
        return False
    hosts = LOOPBACK_NAMES | ({local_host.lower()} if local_host else set())
    return (
        parts.scheme == "http"
        and (parts.hostname or "") in hosts
        and local_port is not None
        and port == local_port
        and not parts.path.strip("/")
    )


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def admin_refusal(
    method: str,
    headers: Mapping[str, str],
    token: str,
    *,
    local_host: str | None = None,
    local_port: int | None = None,
) -> AdminRefusal | None:
    """None if the admin request may go on, else why not (see the module doc).

    ``headers`` must look names up case-insensitively (a CIMultiDict);
    ``local_host``/``local_port`` are where the connection arrived.
    """
    origin = headers.get("Origin")
    if origin is not None and not _own_origin(origin, local_host, local_port):
        return AdminRefusal(
            403,
            "cross_origin_refused",
            f"Cross-origin admin requests are refused (Origin {origin[:100]!r} "
            "is not the simulator's own).",
        )
    site = (headers.get("Sec-Fetch-Site") or "").strip().lower()
    if site in REFUSED_FETCH_SITES:
        return AdminRefusal(
            403,
            "cross_origin_refused",
            f"Cross-origin admin requests are refused (Sec-Fetch-Site: {site}).",
        )
    given = _bearer(headers.get("Authorization"))
    if given is None or not hmac.compare_digest(given.encode(), token.encode()):
        what = "no admin token was given" if given is None else "the admin token is wrong"
        return AdminRefusal(
            401,
            "invalid_admin_token",
            f"The admin endpoint needs 'Authorization: Bearer <admin token>' "
            f"({what}); the token is printed when the simulator starts, "
            "or set with --admin-token.",
            (("WWW-Authenticate", 'Bearer realm="simulator admin"'),),
        )
    if method == "POST":
        kind = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if kind != JSON_TYPE:
            return AdminRefusal(
                415,
                "unsupported_media_type",
                f"Admin POSTs take Content-Type: {JSON_TYPE} (got {kind[:60] or 'none'}).",
            )
    return None
