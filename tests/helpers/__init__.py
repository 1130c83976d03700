"""Test machinery the unit and integration tests share.

* Answers for the in-memory transport: :func:`answer` (JSON),
  :func:`stream_answer`, :func:`sse_event`, and :func:`scripted` (a handler
  that plays a script of answers, then a default).
* :class:`ClientFactory`: builds clients of one backend class from the
  metadata every test client of that backend starts from, over real HTTP, on
  the simulator, or over the in-memory transport.
* A loopback HTTP server that records each request as sent
  (:func:`recording_server`, :func:`recorder_fixture`) and :func:`post_json`,
  one request by hand; :func:`aiohttp_server`, a loopback aiohttp server
  (TLS when given a context) whose handler answers every request.
* What the integration tests against the simulator share: :data:`FAST`,
  :data:`REPLY_PREFIX`, :data:`WAIT`, the OpenAI-shaped :func:`messages`,
  :func:`reply_text`, :func:`joined_deltas`, :func:`together` (n callers
  released at once), :func:`beside` (a watcher thread beside worker threads)
  and :func:`eventually` (waiting for another process).
* :func:`absolute_imports` (for sans-IO checks) and :func:`env_cleared`.

Plain functions and classes, and fixture factories a module binds to a name
(``client = client_fixture(make_groq)``); the fixtures every module may use
(the simulator, ``recorder``, ``frequent_thread_switches``) live in
``tests/conftest.py``.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import copy
import http.server
import io
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import pytest

from ipfs_accelerate_py.transport.base import HttpRequest, HttpResponse, StreamResponse
from ipfs_accelerate_py.transport.memory import MemoryTransport
from ipfs_accelerate_py.transport.sse import SseEvent

LOOPBACK = "127.0.0.1"

WAIT = 10.0
"""Seconds a test waits on a future, a thread or a socket before it counts as hung."""

FAST = {
    "initial_retry_delay": 0.01,
    "retry_jitter": 0.0,
    "batch_timeout": 0.05,
}
"""Settings every client against the simulator starts from: quick backoff, short batch wait."""

QUICK_RETRIES = {"initial_retry_delay": 0.001, "retry_jitter": 0.0}
"""Settings an in-memory client starts from: retries all but at once, no jitter."""

WALL = 1_700_000_000.0
"""A wall-clock time (``wall_now``) for reading errors by hand."""

REPLY_PREFIX = "Simulated reply to: "
"""What the simulator's chat reply puts before the last user message."""

WINDOW = 0.3
"""batch_timeout for tests that need every caller in the same batching window."""

JSON_TYPE = "application/json"
EVENT_STREAM_TYPE = "text/event-stream"


# ------------------------------------------------------- in-memory answers


def answer(status: int, body: Any, headers: Mapping[str, str] | None = None) -> HttpResponse:
    """A response with ``body`` as JSON (bytes are sent as they are) and ``headers`` added."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpResponse(status, {"content-type": JSON_TYPE, **(headers or {})}, raw)


def stream_answer(
    lines: Iterable[bytes],
    headers: Mapping[str, str] | None = None,
    on_close: Callable[[], None] | None = None,
) -> StreamResponse:
    """A 200 stream whose body is ``lines`` exactly (raw lines, no line endings).

    ``headers`` default to an event stream's; ``on_close()`` runs each time
    the stream is closed.
    """
    lines = list(lines)

    async def produce() -> Any:
        for line in lines:
            yield line

    async def close() -> None:
        if on_close is not None:
            on_close()

    return StreamResponse(
        200, dict(headers or {"content-type": EVENT_STREAM_TYPE}), produce(), close
    )


def sse_event(data: Any) -> SseEvent:
    """A decoded server-sent event carrying ``data`` (a string as it is, anything else as JSON)."""
    return SseEvent(None, data if isinstance(data, str) else json.dumps(data))


def scripted(*answers: Any, then: Any = None) -> Callable[[HttpRequest], Any]:
    """A MemoryTransport handler: ``answers`` in order, one a request, then ``then``.

    ``then`` is an answer or a function of the request; without one, a request
    past the script fails the test.  Safe to call from several threads.
    """
    script = list(answers)
    lock = threading.Lock()

    def handler(request: HttpRequest) -> Any:
        with lock:
            if script:
                return script.pop(0)
        if then is None:
            raise AssertionError(f"a request past the script: {request.method} {request.url}")
        return then(request) if callable(then) else then

    return handler


# --------------------------------------------------------- client factory

_UNSET: Any = object()


@dataclass(frozen=True)
class ClientFactory:
    """Builds clients of one backend class as the tests of that backend do.

    A client's metadata is, in this order: ``{base_setting: base URL}`` (the
    URL given, else ``base_url``), ``defaults``, ``{key_setting: key}`` when
    there is a key (the key given, else ``key``; ``key=None`` means none),
    then the call's own settings, which win.  Close each client
    (``with make(...) as client``).
    """

    backend: type
    base_setting: str | None = None
    key_setting: str | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    base_url: str | None = None
    key: str | None = None

    def metadata(
        self, base_url: str | None = None, key: Any = _UNSET, **settings: Any
    ) -> dict[str, Any]:
        """The metadata a client of these arguments is built with."""
        metadata: dict[str, Any] = {}
        base_url = base_url if base_url is not None else self.base_url
        if base_url is not None:
            metadata[self._setting("base_setting")] = base_url
        metadata.update(copy.deepcopy(dict(self.defaults)))
        key = self.key if key is _UNSET else key
        if key:
            metadata[self._setting("key_setting")] = key
        metadata.update(settings)
        return metadata

    def _setting(self, field_name: str) -> str:
        name = getattr(self, field_name)
        if not name:
            raise ValueError(f"ClientFactory({self.backend.__name__}) was given no {field_name}")
        return str(name)

    def __call__(self, base_url: str | None = None, key: Any = _UNSET, **settings: Any) -> Any:
        """A client over real HTTP at ``base_url``."""
        return self.backend({}, self.metadata(base_url, key, **settings))

    def on(self, simulator: Any, key: Any = _UNSET, **settings: Any) -> Any:
        """A client of the simulator, at the path where it serves this backend's wire format."""
        return self(simulator.url + self.backend.provider.spec.simulator_path, key, **settings)  # type: ignore[attr-defined]  # a backend class

    def in_memory(
        self, handler: Callable[[HttpRequest], Any], *, key: Any = _UNSET, **settings: Any
    ) -> tuple[Any, MemoryTransport]:
        """``(client, transport)``: a client over a MemoryTransport answering with ``handler``."""
        transport = MemoryTransport(handler)
        return self.backend(
            {}, self.metadata(None, key, **settings), transport=transport
        ), transport


