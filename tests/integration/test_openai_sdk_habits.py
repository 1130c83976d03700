"""Habits of people who come from the openai SDK (issue 12, item 8), over
real loopback HTTP.

Calls are written the way openai SDK users write them (``model=``,
``timeout=``, ``max_retries=``, ``extra_headers=``, ``extra_query=``,
``extra_body=``, ``client.with_options(...)``), and each test asserts on what
the SERVER received (headers, query, body) as well as on what the caller got.

The server is a small aiohttp app on 127.0.0.1, port 0, in a thread of its
own (sync and async clients alike talk to it): it records every request,
answers OpenAI-shaped JSON, fails when told to, and never answers a request
carrying ``X-Hang`` (its handler awaits an event that is only set when the
server stops).  Nothing here sleeps to wait for something.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from ipfs_accelerate_py import checks
from ipfs_accelerate_py.api_backends import (
    BACKENDS,
    ApiKeyMultiplexer,
    UnknownBackendError,
    backend_class,
    claude,
    gemini,
    openai_api,
)
from ipfs_accelerate_py.checks import run_checks
from ipfs_accelerate_py.cli import main as cli_main
from ipfs_accelerate_py.resilience.errors import (
    InvalidInputError,
    RequestTimeoutError,
    ServerError,
    UnknownParameterError,
)

from ..helpers import FAST, LOOPBACK, WAIT, WINDOW, messages, recording_server

KEY = "sk-habits-0123456789abcdef"
MODEL = "gpt-4o-mini"
EMBEDDER = "text-embedding-3-small"
PER_CALL = ("timeout", "max_retries", "extra_headers", "extra_query", "extra_body")
"""The per-call options: never a body field."""


# ------------------------------------------------------------------ server


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    query: list  # [(name, value), ...] in order
    headers: dict  # lower-case names
    body: Any  # the JSON body, or None


class Server:
    """A recording OpenAI-shaped server on loopback (see the module docstring)."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.failures = 0  # answer the next N requests with 500
        self.hung = threading.Event()  # set when a request carrying X-Hang arrives
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._never: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    def __enter__(self) -> Server:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(WAIT)
        return self

    def __exit__(self, *exc: Any) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(WAIT)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(WAIT)
        self._loop.close()

    async def _start(self) -> None:
        self._never = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, LOOPBACK, 0)
        await site.start()
        self.url = f"http://{LOOPBACK}:{self._runner.addresses[0][1]}/v1"

    async def _stop(self) -> None:
        self._never.set()  # hung handlers end (their clients gave up long ago)
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        seen = Seen(
            request.method,
            request.path,
            list(request.query.items()),
            {k.lower(): v for k, v in request.headers.items()},
            json.loads(raw) if raw else None,
        )
        with self._lock:
            self.seen.append(seen)
            fail = self.failures > 0
            self.failures -= fail
        if "x-hang" in seen.headers:
            self.hung.set()
            await (
                self._never.wait()
            )  # never set while a test runs: only a client deadline ends this
        if fail:
            return web.json_response(
                {"error": {"message": "boom", "type": "server_error"}}, status=500
            )
        return web.json_response(_answer(request.path, seen.body))

    def bodies(self) -> list:
        return [s.body for s in self.seen]


