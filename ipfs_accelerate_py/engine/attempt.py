"""One attempt: what it holds, the one place its outcome is reported, and
the coroutine that drives it.

An attempt holds three things from the moment the pump starts it (the
lifecycle's ``SENDING``): a concurrency slot (``engine.in_flight``), a
breaker permit (in HALF_OPEN, one of the few probes) and a key lease.
:class:`AttemptHold` owns all three, and its timing.  :meth:`AttemptHold.conclude`
is where the attempt's outcome is told, once: the breaker (with the permit),
the statistics, the last failure behind an opening, the ``AttemptEnded``
event.  :meth:`AttemptHold.release`, called from one ``finally``, gives back
whatever is still held, once, whatever raised: a permit no outcome was
reported for goes back as "ignored" (it counts neither way), and then the key
hears nothing either; otherwise the lease goes back to the key pool with the
attempt's error and usage (a 429 cools the key: ``KeyCooled``; a 401/403
refuses it: ``KeyRefused``).  The slot
frees last.  These are the ``REPORT``, ``RELEASE_PERMIT`` and
``RELEASE_LEASE`` actions of every way out of ``SENDING``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..resilience.errors import (
    ApiError,
    AuthenticationError,
    CancelledRequestError,
    DeadlineExceededError,
    ShutdownError,
    classify_exception,
)
from ..resilience.keys import Lease
from ..transport.base import HttpRequest, HttpResponse, StreamResponse
from .core import EngineCore
from .events import AttemptEnded, AttemptStarted, KeyCooled, KeyRefused
from .lifecycle import Event, Outcome, attempt_timeout, breaker_outcome, cooldown_for
from .request import Request

__all__ = ["FAILURE", "IGNORED", "SUCCESS", "AttemptHold", "Attempts", "Secrets"]

SUCCESS, FAILURE, IGNORED = Outcome.SUCCESS.value, Outcome.FAILURE.value, Outcome.IGNORED.value
_NOT_HEARD = Exception("no outcome reported")  # not an ApiError: the key pool counts it as ignored


class AttemptHold:
    """(engine loop) One attempt's slot, breaker permit and key lease."""

    __slots__ = ("_engine", "_permit", "_lease", "_released", "started")

    def __init__(self, engine: EngineCore, permit: int | None, lease: Lease | None) -> None:
        self._engine = engine
        self._permit = permit
        self._lease = lease
        self._released = False
        self.started = 0.0  # when it was sent (engine clock)

    @property
    def reported(self) -> bool:
        """Whether the breaker has heard this attempt's outcome."""
        return self._permit is None

    def report(self, kind: str, now: float, duration: float = 0.0) -> None:
        """Tell the breaker how the attempt went (``SUCCESS``, ``FAILURE``,
        ``IGNORED``); the permit goes back with it.  Only the first report counts."""
        permit, self._permit = self._permit, None
        if permit is None:
            return
        breaker = self._engine.breaker
        if kind == SUCCESS:
            breaker.on_success(now, duration, permit=permit)
        elif kind == FAILURE:
            breaker.on_failure(now, duration, permit=permit)
        else:
            breaker.on_ignored(now, permit=permit)

    def conclude(self, req: Request, error: ApiError | None, status: int | None) -> None:
        """The attempt's outcome, told once to the breaker, the statistics
        and the event's subscribers."""
        engine = self._engine
        now = engine.clock.now()
        duration = now - self.started
        permit = self._permit
        if error is None and (status is None or status < 300) and permit is not None:
            # a success (breaker_outcome's first case), told without the steps between
            self._permit = None
            engine.breaker.on_success(now, duration, permit=permit)
            outcome = Outcome.SUCCESS
        else:
            outcome = breaker_outcome(error, status)
            if outcome is Outcome.FAILURE:
                engine.last_failure = error
            self.report(outcome.value, now, duration if outcome is not Outcome.IGNORED else 0.0)
        error_kind = error.kind if error is not None else None
        engine.stats.record_attempt(
            key_name=req.last_key, status=status, error_kind=error_kind, latency=duration
        )
        events = engine.events
        if events.subscribers[AttemptEnded]:
            events.publish(
                AttemptEnded(
                    req.request_id,
                    engine.provider.name,
                    req.model,
                    req.last_key,
                    req.attempts,
                    outcome.value,
                    error_kind or "ok",
                    status,
                    duration,
                    now,
                )
            )

    def on_task_done(self, task: asyncio.Task[None]) -> None:
        """(the done callback of the attempt's task) The task leaves the
        engine's set of tasks in flight; what it left held goes back: nothing,
        unless it was cancelled before it began."""
        self._engine._tasks.discard(task)
        if not self._released:
            self.release(
                self._engine.clock.now(),
                CancelledRequestError("cancelled before it began"),
                (0, 0),
                None,
            )

    def release(
        self,
        now: float,
        error: BaseException | None,
        usage: tuple[int, int],
        cooldown: float | None,
    ) -> None:
        """Give back all that is still held, once."""
        if self._released:
            return
        self._released = True
        engine = self._engine
        lease, self._lease = self._lease, None
        if not self.reported:
            # it never reached the server, or ended in no service outcome: the key hears none either
            error = _NOT_HEARD
        try:
            self.report(IGNORED, now)
        finally:
            try:
                if lease is not None:
                    cooled = engine.keys.release(lease, now, error, usage, cooldown)
                    if cooled is not None and engine.events.subscribers[KeyCooled]:
                        seconds, model = cooled
                        engine.events.publish(
                            KeyCooled(
                                engine.provider.name, lease.name, model, seconds, now + seconds, now
                            )
                        )
                    elif (
                        isinstance(error, AuthenticationError)
                        and engine.events.subscribers[KeyRefused]
                    ):
                        engine.events.publish(
                            KeyRefused(
                                engine.provider.name,
                                lease.name,
                                error.status,
                                engine.keys.usable_besides(lease.name),
                                now,
                            )
                        )
            finally:
                engine.in_flight -= 1


