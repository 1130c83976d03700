"""Redaction over real HTTP (issue 12, item 5): a loopback server that echoes
the key it was sent, and ordinary words that hold short "keys" (``x``,
``EMPTY``, ``abc``) as parts of words.  The caller's error must read as the
server wrote it, keep its body, and never hold a long key -- nor may a repr,
a log line, the stats, the report or any file the bulk runner writes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from ipfs_accelerate_py.api_backends import openai_api, vllm
from ipfs_accelerate_py.resilience.errors import ApiError, ServerError

from ..helpers import FAST, LOOPBACK, WAIT, messages

ROOT = Path(__file__).resolve().parents[2]
LONG = "sk-eRqhqWJYAXeRpzds3mOjAqnJcXKV5NDk0MEgr0VrZz1FB6D0"  # 51 characters, as OpenAI keys are
KEYS = ["x", "EMPTY", "abc", LONG]
MODEL = "gpt-4o-mini"
WORDS = (
    "The model `text-embedding-x` does not exist; expected one of abcdef-large, "
    "EMPTYING-small or nonexistent-xl (none is loaded)."
)
"""The server's own words: every short key above stands inside some of them."""


def server_message(key: str) -> str:
    """What the server says: the key whole, then as the fragments servers echo, then its words."""
    return f"Incorrect API key provided: {key} (you sent {key[:8]}...{key[-6:]}). {WORDS}"


def readable(key: str) -> str:
    """What the caller must read: the server's message, a long key masked, every word kept."""
    if len(key) < 8:
        return server_message(key)  # a placeholder is no secret: not one character changes
    return f"Incorrect API key provided: *** (you sent ***...***). {WORDS}"


def leaks(key: str) -> tuple:
    """What must never be seen of ``key`` (nothing, for a placeholder)."""
    return (key, key[:8], key[-6:]) if len(key) >= 8 else ()


