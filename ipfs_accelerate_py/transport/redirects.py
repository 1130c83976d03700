"""Which redirects are followed, and what the next hop is sent (pure).

API calls follow redirects, as the openai SDK does (its httpx client is made
with ``follow_redirects=True``), up to :data:`MAX_REDIRECTS` hops.  The one
rule about credentials: a request's credential headers go to the origin
(scheme, host, port) it was built for, and to no other.  When a hop leaves
that origin, every credential header is dropped, for that hop and every one
after it (a chain that comes back does not get them back):

* the well-known ones in :data:`CREDENTIAL_HEADERS` (``Authorization``,
  ``x-api-key``, ``x-goog-api-key``, ...), whatever provider built the request;
* the names in ``HttpRequest.secret_headers``: the provider's own auth
  headers and every header a call adds (``extra_headers``), which are
  treated as secret.

httpx and aiohttp drop only ``Authorization`` (and httpx keeps it on an
``http`` -> ``https`` upgrade of the same host); here any change of scheme,
host or port counts.  The method changes as browsers and httpx change it:
303 -> GET (HEAD stays), 301 and 302 turn a POST into a GET; 307 and 308 keep
method and body.
"""

from __future__ import annotations

import dataclasses
import urllib.parse

from .base import HttpRequest

__all__ = ["CREDENTIAL_HEADERS", "MAX_REDIRECTS", "REDIRECT_STATUSES", "next_hop", "origin"]

MAX_REDIRECTS = 10
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key", "x-goog-api-key"}
)
_BODY_HEADERS = frozenset({"content-type", "content-length", "transfer-encoding"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` of ``url``, the port made explicit."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


def next_hop(request: HttpRequest, status: int, location: str | None) -> HttpRequest | None:
    """The request to send after ``request`` was answered ``status`` with
    ``location``, or None when that answer is not a redirect to follow (not
    a redirect status, no Location, or a Location that is not http(s))."""
    if status not in REDIRECT_STATUSES or not location:
        return None
    url = urllib.parse.urljoin(request.url, location.strip())
    if urllib.parse.urlsplit(url).scheme.lower() not in _DEFAULT_PORTS:
        return None
    method, body = request.method, request.body
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method, body = "GET", None
    headers = dict(request.headers)
    if body is None:
        headers = {k: v for k, v in headers.items() if k.lower() not in _BODY_HEADERS}
    if origin(url) != origin(request.url):
        secret = CREDENTIAL_HEADERS | {name.lower() for name in request.secret_headers}
        headers = {k: v for k, v in headers.items() if k.lower() not in secret}
    return dataclasses.replace(request, method=method, url=url, headers=headers, body=body)