def _answer(path: str, body: Any) -> dict:
    if path.endswith("/embeddings"):
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0]}
            for i, t in enumerate(inputs)
        ]
        return {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": 1, "total_tokens": 1},
        }
    if path.endswith("/completions") and "prompt" in (body or {}):
        return {
            "object": "text_completion",
            "choices": [{"index": 0, "text": "done", "finish_reason": "stop"}],
        }
    text = (body or {}).get("messages", [{}])[-1].get("content", "")
    return {
        "object": "chat.completion",
        "model": (body or {}).get("model"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"re: {text}"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
    }


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as srv:
        yield srv


@contextlib.contextmanager
def client_of(server: Server, **settings: Any) -> Iterator[openai_api]:
    with openai_api(
        {}, {"openai_api_base": server.url, "openai_api_key": KEY, **FAST, **settings}
    ) as client:
        yield client


def chat_info(text: str, **extra: Any) -> dict:
    return {
        "endpoint": "chat/completions",
        "data": {"model": MODEL, "messages": messages(text)},
        **extra,
    }


# --------------------------------------------- 1. model= wherever model_name=


CALLS_WITH_MODEL = {
    "chat": lambda c: c.chat(model=MODEL, messages=messages("m")),
    "completions": lambda c: c.completions(model=MODEL, prompt="m"),
    "embeddings": lambda c: c.embeddings(model=EMBEDDER, input="m"),
    "add_to_batch": lambda c: c.add_to_batch(model=EMBEDDER, request_input="m").result(WAIT),
    "operation_request": lambda c: c.queue_with_priority(
        dict(
            zip(
                ("endpoint", "data"),
                c.operation_request("chat", model=MODEL, content=messages("m")),
                strict=True,
            )
        )
    ).result(WAIT),
}
ASYNC_CALLS_WITH_MODEL = {
    "achat": lambda c: c.achat(model=MODEL, messages=messages("m")),
    "acompletions": lambda c: c.acompletions(model=MODEL, prompt="m"),
    "aembeddings": lambda c: c.aembeddings(model=EMBEDDER, input="m"),
}


@pytest.mark.parametrize("call", CALLS_WITH_MODEL.values(), ids=CALLS_WITH_MODEL)
def test_model_is_accepted_wherever_model_name_is(server, call):
    with client_of(server, batch_timeout=0.0) as client:
        call(client)
    [seen] = server.seen
    assert seen.body["model"] in (MODEL, EMBEDDER)
    assert "model_name" not in seen.body


@pytest.mark.parametrize("call", ASYNC_CALLS_WITH_MODEL.values(), ids=ASYNC_CALLS_WITH_MODEL)
async def test_model_is_accepted_by_the_async_twins(server, call):
    with client_of(server, batch_timeout=0.0) as client:
        await call(client)
    [seen] = server.seen
    assert seen.body["model"] in (MODEL, EMBEDDER)


def test_model_and_model_name_that_differ_are_refused_naming_both_and_neither_is_the_old_error(
    server,
):
    with client_of(server) as client:
        with pytest.raises(InvalidInputError, match=r"model_name='gpt-4o' and model='gpt-4o-mini'"):
            client.chat(model_name="gpt-4o", model=MODEL, messages=messages("x"))
        with pytest.raises(InvalidInputError, match=r"model_name=.* and model="):
            client.embeddings("a", "text", model="b")
        with pytest.raises(InvalidInputError, match="model_name must be a non-empty string"):
            client.chat(messages=messages("x"))
        client.chat(
            model_name=MODEL, model=MODEL, messages=messages("same")
        )  # the same model twice is fine
    assert [s.body["messages"][0]["content"] for s in server.seen] == ["same"]


# --------------------------- 2. timeout, max_retries, extra_* per call, never in the body


def test_an_openai_sdk_call_sends_each_extra_where_it_belongs(server):
    with client_of(server) as client:
        reply = client.chat(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            timeout=5,
            extra_headers={"X-Trace": "1"},
            extra_query={"api-version": "x"},
            extra_body={"foo": 1},
        )
    assert reply["choices"][0]["message"]["content"] == "re: hi"
    [seen] = server.seen
    assert seen.headers["x-trace"] == "1"
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.query == [("api-version", "x")]
    assert seen.body == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "foo": 1,
    }


EVERY_OPTION = dict(
    timeout=5,
    max_retries=1,
    extra_headers={"X-Trace": "t"},
    extra_query={"q": "1"},
    extra_body={"foo": 1},
)
SYNC_OPERATIONS = {
    "chat": lambda c: c.chat(model=MODEL, messages=messages("o"), temperature=0, **EVERY_OPTION),
    "completions": lambda c: c.completions(model=MODEL, prompt="o", max_tokens=3, **EVERY_OPTION),
    "embeddings": lambda c: c.embeddings(
        model=EMBEDDER, input=["a", "b"], dimensions=2, **EVERY_OPTION
    ),
    "make_request": lambda c: c.make_request(
        "chat/completions", {"model": MODEL, "messages": messages("o")}, **EVERY_OPTION
    ),
}
ASYNC_OPERATIONS = {
    "achat": lambda c: c.achat(model=MODEL, messages=messages("o"), temperature=0, **EVERY_OPTION),
    "acompletions": lambda c: c.acompletions(model=MODEL, prompt="o", max_tokens=3, **EVERY_OPTION),
    "aembeddings": lambda c: c.aembeddings(
        model=EMBEDDER, input=["a", "b"], dimensions=2, **EVERY_OPTION
    ),
    "amake_request": lambda c: c.amake_request(
        "chat/completions", {"model": MODEL, "messages": messages("o")}, **EVERY_OPTION
    ),
}