class EchoServer:
    """An aiohttp server on 127.0.0.1, port 0, in a thread of its own.

    ``POST /v1/chat/completions`` answers each status of ``answers`` in turn
    (then ``status``) with an OpenAI-shaped error body that echoes the key of
    the request's ``Authorization``; a streamed request gets ``chunks_first``
    chunks and then an error event doing the same.  ``seen`` lists each
    request's ``Authorization`` header.
    """

    def __init__(self) -> None:
        self.status = 401
        self.answers: list[int] = []
        self.chunks_first = 1
        self.seen: list[str] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="echo-server", daemon=True)

    def reset(self) -> None:
        self.status, self.answers, self.chunks_first, self.seen = 401, [], 1, []

    def start(self) -> EchoServer:
        self._thread.start()
        if not self._ready.wait(WAIT):
            raise AssertionError("the echo server did not start")
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(WAIT)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, LOOPBACK, 0).start())
        self.url = f"http://{LOOPBACK}:{runner.addresses[0][1]}/v1"
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        self.seen.append(auth)
        key = auth.removeprefix("Bearer ")
        error = {
            "error": {
                "message": server_message(key),
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        }
        if (await request.json()).get("stream"):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for i in range(self.chunks_first):
                chunk = {
                    "id": "c",
                    "object": "chat.completion.chunk",
                    "model": MODEL,
                    "choices": [
                        {"index": 0, "delta": {"content": f"part{i} "}, "finish_reason": None}
                    ],
                }
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await response.write(f"data: {json.dumps(error)}\n\n".encode())
            await response.write_eof()
            return response
        status = self.answers.pop(0) if self.answers else self.status
        return web.json_response(error, status=status)


@pytest.fixture(scope="module")
def echo_server() -> Iterator[EchoServer]:
    server = EchoServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(echo_server: EchoServer) -> EchoServer:
    echo_server.reset()
    return echo_server


def client_of(backend: type, server: EchoServer, key: str, **settings):
    name = backend.provider.name
    return backend({}, {f"{name}_api_base": server.url, f"{name}_api_key": key, **FAST, **settings})


def assert_clean(texts: list, key: str) -> None:
    for text in texts:
        for fragment in leaks(key):
            assert fragment not in text


def error_texts(error: BaseException) -> list:
    return [
        str(error),
        repr(error),
        "".join(traceback.format_exception(error)),
        repr(vars(error)),
        repr(error.args),
    ]


# ------------------------------------------------------------ the client


@pytest.mark.parametrize("backend", [openai_api, vllm], ids=["openai", "vllm"])
@pytest.mark.parametrize("status", [401, 400])
@pytest.mark.parametrize("key", KEYS, ids=["x", "EMPTY", "abc", "long"])
def test_an_echoed_key_leaves_the_message_readable_and_the_body_kept(
    server, backend, status, key, caplog
):
    caplog.set_level(logging.DEBUG, logger="ipfs_accelerate_py")
    server.status, server.answers = status, [503]  # the 503 is retried: the engine logs that retry
    with client_of(backend, server, key, max_retries=1) as client:
        with pytest.raises(ApiError) as caught:
            client.chat(MODEL, messages("hello"))
        texts = [
            repr(client),
            json.dumps(client.get_stats()),
            json.dumps(client.generate_report(include_details=True)),
        ]
    error = caught.value
    assert server.seen == [f"Bearer {key}"] * 2  # the server really was sent the key, twice
    assert error.status == status and error.attempt == 2
    assert error.message == readable(key)
    assert readable(key) in str(error)
    body = json.loads(error.body)
    assert body["error"] == {
        "message": readable(key),
        "type": "invalid_request_error",
        "code": "invalid_api_key",
    }
    assert caplog.records, "the retry after the 503 should have been logged"
    texts += error_texts(error) + [caplog.text] + [record.getMessage() for record in caplog.records]
    assert_clean(texts, key)


@pytest.mark.parametrize("chunks_first", [1, 0], ids=["mid-stream", "before-the-first-chunk"])
@pytest.mark.parametrize("key", ["x", LONG], ids=["x", "long"])
def test_an_error_event_in_a_stream_is_redacted_the_same_way(server, chunks_first, key):
    server.chunks_first = chunks_first
    with client_of(openai_api, server, key, max_retries=0) as client:
        with pytest.raises(ServerError) as caught:
            with client.chat(MODEL, messages("hello"), stream=True) as stream:
                list(stream)
        texts = [json.dumps(client.generate_report(include_details=True))]
    error = caught.value
    assert server.seen == [f"Bearer {key}"]
    assert error.message.startswith(readable(key))
    assert json.loads(json.dumps(error.body))["error"]["message"] == readable(key)
    assert_clean(texts + error_texts(error), key)


# ------------------------------------------------------------ the runner


@pytest.mark.parametrize("key", ["EMPTY", LONG], ids=["EMPTY", "long"])
def test_the_runner_writes_readable_errors_and_never_a_long_key(server, tmp_path, key):
    server.answers = [503]
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        "".join(json.dumps({"id": f"j{i}", "messages": messages(f"q{i}")}) + "\n" for i in range(2))
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IPFS_ACCELERATE_"))}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ipfs_accelerate_py",
            "run",
            str(jobs),
            "--base-url",
            server.url,
            "--key",
            key,
            "--model",
            MODEL,
            "--max-retries",
            "1",
            "--progress",
            "json",
            "--set",
            "initial_retry_delay=0.01",
            "--set",
            "retry_jitter=0",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 4, proc.stderr  # the only key was refused: the run stops, resumable
    # a 503 (the pre-flight), then a refusal, and the other line's refusal if it was sent before the stop
    assert server.seen in ([f"Bearer {key}"] * 2, [f"Bearer {key}"] * 3)
    records = [
        json.loads(line) for line in (tmp_path / "jobs.results.jsonl").read_text().splitlines()
    ]
    assert [(r["id"], r["status"]) for r in sorted(records, key=lambda r: r["id"])] == [
        ("j0", "interrupted"),
        ("j1", "interrupted"),
    ]
    for record in records:
        assert readable(key) in record["error"]["message"]
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file() and p != jobs)
    assert {p.name for p in written} >= {
        "jobs.results.jsonl",
        "jobs.results.report.json",
        "jobs.results.report.html",
    }
    assert_clean([p.read_text(errors="replace") for p in written] + [proc.stdout, proc.stderr], key)
