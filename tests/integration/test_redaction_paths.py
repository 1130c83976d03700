"""Every path by which server text reaches the caller is redacted (issue:
partial masking): a 200 answer that is not JSON, a malformed stream chunk
(before the first chunk and mid-stream) and a stream error event, for each
stream format (OpenAI SSE, Anthropic SSE, Gemini SSE, Ollama NDJSON).  The
server quotes the whole key it was sent, and the caller's error, its repr,
its traceback, its fields and the log must not hold the key or a fragment."""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

import pytest
from aiohttp import web

from ipfs_accelerate_py.api_backends import claude, gemini, ollama, openai_api
from ipfs_accelerate_py.resilience.errors import ApiError

from ..helpers import FAST, aiohttp_server, messages

KEY = "sk-pathsAbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
LEAKS = (KEY, KEY[:8], KEY[-6:], KEY[3:30])

BACKENDS = {
    "openai": (openai_api, "openai_api_base", "openai_api_key", "gpt-4o-mini"),
    "claude": (claude, "anthropic_api_base", "anthropic_api_key", "claude-3-5-haiku-latest"),
    "gemini": (gemini, "gemini_api_base", "gemini_api_key", "gemini-1.5-flash"),
    "ollama": (ollama, "ollama_host", "ollama_api_key", "llama3"),
}

FIRST_CHUNK = {
    "openai": 'data: {"id":"c","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"content":"hi "},"finish_reason":null}]}\n\n',
    "claude": 'event: message_start\ndata: {"type":"message_start","message":{"id":"m","type":"message","role":"assistant","model":"m","content":[],"usage":{"input_tokens":1,"output_tokens":0}}}\n\n'
    'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
    'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi "}}\n\n',
    "gemini": 'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"hi "}]},"index":0}]}\n\n',
    "ollama": '{"model":"m","created_at":"2024-01-01T00:00:00Z","message":{"role":"assistant","content":"hi "},"done":false}\n',
}


def error_event(name: str, key: str) -> str:
    said = f"upstream refused key {key} (sent as {key})"
    if name == "claude":
        return f"event: error\ndata: {json.dumps({'type': 'error', 'error': {'type': 'overloaded_error', 'message': said}})}\n\n"
    if name == "ollama":
        return json.dumps({"error": said}) + "\n"
    if name == "gemini":
        return f"data: {json.dumps({'error': {'code': 500, 'message': said, 'status': 'INTERNAL'}})}\n\n"
    return f"data: {json.dumps({'error': {'message': said, 'type': 'server_error', 'code': None}})}\n\n"


def malformed_chunk(name: str, key: str) -> str:
    text = f'{{"broken": "key {key} and then it stops'
    return text + "\n" if name == "ollama" else f"data: {text}\n\n"


def sent_key(request: web.Request) -> str:
    for header in ("x-api-key", "x-goog-api-key"):
        if header in request.headers:
            return request.headers[header]
    return request.headers.get("Authorization", "").removeprefix("Bearer ")


def server_for(name: str, mode: str):
    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        key = sent_key(request)
        if mode == "text":
            return web.Response(
                text=f"<html>proxy error: the key {key} was refused</html>",
                content_type="text/html",
            )
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/x-ndjson" if name == "ollama" else "text/event-stream"
            }
        )
        await response.prepare(request)
        if mode.endswith("mid-stream"):
            await response.write(FIRST_CHUNK[name].encode())
        await response.write(
            (
                error_event(name, key) if mode.startswith("event") else malformed_chunk(name, key)
            ).encode()
        )
        await response.write_eof()
        return response

    return handle


def client_of(name: str, base_url: str):
    backend, base_setting, key_setting, _ = BACKENDS[name]
    return backend({}, {base_setting: base_url, key_setting: KEY, **FAST, "max_retries": 0})


def texts_of(error: BaseException) -> list:
    out = [
        str(error),
        repr(error),
        "".join(traceback.format_exception(error)),
        repr(vars(error)),
        repr(error.args),
    ]
    cause = error.__cause__
    while cause is not None:
        out += [
            str(cause),
            repr(cause),
            repr(vars(cause)),
            repr(cause.args),
        ]  # a JSONDecodeError keeps the whole text
        cause = cause.__cause__
    return out


def assert_clean(texts: list) -> None:
    for text in texts:
        for fragment in LEAKS:
            assert fragment not in text, text


def run(name: str, mode: str, caplog: Any) -> ApiError:
    caplog.set_level(logging.DEBUG, logger="ipfs_accelerate_py")
    model = BACKENDS[name][3]
    with aiohttp_server(server_for(name, mode)) as url, client_of(name, url) as client:
        with pytest.raises(ApiError) as caught:
            if mode == "text":
                client.chat(model, messages("hello"))
            else:
                with client.chat(model, messages("hello"), stream=True) as stream:
                    list(stream)
        report = json.dumps(client.generate_report(include_details=True))
    assert_clean(texts_of(caught.value) + [report, caplog.text])
    return caught.value


@pytest.mark.parametrize("name", list(BACKENDS))
def test_a_200_answer_that_is_not_json_does_not_quote_the_key(name, caplog):
    run(name, "text", caplog)


@pytest.mark.parametrize("when", ["first", "mid-stream"])
@pytest.mark.parametrize("name", list(BACKENDS))
def test_a_malformed_stream_chunk_does_not_quote_the_key(name, when, caplog):
    run(name, f"malformed-{when}", caplog)


@pytest.mark.parametrize("when", ["first", "mid-stream"])
@pytest.mark.parametrize("name", list(BACKENDS))
def test_a_stream_error_event_does_not_quote_the_key(name, when, caplog):
    run(name, f"event-{when}", caplog)


# ------------------------------------------------------------ the runner's command line

RUN_KEYS = ("sk-runnerOneAbCdEfGhIjKlMnOpQr0123456789", "sk-runnerTwoZyXwVuTsRqPoNmLk9876543210")


@pytest.mark.parametrize("form", ["--key KEY", "--key=KEY"])
def test_the_runner_report_shows_no_key_given_on_the_command_line(tmp_path, form):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(
            {
                "id": "c",
                "object": "chat.completion",
                "created": 0,
                "model": "gpt-4o-mini",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "hi"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"id": "j0", "messages": messages("q0")}) + "\n")
    if form == "--key KEY":
        flags = ["--key", RUN_KEYS[0], "--key", RUN_KEYS[1]]
    else:
        flags = [f"--key={RUN_KEYS[0]}", f"--key={RUN_KEYS[1]}"]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "GROQ_", "IPFS_ACCELERATE_"))
    }
    env["PYTHONPATH"] = str(root)
    with aiohttp_server(answer) as url:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "ipfs_accelerate_py",
                "run",
                str(jobs),
                "--base-url",
                url + "/v1",
                *flags,
                "--model",
                "gpt-4o-mini",
                "--max-retries",
                "0",
                "--progress",
                "json",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    written = {
        p.name: p.read_text(errors="replace")
        for p in tmp_path.rglob("*")
        if p.is_file() and p != jobs
    }
    assert {"jobs.results.report.json", "jobs.results.report.html"} <= set(written), (
        proc.returncode,
        proc.stderr,
    )
    assert "ipfs-accelerate run" in json.loads(written["jobs.results.report.json"])["command"]
    for name, text in [*written.items(), ("stdout", proc.stdout), ("stderr", proc.stderr)]:
        for key in RUN_KEYS:
            for fragment in (key, key[:8], key[-6:]):
                assert fragment not in text, (name, fragment)