def client_fixture(make: ClientFactory) -> Any:
    """A ``client`` fixture: ``make.on(simulator)``, closed after the test."""

    @pytest.fixture
    def client(simulator: Any) -> Iterator[Any]:
        with make.on(simulator) as backend:
            yield backend

    return client


# ----------------------------------------------------- the request as sent


class Reply(NamedTuple):
    """An answer other than 200 from a recording server's ``reply``."""

    status: int
    body: Any
    headers: Mapping[str, str] = {}


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Records each request as sent and answers 200 with ``reply``'s JSON
    (or as a :class:`Reply` says)."""

    seen: list[Any] = []
    reply: Any = None

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.append(
            (self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        )
        reply = type(self).reply
        answer = reply(self.command, self.path, body) if callable(reply) else reply
        if not isinstance(answer, Reply):
            answer = Reply(200, answer)
        payload = json.dumps(answer.body).encode()
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", JSON_TYPE)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass


@contextlib.contextmanager
def recording_server(reply: Any, suffix: str = "") -> Iterator[tuple[str, list[Any]]]:
    """A plain HTTP server on loopback that records what it receives.

    Yields ``(base_url, seen)``: the server's URL plus ``suffix``, and the
    requests in arrival order, each ``(method, path, headers with lower-case
    names, body bytes)``.  ``reply`` is the JSON body of every answer, or
    ``reply(method, path, body)`` computing it (a :class:`Reply` for another
    status or headers).
    """
    handler = type(
        "Recorder",
        (_Recorder,),
        {"seen": [], "reply": staticmethod(reply) if callable(reply) else reply},
    )
    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}{suffix}", handler.seen  # type: ignore[attr-defined]  # set on the class above
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def aiohttp_server(
    handler: Callable[[Any], Any], ssl_context: Any = None, host: str | None = None
) -> Iterator[str]:
    """An aiohttp server on loopback (``host``, 127.0.0.1 unless given), port 0, on a loop in a thread of its own.

    Every request (any method, any path, absolute-form targets too, as a
    forward proxy receives them) goes to ``async handler(request) ->
    web.Response``.  Serves TLS with ``ssl_context``.  Yields the base URL.
    """
    from aiohttp import web

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)

    async def start() -> int:
        await runner.setup()
        await web.TCPSite(runner, host or LOOPBACK, 0, ssl_context=ssl_context).start()
        return int(runner.addresses[0][1])

    port = asyncio.run_coroutine_threadsafe(start(), loop).result(
        WAIT
    )  # from any thread, a running loop's too
    try:
        yield f"{'https' if ssl_context else 'http'}://{host or LOOPBACK}:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(WAIT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT)
        loop.close()


def recorder_fixture(reply: Any, suffix: str = "") -> Any:
    """A ``recorder`` fixture over :func:`recording_server`, for a module whose server answers otherwise."""

    @pytest.fixture
    def recorder() -> Iterator[tuple[str, list[Any]]]:
        with recording_server(reply, suffix) as recording:
            yield recording

    return recorder


def post_json(url: str, body: Any, headers: Mapping[str, str]) -> HttpResponse:
    """One POST by hand, to read what the client does not keep; an error status is answered, not raised."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers=dict(headers), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return HttpResponse(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as refused:
        return HttpResponse(refused.code, dict(refused.headers), refused.read())