def _assert_extras_honoured_and_body_clean(server: Server) -> None:
    [seen] = server.seen
    assert seen.headers["x-trace"] == "t"
    assert seen.query == [("q", "1")]
    assert seen.body["foo"] == 1
    assert not set(PER_CALL) & set(seen.body), seen.body


@pytest.mark.parametrize("call", SYNC_OPERATIONS.values(), ids=SYNC_OPERATIONS)
def test_per_call_options_are_honoured_and_never_sent_in_the_body(server, call):
    with client_of(server) as client:
        call(client)
    _assert_extras_honoured_and_body_clean(server)


@pytest.mark.parametrize("call", ASYNC_OPERATIONS.values(), ids=ASYNC_OPERATIONS)
async def test_per_call_options_are_honoured_by_the_async_twins(server, call):
    with client_of(server) as client:
        await call(client)
    _assert_extras_honoured_and_body_clean(server)


def test_extra_headers_may_replace_the_clients_own_and_none_removes_one(server):
    with client_of(server) as client:
        client.chat(
            model=MODEL,
            messages=messages("a"),
            extra_headers={"authorization": "Bearer other", "Accept": None},
        )
    [seen] = server.seen
    assert seen.headers["authorization"] == "Bearer other"  # as the openai SDK lets it
    assert "accept" not in seen.headers or seen.headers["accept"] != "application/json"


def test_a_per_call_timeout_bounds_an_attempt_against_a_silent_server(server):
    with client_of(server, timeout=60.0, max_retries=3) as client:
        # client.timeout (60 s) would run the test's own timeout out
        with pytest.raises(RequestTimeoutError, match=r"\b0\.2s?\b"):
            client.chat(
                model=MODEL,
                messages=messages("hang"),
                timeout=0.2,
                max_retries=0,
                extra_headers={"X-Hang": "1"},
            )
        assert client.get_stats()["total_requests"] == 1
    assert len(server.seen) == 1  # max_retries=0: one attempt reached the server


async def test_a_per_call_timeout_bounds_an_async_attempt_too(server):
    with client_of(server, timeout=60.0) as client, pytest.raises(RequestTimeoutError):
        await asyncio.wait_for(
            client.achat(
                model=MODEL,
                messages=messages("hang"),
                timeout=0.2,
                max_retries=0,
                extra_headers={"X-Hang": "1"},
            ),
            WAIT,
        )
    assert len(server.seen) == 1


def test_per_call_max_retries_overrides_the_clients_for_that_request_only(server):
    with client_of(server, max_retries=3, failure_threshold=100) as client:
        server.failures = 100
        with pytest.raises(ServerError):
            client.chat(model=MODEL, messages=messages("none"), max_retries=0)
        assert len(server.seen) == 1
        with pytest.raises(ServerError):
            client.make_request(
                "chat/completions", {"model": MODEL, "messages": messages("one")}, max_retries=1
            )
        assert len(server.seen) == 3
        server.failures = 2
        assert client.chat(model=MODEL, messages=messages("client's"))[
            "choices"
        ]  # client.max_retries (3) still applies
    assert len(server.seen) == 6


@pytest.mark.parametrize(
    "options, says",
    [
        ({"timeout": 0}, "timeout must be"),
        ({"timeout": -1}, "timeout must be"),
        ({"timeout": "5"}, "timeout must be"),
        ({"timeout": True}, "timeout must be"),
        ({"max_retries": -1}, "max_retries must be"),
        ({"max_retries": 1.5}, "max_retries must be"),
        ({"extra_headers": "X-Trace: 1"}, "extra_headers must be a dict"),
        ({"extra_headers": {"X-Trace": 1}}, "one-line string"),
        ({"extra_headers": {"X-Trace": "a\r\nX-Evil: 1"}}, "one-line string"),
        ({"extra_headers": {"Bad Name": "1"}}, "not a header name"),
        ({"extra_query": {"q": object()}}, "extra_query"),
        ({"extra_body": ["foo"]}, "extra_body must be a dict"),
    ],
)
def test_bad_per_call_options_are_refused_before_sending(server, options, says):
    with client_of(server) as client, pytest.raises(InvalidInputError, match=says):
        client.chat(model=MODEL, messages=messages("x"), **options)
    assert server.seen == []


