"""The caller's ``contextvars`` are those of its request's attempts: a
transport and a logging handler see the caller's value, for sync calls from
threads and async calls from another loop, each caller its own (never the
value of whichever caller woke the engine).  Over real loopback HTTP.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from ipfs_accelerate_py.api_backends import openai_api
from ipfs_accelerate_py.transport.aiohttp_transport import AiohttpTransport
from ipfs_accelerate_py.transport.base import HttpRequest

from ..helpers import FAST, WAIT, ClientFactory, aiohttp_server, messages, reply_text, together

MODEL = "gpt-4o-mini"
CHAT_ANSWER = {
    "id": "c1",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
}
make_openai = ClientFactory(
    openai_api, "openai_api_base", "openai_api_key", FAST, key="sk-context-0123456789abcdef"
)


@pytest.fixture
def chat_server() -> Iterator[tuple[str, list]]:
    """A server answering every request with a chat completion: ``(base URL, [path, ...])``."""
    seen: list = []

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        seen.append(request.path)
        return web.json_response(CHAT_ANSWER)

    with aiohttp_server(handler) as url:
        yield url, seen


TENANT: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="none")


class TenantRecorder(AiohttpTransport):
    """The real transport, noting which tenant each attempt runs for and what it sent."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list = []

    async def send(self, request: HttpRequest) -> Any:
        self.seen.append((TENANT.get(), json.loads(request.body)["messages"][0]["content"]))
        return await super().send(request)


def test_sync_callers_context_reaches_the_attempt_each_its_own(chat_server):
    url, server_seen = chat_server
    transport = TenantRecorder()
    with openai_api({}, make_openai.metadata(url + "/v1"), transport=transport) as client:

        def call(i: int) -> None:
            TENANT.set(f"tenant-{i}")
            client.chat(MODEL, messages(f"from {i}"))

        together(8, call)
    assert sorted(transport.seen) == sorted((f"tenant-{i}", f"from {i}") for i in range(8))
    assert len(server_seen) == 8


async def test_async_callers_context_reaches_the_attempt(chat_server):
    url, server_seen = chat_server
    transport = TenantRecorder()
    async with openai_api({}, make_openai.metadata(url + "/v1"), transport=transport) as client:

        async def call(i: int) -> None:
            TENANT.set(f"task-{i}")
            await client.achat(MODEL, messages(f"from {i}"))

        await asyncio.gather(*(call(i) for i in range(4)))
    assert sorted(transport.seen) == sorted((f"task-{i}", f"from {i}") for i in range(4))
    assert len(server_seen) == 4


class TenantLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((TENANT.get(), record.getMessage()))


@pytest.fixture
def tenant_log() -> Iterator[TenantLog]:
    """A handler on the package's logger noting the tenant of each record (DEBUG and up: retries log at DEBUG)."""
    logger = logging.getLogger("ipfs_accelerate_py")
    handler, level = TenantLog(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def flaky_server() -> Iterator[tuple[str, list]]:
    """Answers 503 to the first request, a chat completion after."""
    seen: list = []
    lock = threading.Lock()

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        with lock:
            seen.append(request.path)
            first = len(seen) == 1
        return (
            web.json_response({"error": {"message": "busy"}}, status=503)
            if first
            else web.json_response(CHAT_ANSWER)
        )

    with aiohttp_server(handler) as url:
        yield url, seen


def test_a_retry_is_logged_in_the_callers_context_sync(flaky_server, tenant_log):
    url, seen = flaky_server
    result: list = []

    def caller() -> None:
        TENANT.set("thread-tenant")
        with make_openai(url + "/v1") as client:
            result.append(reply_text(client.chat(MODEL, messages("hi"))))

    thread = threading.Thread(target=caller)
    thread.start()
    thread.join(WAIT)
    assert result == ["ok"] and len(seen) == 2
    retries = [tenant for tenant, message in tenant_log.records if "retry 1/" in message]
    assert retries == ["thread-tenant"]


async def test_a_retry_is_logged_in_the_callers_context_async(flaky_server, tenant_log):
    url, seen = flaky_server
    TENANT.set("task-tenant")
    async with make_openai(url + "/v1") as client:
        assert reply_text(await client.achat(MODEL, messages("hi"))) == "ok"
    assert len(seen) == 2
    assert [tenant for tenant, message in tenant_log.records if "retry 1/" in message] == [
        "task-tenant"
    ]
