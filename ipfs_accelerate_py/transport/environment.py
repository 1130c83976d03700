"""What a client takes from its environment: proxies, trusted CAs, its name.

Read once, when a transport opens its session (as httpx reads them when a
client is made), never per request:

- ``HTTP_PROXY`` / ``HTTPS_PROXY`` (either case; the lower-case one wins, as
  in :mod:`urllib.request`) name the proxy for plain and TLS URLs, with
  credentials in the URL if the proxy wants them; ``NO_PROXY`` lists hosts
  (``example.com``, ``.example.com``, ``host:port``, ``*``) reached directly.
  No host is exempt unless named there, loopback included.
- ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``: the CA bundle (or directory) that
  verifies servers' certificates, in place of the system's (OpenSSL reads
  them when a context is made: :func:`verified_ssl_context` makes one for
  each pair of values it sees, once).
- ``.netrc`` is not read: each provider sends its own credentials.

Every request says who sends it: ``User-Agent: ipfs-accelerate-py/<version>``
(:data:`USER_AGENT`); a caller's own User-Agent header takes its place.
"""

from __future__ import annotations

import os
import ssl
import urllib.request
from collections.abc import Mapping
from functools import lru_cache
from urllib.parse import urlsplit

from .._version import __version__

__all__ = ["USER_AGENT", "ProxyTable", "verified_ssl_context"]

USER_AGENT = f"ipfs-accelerate-py/{__version__}"

_MAX_ORIGINS = 256  # origins remembered; past that the table starts again (a bound, not a tuning)
_SCHEMES = ("http", "https")


class ProxyTable:
    """Which proxy a URL goes through, from a snapshot of the environment's
    proxy variables (``urllib.request.getproxies_environment()``): a
    ``{scheme: proxy URL, "no": NO_PROXY}`` mapping.

    ``proxy_for(url)`` answers from a small table by origin, so a request
    costs a dict look-up; with no proxy configured, not even that.
    """

    __slots__ = ("proxies", "_any", "_by_origin")

    def __init__(self, proxies: Mapping[str, str]) -> None:
        self.proxies = {k: v for k, v in proxies.items() if (k in _SCHEMES or k == "no") and v}
        self._any = any(k in _SCHEMES for k in self.proxies)
        self._by_origin: dict[str, str | None] = {}

    @classmethod
    def from_environment(cls) -> ProxyTable:
        return cls(urllib.request.getproxies_environment())

    def __bool__(self) -> bool:
        return self._any

    def proxy_for(self, url: str) -> str | None:
        """The proxy URL for ``url`` (credentials included), or None to go direct."""
        if not self._any:
            return None
        start = url.find("//")
        cut = url.find("/", start + 2) if start >= 0 else -1
        origin = url if cut < 0 else url[:cut]
        try:
            return self._by_origin[origin]
        except KeyError:
            pass
        proxy = self._resolve(origin)
        if len(self._by_origin) >= _MAX_ORIGINS:
            self._by_origin.clear()
        self._by_origin[origin] = proxy
        return proxy

    def _resolve(self, origin: str) -> str | None:
        parts = urlsplit(origin)
        proxy = self.proxies.get(parts.scheme)
        if proxy is None or parts.hostname is None:
            return None
        host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        # in CPython's urllib.request since 3.0, absent from typeshed's stubs
        if urllib.request.proxy_bypass_environment(host, self.proxies):  # type: ignore[attr-defined]
            return None
        return proxy


def verified_ssl_context() -> ssl.SSLContext:
    """A verifying TLS context that trusts what ``SSL_CERT_FILE`` and
    ``SSL_CERT_DIR`` name now (the system's CAs when neither is set)."""
    return _context_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@lru_cache(maxsize=4)
def _context_for(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    del cert_file, cert_dir  # the cache key: OpenSSL reads the variables themselves
    return ssl.create_default_context()