async def test_embeddings_are_batched_only_with_requests_of_the_same_per_call_options(server):
    with client_of(server, batch_timeout=WINDOW, max_batch_size=64) as client:
        client.supported_batch_models = [EMBEDDER]
        traced = client.with_options(extra_headers={"X-Trace": "a"})
        await asyncio.gather(
            client.aembeddings(EMBEDDER, "one"),
            client.aembeddings(EMBEDDER, "two"),
            traced.aembeddings(EMBEDDER, "three"),
            client.aembeddings(EMBEDDER, "four", extra_headers={"X-Trace": "b"}),
            client.aembeddings(EMBEDDER, "five", timeout=30),
        )
    sent = sorted((s.headers.get("x-trace", ""), s.body["input"]) for s in server.seen)
    assert sent == [("", ["five"]), ("", ["one", "two"]), ("a", ["three"]), ("b", ["four"])]


# ----------------------------------------------------------- 3. with_options


def test_with_options_is_a_view_sharing_the_engine_whose_defaults_a_call_overrides(server):
    with client_of(server, max_retries=3) as client:
        view = client.with_options(
            timeout=7, max_retries=0, extra_headers={"X-View": "v", "X-Trace": "view"}
        )
        assert (
            "view" in repr(view) and "timeout=7" in repr(view) and "v'" not in repr(view)
        )  # header values stay hidden
        assert (view.timeout, view.max_retries) == (7.0, 0)
        assert (client.timeout, client.max_retries) == (60.0, 3)
        assert view._engine is client._engine

        view.chat(model=MODEL, messages=messages("by view"), extra_headers={"X-Trace": "call"})
        server.failures = 1
        with pytest.raises(ServerError):
            view.chat(model=MODEL, messages=messages("no retry"))  # the view's max_retries=0
        server.failures = 1
        assert view.chat(model=MODEL, messages=messages("retried"), max_retries=1)[
            "choices"
        ]  # the call's wins

        assert (
            client.get_stats()["total_requests"] == 3
        )  # one engine: the client counts the view's calls
        view.close()  # does nothing: the client owns the engine
        client.chat(model=MODEL, messages=messages("still open"))
        with pytest.raises(AttributeError, match="view"):
            view.max_retries = 5
        assert client.max_retries == 3
    first = server.seen[0]
    assert first.headers["x-view"] == "v" and first.headers["x-trace"] == "call"
    assert [s.body["messages"][0]["content"] for s in server.seen] == [
        "by view",
        "no retry",
        "retried",
        "retried",
        "still open",
    ]
    assert "x-view" not in server.seen[-1].headers


def test_a_view_of_a_view_keeps_both_defaults(server):
    with client_of(server) as client:
        view = client.with_options(extra_headers={"A": "1"}).with_options(
            extra_query={"v": "2"}, priority="high"
        )
        view.make_request("chat/completions", {"model": MODEL, "messages": messages("x")})
    [seen] = server.seen
    assert seen.headers["a"] == "1" and seen.query == [("v", "2")]


# -------------------------------------------------- 4. priority as a word


async def test_priority_words_work_wherever_the_constants_do(server):
    with client_of(server, max_concurrent_requests=1) as client:
        hold = client.with_options(extra_headers={"X-Hang": "1"}, timeout=30).queue_with_priority(
            chat_info("hold")
        )
        assert await asyncio.to_thread(
            server.hung.wait, WAIT
        )  # the only slot is taken until `hold` ends
        low = client.queue_with_priority(chat_info("low"), "low")
        normal = client.queue_with_priority(chat_info("normal", priority="Normal"))
        high = asyncio.ensure_future(
            client.achat(model=MODEL, messages=messages("high"), priority=" HIGH ")
        )
        also_high = asyncio.ensure_future(
            client.amake_request(
                "chat/completions",
                {"model": MODEL, "messages": messages("also high")},
                priority="high",
            )
        )
        urgent_view = client.with_options(priority="High")
        from_view = urgent_view.queue_with_priority(chat_info("view high"))
        await asyncio.sleep(0)  # a turn of the loop: the two tasks submit their requests
        assert [r["priority"] for r in client.request_queue] == [0, 0, 0, 1, 2]
        hold.cancel()
        await asyncio.gather(high, also_high, low, normal, from_view)
    order = [s.body["messages"][0]["content"] for s in server.seen]
    assert order[0] == "hold"
    assert set(order[1:4]) == {"high", "also high", "view high"} and order[4:] == ["normal", "low"]


