"""A good citizen of its environment, over real loopback HTTP:

* ``HTTP_PROXY`` is honoured (a forward proxy written here sees the request,
  credentials from the proxy URL included) and ``NO_PROXY`` bypasses it;
* ``SSL_CERT_FILE`` names the CAs that verify a server (a test CA made with
  ``trustme``): without it a private certificate fails at once with a
  ``NetworkError`` that says so, with it the call goes through;
* every request says ``User-Agent: ipfs-accelerate-py/<version>`` (a
  caller's own User-Agent replaces it).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp import web

import ipfs_accelerate_py
from ipfs_accelerate_py.api_backends import claude, gemini, openai_api
from ipfs_accelerate_py.resilience.errors import NetworkError
from ipfs_accelerate_py.transport.aiohttp_transport import AiohttpTransport
from ipfs_accelerate_py.transport.base import HttpRequest

from ..helpers import (
    FAST,
    LOOPBACK,
    WAIT,
    ClientFactory,
    aiohttp_server,
    env_cleared,
    messages,
    reply_text,
)

KEY = "sk-environment-0123456789abcdef"
MODEL = "gpt-4o-mini"
USER_AGENT = f"ipfs-accelerate-py/{ipfs_accelerate_py.__version__}"
CHAT_ANSWER = {
    "id": "c1",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
}

make_openai = ClientFactory(openai_api, "openai_api_base", "openai_api_key", FAST, key=KEY)
PROXY_VARIABLES = (
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
)
cleared = env_cleared(*PROXY_VARIABLES)  # this machine's own proxy settings stay out of these tests


@pytest.fixture
def chat_server() -> Iterator[tuple[str, list]]:
    """A server answering every request with a chat completion: ``(base URL, [request, ...])``,
    each request ``(method, path, headers)``."""
    seen: list = []

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        seen.append((request.method, request.path, request.headers.copy()))
        return web.json_response(CHAT_ANSWER)

    with aiohttp_server(handler) as url:
        yield url, seen


# ------------------------------------------------------------------ proxies


@pytest.fixture
def forward_proxy() -> Iterator[tuple[str, list]]:
    """A forward proxy: takes absolute-form requests (``POST http://host/path``),
    records ``(method, absolute URL, Proxy-Authorization)`` and forwards them."""
    seen: list = []

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append((request.method, str(request.url), request.headers.get("Proxy-Authorization")))
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("host", "proxy-authorization", "proxy-connection")
        }
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, str(request.url), headers=headers, data=body
            ) as upstream,
        ):
            return web.Response(
                status=upstream.status,
                body=await upstream.read(),
                content_type=upstream.content_type,
            )

    with aiohttp_server(handler) as url:
        yield url, seen


def test_http_proxy_carries_the_request_with_its_credentials(
    chat_server, forward_proxy, monkeypatch
):
    server_url, server_seen = chat_server
    proxy_url, proxy_seen = forward_proxy
    monkeypatch.setenv("HTTP_PROXY", proxy_url.replace("http://", "http://proxy-user:proxy-pass@"))
    with make_openai(server_url + "/v1") as client:
        assert reply_text(client.chat(MODEL, messages("via the proxy"))) == "ok"
    credentials = base64.b64encode(b"proxy-user:proxy-pass").decode()
    assert proxy_seen == [("POST", f"{server_url}/v1/chat/completions", f"Basic {credentials}")]
    assert [(m, p) for m, p, _ in server_seen] == [("POST", "/v1/chat/completions")]
    assert "proxy-authorization" not in {k.lower() for k in server_seen[0][2]}


@pytest.mark.parametrize("no_proxy", [LOOPBACK, f"{LOOPBACK}:{{port}}", "localhost,127.0.0.1", "*"])
def test_no_proxy_goes_direct(chat_server, forward_proxy, monkeypatch, no_proxy):
    server_url, server_seen = chat_server
    proxy_url, proxy_seen = forward_proxy
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    monkeypatch.setenv("NO_PROXY", no_proxy.format(port=server_url.rsplit(":", 1)[1]))
    with make_openai(server_url + "/v1") as client:
        assert reply_text(client.chat(MODEL, messages("direct"))) == "ok"
    assert proxy_seen == []
    assert len(server_seen) == 1


def test_a_proxy_for_other_schemes_or_hosts_is_not_used(chat_server, forward_proxy, monkeypatch):
    server_url, server_seen = chat_server
    proxy_url, proxy_seen = forward_proxy
    monkeypatch.setenv("HTTPS_PROXY", proxy_url)  # for https URLs only
    monkeypatch.setenv("NO_PROXY", "example.com")
    with make_openai(server_url + "/v1") as client:
        client.chat(MODEL, messages("plain http"))
    assert proxy_seen == [] and len(server_seen) == 1


# ------------------------------------------------------------ certificates


@pytest.fixture
def tls_server(tmp_path) -> Iterator[tuple[str, list, str]]:
    """A chat server on https://127.0.0.1 whose certificate a private test CA
    signs: ``(base URL, [path, ...], path of the CA's PEM file)``."""
    trustme = pytest.importorskip("trustme")
    import ssl

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(LOOPBACK).configure_cert(server_context)
    ca_file = tmp_path / "test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    seen: list = []

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        seen.append(request.path)
        return web.json_response(CHAT_ANSWER)

    with aiohttp_server(handler, ssl_context=server_context) as url:
        yield url, seen, str(ca_file)


def test_a_private_certificate_fails_at_once_and_says_why(tls_server, monkeypatch):
    url, seen, _ = tls_server
    monkeypatch.delenv(
        "SSL_CERT_FILE", raising=False
    )  # the system's CAs, which do not know the test CA
    with make_openai(url + "/v1", max_retries=3) as client:
        with pytest.raises(NetworkError, match="certificate verify failed") as caught:
            client.chat(MODEL, messages("hello"))
        attempts = client.get_stats()["http_attempts"]
    assert "SSL_CERT_FILE" in str(caught.value)
    assert attempts == 1  # not retried: the next attempt would meet the same certificate
    assert seen == []


def test_ssl_cert_file_names_the_cas_that_verify(tls_server, monkeypatch):
    url, seen, ca_file = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    with make_openai(url + "/v1") as client:
        assert reply_text(client.chat(MODEL, messages("hello"))) == "ok"
    assert seen == ["/v1/chat/completions"]


# -------------------------------------------------------------- User-Agent


@pytest.mark.parametrize(
    "backend, base_setting, key_setting, call",
    [
        (openai_api, "openai_api_base", "openai_api_key", lambda c: c.chat(MODEL, messages("hi"))),
        (
            claude,
            "anthropic_api_base",
            "anthropic_api_key",
            lambda c: c.make_request(
                "messages", {"model": "m", "max_tokens": 1, "messages": messages("hi")}
            ),
        ),
        (
            gemini,
            "gemini_api_base",
            "gemini_api_key",
            lambda c: c.make_request("models/gemini-2.0-flash:generateContent", {"contents": []}),
        ),
    ],
    ids=["openai_api", "claude", "gemini"],
)
def test_every_request_names_the_client_and_its_version(
    chat_server, backend, base_setting, key_setting, call
):
    url, seen = chat_server
    with backend({}, {base_setting: url, key_setting: KEY}) as client:
        call(client)
        call(client)
    assert [headers.getall("User-Agent") for _, _, headers in seen] == [[USER_AGENT]] * 2


async def test_a_callers_own_user_agent_replaces_ours(chat_server):
    url, seen = chat_server
    transport = AiohttpTransport()
    try:
        for name in ("User-Agent", "user-agent"):
            await transport.send(HttpRequest("GET", url + "/x", {name: "my-app/2.0"}, timeout=WAIT))
    finally:
        await transport.aclose()
    assert [headers.getall("User-Agent") for _, _, headers in seen] == [["my-app/2.0"]] * 2