class Secrets:
    """An attempt's key and the values of its extra headers and query, for
    redacting what the server says; iterated only when there is an error."""

    __slots__ = ("api_key", "options")

    def __init__(self, api_key: str | None, options: Any) -> None:
        self.api_key, self.options = api_key, options

    def __iter__(self) -> Any:
        yield self.api_key
        yield from self.options.secrets()


class Attempts(EngineCore):
    """Driving one attempt (a stream's, up to its first chunk, in :mod:`.streaming`)."""

    def after_failure(self, req: Request, error: ApiError) -> None:
        """See :mod:`.pump`."""
        raise NotImplementedError

    async def _attempt_stream(
        self,
        req: Request,
        hold: AttemptHold,
        http_request: HttpRequest,
        secrets: Secrets,
        timeout: float,
    ) -> None:
        """See :mod:`.streaming`."""
        raise NotImplementedError

    async def _run(self, req: Request, hold: AttemptHold) -> None:
        """One attempt, then: complete, or the lifecycle's verdict on its error.

        The attempt's slot, breaker permit and key lease belong to ``hold``,
        given back in one ``finally`` whatever raised."""
        result: Any = None
        error: BaseException | None = None
        usage = (0, 0)
        # cancelled before this task got to run (done(), read without a call)
        stood_down = req.future._done
        req.running = True
        try:
            if stood_down:
                error = CancelledRequestError("cancelled")
            else:
                result = await self._attempt(req, hold)
                if result is not None:
                    usage = self.usage_of(result)
        except asyncio.CancelledError:
            error = (
                ShutdownError("backend closed during the attempt")
                if self.closed
                else CancelledRequestError(
                    "request cancelled by the caller", request_id=req.request_id
                )
            )
        except Exception as exc:  # an ApiError; or not a service outcome (a bug): handed over as it is, not retried
            error = exc
        finally:
            req.task = None
            req.running = False
            req.lease = None
            cooldown = (
                None
                if error is None
                else cooldown_for(error, req.retries, self.retry_options, self.rng)
            )
            hold.release(self.clock.now(), error, usage, cooldown)
        if stood_down:
            self._pump()
            return
        if error is None:
            if not req.stream:
                self.finish(req, result, None, Event.RESPONSE_OK, usage)
        elif isinstance(error, ShutdownError):
            self.finish(req, None, error, Event.SHUTDOWN)
        elif isinstance(error, CancelledRequestError):
            self.finish(req, None, error, Event.CANCEL)
        elif not isinstance(error, ApiError):
            self.finish(req, None, error, Event.FAILED)
        else:
            self.after_failure(req, error)
        if not self.closed:
            self.wake()  # once for all the attempts that end in this turn of the loop

    async def _attempt(self, req: Request, hold: AttemptHold) -> Any:
        """One HTTP try: its result, or its typed error (concluded here once
        the request is sent).  What it holds, ``hold`` gives back."""
        clock = self.clock
        now = clock.now()
        if req.first_attempt_at is None:
            req.first_attempt_at = now
        if req.deadline is not None and now >= req.deadline:
            raise DeadlineExceededError(
                f"request deadline passed after {now - req.submitted_at:.2f}s (waited in queue); "
                "raise client.request_deadline or lower the load",
                provider=self.provider.name,
                request_id=req.request_id,
            )
        req.attempts += 1
        options = req.options
        settings = self.settings.values
        timeout = settings["timeout"] if options.timeout is None else options.timeout
        if req.deadline is None:
            req.cut_at = None  # no deadline to cut the attempt short
        else:
            timeout, req.cut_at = attempt_timeout(timeout, req.deadline, now)
        assert req.lease is not None
        key_name = req.last_key = req.lease.name
        api_key = req.api_key or self.keys.secret(key_name)
        http_request = self.provider.build_request(
            req.endpoint,
            req.data,
            api_key=api_key,
            base_url=self.keys.base_url(key_name) or self.base_url,
            timeout=timeout,
            stream=req.stream,
            request_id=req.request_id,
            extra_headers=options.extra_headers,
            extra_query=options.extra_query,
        )
        http_request.max_body_bytes = settings["max_response_bytes"]
        http_request.max_line_bytes = settings["max_stream_line_bytes"]
        hold.started = started = clock.now()
        if self.events.subscribers[AttemptStarted]:
            self.events.publish(
                AttemptStarted(
                    req.request_id, self.provider.name, req.model, key_name, req.attempts, started
                )
            )
        if req.stream:
            secrets = Secrets(api_key, options)  # what a server may echo back, read on an error
            return await self._attempt_stream(req, hold, http_request, secrets, timeout)
        try:
            response = await self._send(req, http_request)
            if response.ok:
                result = self.parsed(self.provider.parse_response, req.endpoint, response)
            else:  # a status the provider reads as an answer (see _send)
                result = self.parsed(self.provider.answer_for_status, req.endpoint, response)
        except ApiError as error:
            error.redact(Secrets(api_key, options))  # servers echo the key they were sent
            error.attempt = error.attempt or req.attempts
            hold.conclude(req, error, error.status)
            raise
        hold.conclude(req, None, response.status)
        return result

    async def _send(self, req: Request, http_request: HttpRequest) -> HttpResponse | StreamResponse:
        """One HTTP exchange: the 2xx response (or a non-2xx the provider
        reads as an answer: ``answer_for_status``), or its typed error (never
        concluded here)."""
        try:
            response = await self.transport.send(http_request)
        except (OSError, asyncio.TimeoutError) as exc:
            raise classify_exception(
                exc, provider=self.provider.name, request_id=req.request_id, attempt=req.attempts
            ) from exc
        self.keys.hints(req.last_key, self.provider, response.headers, self.clock.now(), req.model)
        if not response.ok and (
            req.stream
            or self.parsed(self.provider.answer_for_status, req.endpoint, response) is None
        ):
            if isinstance(
                response, StreamResponse
            ):  # pragma: no cover - transports read error bodies whole
                await response.aclose()
            error: ApiError = self.parsed(
                self.provider.error_for, response, wall_now=self.clock.wall(), attempt=req.attempts
            )
            error.request_id = error.request_id or req.request_id
            raise error
        return response