def test_a_bad_priority_names_the_words_too(server):
    with client_of(server) as client:
        for bad in ("urgent", 7, True):
            with pytest.raises(
                InvalidInputError, match=r'PRIORITY_HIGH \(0\).*"high", "normal" or "low"'
            ):
                client.chat(model=MODEL, messages=messages("x"), priority=bad)
        with pytest.raises(InvalidInputError, match='"high"'):
            client.with_options(priority="asap")
        with pytest.raises(InvalidInputError, match='"high"'):
            client.queue_with_priority(chat_info("x", priority="top"))
    assert server.seen == []


# ------------------------------------------- 5. anthropic and google as names


def test_anthropic_and_google_name_claude_and_gemini_in_any_case():
    assert (
        backend_class("anthropic") is backend_class(" Anthropic ") is BACKENDS["claude"] is claude
    )
    assert backend_class("GOOGLE") is BACKENDS["gemini"] is gemini
    assert backend_class("openai") is openai_api
    with pytest.raises(UnknownBackendError) as refused:
        backend_class("gpt")
    assert isinstance(refused.value, KeyError)
    assert "claude (or anthropic)" in str(refused.value) and "gemini (or google)" in str(
        refused.value
    )
    assert "anthropic" not in BACKENDS  # one backend, one name in the table


def test_ipfs_accelerate_run_api_anthropic_sends_anthropic_requests(tmp_path, simulator):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"id": "a", "messages": messages("hi claude")}) + "\n")
    out = tmp_path / "out.jsonl"
    code = cli_main(
        [
            "run",
            str(jobs),
            "--api",
            "Anthropic",
            "--base-url",
            simulator.url,
            "--key",
            "sk-ant-x",
            "--out",
            str(out),
            "--progress",
            "quiet",
        ]
    )
    assert code == 0
    assert json.loads(out.read_text())["status"] == "ok"
    assert simulator.counters()["by_format"] == {"anthropic": 1}


def test_ipfs_accelerate_run_refuses_an_unknown_api_listing_names_and_aliases(tmp_path, capsys):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("{}\n")
    assert cli_main(["run", str(jobs), "--api", "antropic", "--progress", "quiet"]) == 2
    err = capsys.readouterr().err
    assert "unknown API 'antropic'" in err and "claude (or anthropic)" in err


def test_the_feature_checks_take_google_for_gemini(tmp_path, capsys, monkeypatch):
    # the name is what is checked here (every check runs for gemini in test_feature_checks)
    run_all = checks.run_all
    monkeypatch.setattr(
        checks,
        "run_all",
        lambda target: run_all(target, [c for c in checks.CHECKS if c.name == "monitoring"]),
    )
    assert run_checks(api="google", output_dir=str(tmp_path)) == 0
    assert "Checking the gemini backend" in capsys.readouterr().out
    assert run_checks(api="nope", output_dir=str(tmp_path)) == 2
    assert "gemini (or google)" in capsys.readouterr().out


def test_the_multiplexer_takes_the_aliases(simulator):
    with ApiKeyMultiplexer(
        FAST, base_url={"anthropic": simulator.url, "google": simulator.url + "/v1beta"}
    ) as mux:
        mux.add_key("anthropic", "a", "sk-ant-1")
        mux.add_key("Google", "g", "AIza-1")
        assert mux.get_client("claude") is mux.get_client("anthropic")
        mux.get_client("anthropic").chat(model="claude-sonnet-4-5", messages=messages("hi"))
        mux.get_client("google").chat(model="gemini-2.5-flash", messages=messages("hi"))
    assert simulator.counters()["by_format"] == {"anthropic": 1, "gemini": 1}


# ------------------------------------------ 6. an unknown keyword is a TypeError


