"""The HTTP server: aiohttp's low-level server, one dispatcher, run in-process or blocking.

:class:`Simulator` runs the server on its own event loop in a daemon thread
(``start()``/``stop()``, or a ``with`` block), or on the caller's loop
(``await start_async()``/``await stop_async()``, or ``async with``).
:func:`run_server` serves until interrupted (the CLI).  uvloop is used when it
is installed.  The handler is cancelled when its client goes away, which is
how hangs end early and client disconnects are counted.  Every answer goes
through :func:`.request_body.settle_unread_body`, so a request body it left
unread is discarded or the connection closed, never parsed as the next
request; admin calls answer ``Expect: 100-continue`` before reading theirs.

The admin endpoint needs a token (:mod:`.admin_guard`): ``admin_token`` when
given, else a random one made at construction; ``Simulator.admin_token`` and
``Simulator.admin_headers`` tell it, and :func:`run_server` prints a generated
one.  The in-process controls (``configure``, ``script``, ``reset``,
``counters``) call the behaviour directly and need no token.
``log_requests(path)`` writes a line per finished request to a file
(:mod:`.request_log`), for soak tests that check request by request.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from .admin import ADMIN_PREFIX, AdminHandler
from .admin_guard import new_admin_token
from .api import ApiHandler
from .behaviour import Behaviour, Pending
from .counters import Counters, CounterSnapshot
from .formats import DEFAULT_FORMAT, discover_formats
from .request_body import settle_unread_body
from .request_log import DEFAULT_TAG_HEADER, RequestLog
from .routing import Router
from .scenario import Scenario
from .wireformat import JsonObject, WireFormat

__all__ = ["DEFAULT_HOST", "Simulator", "build_router", "run_server"]

DEFAULT_HOST = "127.0.0.1"
SHUTDOWN_TIMEOUT = 0.25
START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0

ScenarioLike = Scenario | Mapping[str, Any] | None


def _scenario(value: ScenarioLike) -> Scenario:
    return value if isinstance(value, Scenario) else Scenario.from_mapping(value or {})


def build_router(
    formats: Sequence[WireFormat] | None = None, extra_formats: Sequence[WireFormat] = ()
) -> Router:
    """The routes of ``formats`` (default: every module in ``simulator/formats``) plus
    ``extra_formats``; RouteConflict if two of them claim the same method and path."""
    chosen = tuple(discover_formats() if formats is None else formats) + tuple(extra_formats)
    return Router(chosen)


def new_event_loop(use_uvloop: bool = True) -> asyncio.AbstractEventLoop:
    """A uvloop loop when available and wanted, else the default asyncio loop."""
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class _Core:
    """The aiohttp server bound to one event loop."""

    def __init__(
        self, behaviour: Behaviour, counters: Counters, router: Router, admin_token: str
    ) -> None:
        default = router.formats.get(DEFAULT_FORMAT) or next(iter(router.formats.values()), None)
        if default is None:
            raise ValueError("the simulator needs at least one wire format")
        self._api = ApiHandler(behaviour, counters, router, default)
        self._admin = AdminHandler(behaviour, counters, admin_token)
        self._runner: web.ServerRunner | None = None

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.raw_path
        query = path.find("?")
        if query >= 0:
            path = path[:query]
        if path.startswith(ADMIN_PREFIX):
            response = await self._admin.handle(request, path)
        else:
            response = await self._api.handle(request, path)
        settle_unread_body(request, response)
        return response

    async def start(self, host: str, port: int) -> int:
        server = web.Server(self._handle, handler_cancellation=True, access_log=None)
        runner = web.ServerRunner(server, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=1024)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound: int = runner.addresses[0][1]  # (host, port) of the listening socket
        return bound

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self._api.close()


class Simulator:
    """The multi-provider simulator on ``host:port`` (port 0 = an ephemeral one).

    ``formats`` replaces the wire formats found in ``simulator/formats``;
    ``extra_formats`` adds to them (e.g. a format defined in a test).  Route
    conflicts raise :class:`~.routing.RouteConflict` here.  ``admin_token`` guards
    ``/_admin/`` over HTTP (random when not given; see :attr:`admin_headers`).  Control methods (``counters``, ``configure``, ``script``, ``reset``) are
    thread-safe and may be called from any thread while the server runs.
    """

    def __init__(
        self,
        scenario: ScenarioLike = None,
        host: str = DEFAULT_HOST,
        port: int = 0,
        *,
        use_uvloop: bool = True,
        formats: Sequence[WireFormat] | None = None,
        extra_formats: Sequence[WireFormat] = (),
        admin_token: str | None = None,
    ) -> None:
        self.host = host
        self._admin_token = admin_token or new_admin_token()
        self._requested_port = port
        self._use_uvloop = use_uvloop
        self._behaviour = Behaviour(_scenario(scenario))
        self._counters = Counters()
        self.router = build_router(formats, extra_formats)
        self._core = _Core(self._behaviour, self._counters, self.router, self._admin_token)
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- addresses --------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulator is not running; call start() first")
        return self._port

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (no path)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, ``http://HOST:PORT/v1``."""
        return self.url + "/v1"

    @property
    def admin_url(self) -> str:
        return self.url + "/_admin"

    @property
    def admin_token(self) -> str:
        """The token ``/_admin/`` requests must carry (``Authorization: Bearer ...``)."""
        return self._admin_token

    @property
    def admin_headers(self) -> dict[str, str]:
        """Headers for an HTTP admin call: the token and ``Content-Type: application/json``."""
        return {"Authorization": f"Bearer {self._admin_token}", "Content-Type": "application/json"}

    @property
    def running(self) -> bool:
        return self._port is not None

    def __repr__(self) -> str:
        where = self.base_url if self.running else "not running"
        return f"Simulator({where})"

    # -- running in a background thread ----------------------------------------------

    def start(self) -> Simulator:
        """Serve from a daemon thread; return once listening."""
        if self._thread is not None or self._port is not None:
            raise RuntimeError("the simulator is already running")
        ready = threading.Event()
        failure: list[BaseException] = []
        thread = threading.Thread(
            target=self._serve_thread,
            args=(ready, failure),
            name="ipfs-accelerate-simulator",
            daemon=True,
        )
        self._thread = thread
        thread.start()
        if not ready.wait(START_TIMEOUT):
            raise RuntimeError("the simulator did not start in time")
        if failure:
            self._thread = None
            thread.join()
            raise failure[0]
        return self

    def _serve_thread(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = new_event_loop(self._use_uvloop)
        asyncio.set_event_loop(loop)
        try:
            self._port = loop.run_until_complete(self._core.start(self.host, self._requested_port))
        except BaseException as exc:  # reported to start()'s caller
            failure.append(exc)
            loop.close()
            ready.set()
            return
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._core.stop())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        """Stop serving (requests still held are cut); idempotent."""
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_TIMEOUT)
        self._thread = self._loop = self._port = None
        self.log_requests(None)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- running on the caller's loop ------------------------------------------------

    async def start_async(self) -> Simulator:
        """Serve on the running event loop; return once listening."""
        if self._thread is not None or self._port is not None:
            raise RuntimeError("the simulator is already running")
        self._port = await self._core.start(self.host, self._requested_port)
        return self

    async def stop_async(self) -> None:
        if self._thread is not None:
            raise RuntimeError("this simulator runs in its own thread; use stop()")
        await self._core.stop()
        self._port = None
        self.log_requests(None)

    async def __aenter__(self) -> Simulator:
        return await self.start_async()

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.stop_async()

    # -- control ------------------------------------------------------------------------

    def counters(self) -> CounterSnapshot:
        """A consistent snapshot of the counters (see :mod:`.counters`)."""
        return self._counters.snapshot()

    def log_requests(
        self, path: str | Path | None, *, tag_header: str = DEFAULT_TAG_HEADER
    ) -> RequestLog | None:
        """Log each finished API request as a JSON line in ``path`` (see
        :mod:`.request_log`), its ``tag_header`` value as its tag; ``None`` stops
        (flushing and closing the file).  A log already on is closed first.
        Returns the new log (``None`` when stopping)."""
        old, self._counters.request_log = self._counters.request_log, None
        if old is not None:
            old.close()
        if path is None:
            return None
        log = RequestLog(path, tag_header)
        self._counters.request_log = log
        return log

    def configure(self, fields: Mapping[str, Any] | None = None, /, **more: Any) -> JsonObject:
        """Merge scenario fields into the running scenario; ScenarioError if refused."""
        values = dict(fields or {})
        values.update(more)
        return self._behaviour.configure(values).to_dict()

    def script(self, responses: Any, *, path: str | None = None, append: bool = False) -> int:
        """Replace (or extend) the pending script, global or for ``path``; return its length."""
        return self._behaviour.set_script(responses, path=path, append=append)

    def reset(self, *, scenario: bool = True) -> None:
        """Zero the counters; with ``scenario`` also restore the starting scenario and script."""
        self._counters.reset()
        self._behaviour.reset(scenario=scenario)

    @property
    def scenario(self) -> JsonObject:
        """The running scenario as a dict."""
        return self._behaviour.scenario.to_dict()

    def pending(self) -> Pending:
        """Countdowns and script entries not yet consumed."""
        return self._behaviour.pending()


def run_server(
    host: str = DEFAULT_HOST,
    port: int = 0,
    scenario: ScenarioLike = None,
    *,
    use_uvloop: bool = True,
    announce: bool = True,
    admin_token: str | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM.

    With ``announce`` print the base URL on the first line, then the admin token
    on the second when it was generated here (one given is not echoed).
    """
    behaviour = Behaviour(_scenario(scenario))
    token = admin_token or new_admin_token()
    core = _Core(behaviour, Counters(), build_router(), token)

    async def serve() -> None:
        bound = await core.start(host, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
        if announce:
            print(f"ipfs_accelerate_py simulator listening on http://{host}:{bound}/v1", flush=True)
            told = "given" if admin_token else token
            print(
                f"admin token: {told} (send 'Authorization: Bearer <token>' to "
                f"http://{host}:{bound}/_admin/)",
                flush=True,
            )
        try:
            await stop.wait()
        finally:
            await core.stop()

    loop = new_event_loop(use_uvloop)
    try:
        loop.run_until_complete(serve())
    except KeyboardInterrupt:
        pass
    finally:
        loop.close()
        sys.stdout.flush()