# -------------------------------------------------- OpenAI-shaped helpers


def messages(text: str) -> list[dict[str, str]]:
    """One user message."""
    return [{"role": "user", "content": text}]


def reply_text(response: dict[str, Any]) -> str:
    """The text of a chat completion."""
    return str(response["choices"][0]["message"]["content"])


def joined_deltas(chunks: list[Any]) -> str:
    """The text of a stream, its chunks' text joined."""
    return "".join(chunk.text for chunk in chunks)


# ------------------------------------------------------------ concurrency


def eventually(predicate: Callable[[], bool], what: str) -> None:
    """Wait (at most WAIT) for something another thread or process does:
    for what a test cannot be told of, such as a server noticing a client left."""
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT}s: {what}")
        time.sleep(0.01)


def key_cooling_logged(records: Iterable[Any]) -> list[str]:
    """What the key pool said it decided on each 429 (``caplog.records``, INFO and up):
    ``"cooling 0.2s after HTTP 429 (Retry-After)"``, ``"... (backoff, no Retry-After)"``, or
    over max_retry_after.  A test reads the wait the client chose here, not off a clock."""
    return [
        r.getMessage()
        for r in records
        if r.name == "ipfs_accelerate_py.keys" and "429" in r.getMessage()
    ]


async def eventually_async(predicate: Callable[[], bool], what: str) -> None:
    """:func:`eventually` for a coroutine: the event loop runs meanwhile."""
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT}s: {what}")
        await asyncio.sleep(0.01)


def cli_here(
    argv: list[str], env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``ipfs-accelerate *argv`` run by ``cli.main`` in this process (the code the console
    script runs), with ``env`` as the whole environment if given: exit code, stdout, stderr.

    Far quicker than a fresh interpreter; tests of signals, of the process's own stdout or
    of the exit status a shell sees still run the real command in a subprocess."""
    from ipfs_accelerate_py.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = main(list(argv))
            except SystemExit as exit_:
                # sys.exit(None) is 0, sys.exit("message") is 1, as for a process
                code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(list(argv), code, stdout.getvalue(), stderr.getvalue())


def together(n: int, call: Callable[[int], Any]) -> list[Any]:
    """Run ``call(i)`` for i in range(n) from n threads released at once; results in order."""
    barrier = threading.Barrier(n)

    def run(i: int) -> Any:
        barrier.wait(WAIT)
        return call(i)

    with ThreadPoolExecutor(n) as pool:
        return [f.result(WAIT) for f in [pool.submit(run, i) for i in range(n)]]


def beside(
    watch: Callable[[], None],
    workers: Iterable[Callable[[], None]],
    finished: threading.Event,
    timeout: float = 30.0,
) -> None:
    """Run ``watch`` in a thread of its own while each of ``workers`` runs in
    another; once every worker has returned, set ``finished`` (which ends
    ``watch``) and wait for ``watch``.  All of it within ``timeout`` seconds,
    and what any thread raised is raised here: an assertion failing in a
    thread fails the test instead of being printed."""
    workers = list(workers)
    deadline = time.monotonic() + timeout
    pool = ThreadPoolExecutor(len(workers) + 1)  # each its own thread, all at once
    try:
        watching = pool.submit(watch)
        running = [pool.submit(work) for work in workers]
        try:
            for work in running:
                work.result(max(0.0, deadline - time.monotonic()))
        finally:
            finished.set()
        watching.result(max(0.0, deadline - time.monotonic()))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------- the rest


def absolute_imports(module: ModuleType) -> set[str]:
    """The top-level names of the packages ``module``'s source imports absolutely."""
    tree = ast.parse(Path(str(module.__file__)).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    return imported


def env_cleared(*names: str) -> Any:
    """An autouse fixture removing the environment variables ``names`` for each test of the module."""

    @pytest.fixture(autouse=True)
    def cleared_env(monkeypatch: pytest.MonkeyPatch) -> None:
        for name in names:
            monkeypatch.delenv(name, raising=False)

    return cleared_env


def quick_benchmark(tmp_path_factory: Any, script: str, timeout: float) -> tuple[Any, Path]:
    """Run ``benchmarks/<script> --quick --json FILE`` as a subprocess: (the finished process, FILE)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    out = tmp_path_factory.mktemp("bench") / (Path(script).stem + ".json")
    proc = subprocess.run(
        [sys.executable, str(root / "benchmarks" / script), "--quick", "--json", str(out)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc, out