@pytest.mark.parametrize(
    "call, name, suggestion",
    [
        (
            lambda c: c.chat(model=MODEL, messages=messages("x"), temprature=0),
            "temprature",
            "temperature",
        ),
        (
            lambda c: c.chat(model=MODEL, messages=messages("x"), max_retires=1),
            "max_retires",
            "max_retries",
        ),
        (
            lambda c: c.chat(model=MODEL, messages=messages("x"), extra_header={"A": "1"}),
            "extra_header",
            "extra_headers",
        ),
        (lambda c: c.completions(model=MODEL, prompt="x", max_token=3), "max_token", "max_tokens"),
        (lambda c: c.embeddings(model=EMBEDDER, input="x", dimension=8), "dimension", "dimensions"),
        (
            lambda c: c.add_to_batch(model=EMBEDDER, request_input="x", encoding="float"),
            "encoding",
            "encoding_format",
        ),
    ],
)
def test_an_unknown_keyword_is_a_type_error_naming_the_close_matches(
    server, call, name, suggestion
):
    with (
        client_of(server) as client,
        pytest.raises(
            TypeError, match=rf"unknown parameter '{name}' \(did you mean .*'{suggestion}'"
        ),
    ):
        call(client)
    assert server.seen == []


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.achat(model=MODEL, messages=messages("x"), temprature=0),
        lambda c: c.acompletions(model=MODEL, prompt="x", temprature=0),
        lambda c: c.aembeddings(model=EMBEDDER, input="x", temprature=0),
    ],
    ids=["achat", "acompletions", "aembeddings"],
)
async def test_the_async_twins_refuse_an_unknown_keyword_too(server, call):
    with client_of(server) as client, pytest.raises(UnknownParameterError) as refused:
        await call(client)
    assert isinstance(refused.value, TypeError) and isinstance(refused.value, InvalidInputError)
    assert "extra_body={'temprature': ...}" in str(refused.value)
    assert server.seen == []


def test_a_field_no_one_knows_goes_in_extra_body(server):
    with client_of(server) as client:
        client.chat(
            model=MODEL, messages=messages("x"), extra_body={"temprature": 0, "guided_json": {}}
        )
    assert server.seen[0].body["temprature"] == 0 and server.seen[0].body["guided_json"] == {}


OPENAI_STYLE_BACKENDS = ["openai", "groq", "vllm", "opea"]


@pytest.mark.parametrize("api", OPENAI_STYLE_BACKENDS)
def test_every_parameter_a_provider_documents_still_reaches_the_body(server, api):
    cls = backend_class(api)
    documented = sorted(cls.provider.body_params["chat"])
    params = {name: 1 for name in documented}
    with cls({}, cls.connection_metadata(server.url, KEY)) as client:
        client.chat(model=MODEL, messages=messages("all"), **params)
    [seen] = server.seen
    assert {name: seen.body.get(name) for name in documented} == params
    for name in (
        "temperature",
        "max_tokens",
        "top_p",
        "stop",
        "tools",
        "tool_choice",
        "seed",
        "n",
        "user",
        "stream_options",
        "presence_penalty",
        "frequency_penalty",
        "logprobs",
    ):
        assert name in documented, (api, name)


def test_an_unknown_request_info_field_is_refused_naming_the_close_match():
    with openai_api(
        metadata={"openai_api_key": "sk-x", "openai_base_url": "http://127.0.0.1:9/v1"}
    ) as client:
        with pytest.raises(
            InvalidInputError, match=r"unknown field 'reqest_id' \(did you mean 'request_id'\?\)"
        ):
            client.queue_with_priority(
                {"endpoint": "chat/completions", "data": {}, "reqest_id": "r1"}
            )
        with pytest.raises(InvalidInputError, match="body fields go in its 'data'"):
            client.queue_with_priority(
                {"endpoint": "chat/completions", "data": {}, "temperature": 0.2}
            )


def test_a_call_may_drop_the_user_agent():
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]}
    with recording_server(answer, "/v1") as (url, seen):
        with openai_api(metadata={"openai_api_key": "sk-x", "openai_base_url": url}) as client:
            client.chat("m", [{"role": "user", "content": "a"}])
            client.chat("m", [{"role": "user", "content": "b"}], extra_headers={"User-Agent": None})
    assert seen[0][2]["user-agent"].startswith("ipfs-accelerate-py/")
    assert "user-agent" not in seen[1][2]
