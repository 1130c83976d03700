"""Proxy mode: forward requests no wire format claims to the scenario's ``upstream``.

The request goes out verbatim -- method, raw path and query, headers (but
hop-by-hop ones), body -- except that the client's credential headers
(``CREDENTIAL_HEADERS``: Authorization, x-api-key, ...) are removed unless the
scenario's ``forward_credentials`` is true, so the simulator is never an open
proxy for someone's keys; with it, a signed request (AWS SigV4) still verifies
upstream (a presigned URL's query is forwarded as it is either way); the answer comes back verbatim (status, headers, body, compressed
bodies left compressed).  In front of it the simulator applies its usual
machinery; errors it makes up are rendered from ``proxy_error_body``.  The
key of a proxied request is the access key id of an AWS SigV4
``Authorization`` header (``Credential=AKID/...``) or of a presigned URL
(``X-Amz-Credential``), else a Bearer key; an unknown one is refused with S3's
``InvalidAccessKeyId`` (401).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from .wireformat import WireError, WireFormat, bearer_key

__all__ = [
    "CREDENTIAL_HEADERS",
    "PROXY_FORMAT",
    "PROXY_ROUTE",
    "Forwarder",
    "ProxyFormat",
    "forwarded_headers",
    "sigv4_key",
]

CONNECT_TIMEOUT = 10.0
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",
    }
)
CREDENTIAL_HEADERS = frozenset(
    {
        "authorization",
        "x-api-key",
        "x-goog-api-key",
        "api-key",
        "cookie",
        "x-amz-security-token",
        "ocp-apim-subscription-key",
    }
)
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
S3_CODES = {
    400: "InvalidRequest",
    401: "InvalidAccessKeyId",
    403: "AccessDenied",
    404: "NoSuchKey",
    405: "MethodNotAllowed",
    409: "OperationAborted",
    429: "SlowDown",
    500: "InternalError",
    501: "NotImplemented",
    502: "BadGateway",
    503: "SlowDown",
    504: "RequestTimeout",
}


def forwarded_headers(headers: Any, forward_credentials: bool) -> CIMultiDict[str]:
    """The request headers that go upstream: no hop-by-hop ones, no credentials unless allowed."""
    dropped = HOP_BY_HOP if forward_credentials else HOP_BY_HOP | CREDENTIAL_HEADERS
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in dropped)


def sigv4_key(request: Any) -> str | None:
    """The access key id of a SigV4 request (header or presigned URL), else a Bearer key."""
    header = request.headers.get("Authorization")
    if header:
        found = _CREDENTIAL.search(header)
        if found is not None:
            return found.group(1)
        return bearer_key(header)
    credential = request.query.get("X-Amz-Credential")
    if credential:
        return credential.split("/", 1)[0] or None
    return None


class ProxyFormat(WireFormat):
    """The pseudo-format of proxied requests: errors from the scenario's ``proxy_error_*``."""

    def render_error(self, exc: WireError, scenario: Any, request_id: str) -> tuple[bytes, str]:
        status = exc.status
        code = exc.code or S3_CODES.get(
            status, "InternalError" if status >= 500 else "InvalidRequest"
        )
        body = (
            scenario.proxy_error_body.replace("{status}", str(status))
            .replace("{code}", escape(code))
            .replace("{message}", escape(exc.message))
            .replace("{request_id}", escape(request_id))
        )
        return body.encode(), scenario.proxy_error_content_type


def _proxy_auth_error(key: str | None) -> WireError:
    """S3's refusal of an unknown access key id (``InvalidAccessKeyId``), or of an unsigned request."""
    if key is None:
        return WireError(
            401, "Access Denied (the request carries no access key id).", code="AccessDenied"
        )
    return WireError(
        401,
        "The AWS Access Key Id you provided does not exist in our records.",
        code="InvalidAccessKeyId",
    )


def _proxy_rate_limit_error(exceeded: str, retry_after: str) -> WireError:
    return WireError(
        429, f"Please reduce your request rate ({exceeded}, simulated).", code="SlowDown"
    )


PROXY_FORMAT = ProxyFormat(
    name="proxy",
    routes=(),
    key=sigv4_key,
    auth_error=_proxy_auth_error,
    rate_limit_error=_proxy_rate_limit_error,
    malformed_body=b'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult><Name>cut',
    malformed_content_type="application/xml",
)


class ProxyRoute:
    """The route of every proxied request: targeted, body read raw, never parsed."""

    method = "*"
    pattern = "*"
    payload = "raw"
    targeted = True


PROXY_ROUTE = ProxyRoute()


class Forwarder:
    """One pooled client session to the upstream, made on first use in the server's loop."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
                connector=aiohttp.TCPConnector(limit=0),
            )
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def forward(
        self,
        request: web.BaseRequest,
        body: bytes,
        upstream: str,
        extra: Mapping[str, str],
        request_id: str,
        *,
        forward_credentials: bool = False,
    ) -> web.Response:
        """Send ``request`` (with ``body``) to ``upstream``; relay the answer.

        Credential headers go along only with ``forward_credentials``.

        Raises ``aiohttp.ClientError`` (or ``OSError``) when the upstream cannot be reached.
        """
        headers = forwarded_headers(request.headers, forward_credentials)
        url = URL(upstream + request.raw_path, encoded=True)
        async with self._client().request(
            request.method,
            url,
            data=body if body else None,
            headers=headers,
            allow_redirects=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        ) as answer:
            payload = await answer.read()
            out = CIMultiDict(
                (k, v) for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP
            )
            length = answer.headers.get("Content-Length")
        out.setdefault("x-request-id", request_id)
        for name, value in extra.items():
            out[name] = value
        if request.method == "HEAD" and length is not None:
            out["Content-Length"] = length  # a HEAD answer has no body but keeps its length
        return web.Response(status=answer.status, body=payload, headers=out)
