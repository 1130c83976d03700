"""``ipfs-accelerate run JOBS.jsonl``: push a file of requests through one backend.

Every line goes through the backend's whole core (priority queue, breaker,
retries with Retry-After, batching, keys), at most ``window`` jobs at a time,
read from the file as they are needed (memory does not grow with the file).
Each result is appended to the results file as it finishes (see
:mod:`.results`); running the same command again resumes.

The run stops on what cannot work (the rules and exit codes are in
:mod:`.stops`):

- **Pre-flight.**  The first job to send goes alone, with no retry and
  failing fast on an open circuit.  Connection refused, DNS or TLS failure,
  401/403 with no other key, or 404 end the run at once (exit 2) with the
  cause in one line, nothing written.  Any other outcome lets the run go on
  (a success is that job's result).
- **Outages.**  The client waits for the circuit (``on_circuit_open="wait"``):
  while it is OPEN the jobs stay queued for the probe that closes it, and a
  job whose retries ran out on the service's failures while the circuit is
  open is sent again (it waits too) rather than written off.  When the
  circuit stays open longer than ``max_outage`` seconds the run stops (exit
  3); the jobs in flight are recorded ``interrupted`` and run again on resume.
- **Keys.**  A key answered 401/403 is disabled by the core (the runner shows
  the warning naming it); a job refused when no key is left stops the run
  (exit 4), its line recorded ``interrupted``.
- **The same failure again and again.**  ``max_same_failures`` lines in a
  row failing alike (class, status, message) stop the run (exit 5).
- **The results file.**  A line counts only once written; a write that
  fails (a full disk, a closed pipe) stops the run at once (exit 6), the
  lines in flight abandoned: nothing is claimed that is not on disk.
- **Signals.**  Ctrl-C (SIGINT) or SIGTERM: no new job starts and the lines
  still queued are recorded ``interrupted`` unsent (the client is closed:
  its queue fails at once); those in flight get ``grace`` seconds to finish,
  then are abandoned (recorded ``interrupted``); a second signal abandons
  them at once.  Exit 130 / 143.  Every other stop closes the client with no
  grace.

Warnings of the core (a circuit opening, a key disabled) are shown as notes
of the display.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import signal
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

from ..engine.events import KeyRefused
from ..resilience.breaker import STATE_CLOSED
from ..resilience.errors import (
    AuthenticationError,
    CancelledRequestError,
    RateLimitError,
    ShutdownError,
)
from ..resilience.redact import public_url, redact
from ..resilience.stats import LatencyHistogram
from .idset import IdSet
from .jobs import BadLine, Job, count_lines, read_jobs
from .results import (
    STATUS_ERROR,
    STATUS_INTERRUPTED,
    STATUS_OK,
    Outcomes,
    ResultLog,
    ResultWriteError,
)
from .stops import (
    DEFAULT_MAX_OUTAGE,
    DEFAULT_MAX_SAME_FAILURES,
    DEFAULT_STOP_GRACE,
    FailureStreak,
    PreflightFailed,
    Stop,
    no_key_stop,
    outage_stop,
    preflight_failure,
    signal_stop,
    write_stop,
)

if TYPE_CHECKING:  # progress imports rich, which a run loads only when it shows a display
    from .progress import Display, KeyLoad, Snapshot

__all__ = ["RunOptions", "Runner", "model_for"]

DEFAULT_WINDOW_PER_SLOT = (
    4  # jobs admitted per concurrency slot: enough to fill batches and the queue
)
MIN_WINDOW = 64
TICK_SECONDS = 0.25  # how often the display gets a snapshot
MALFORMED_KEPT = 100  # malformed lines listed in the report (all are counted)
CLOSE_MARGIN_S = 1.0  # past the client's own grace, the runner abandons what is still waiting
PACKAGE_LOGGER = "ipfs_accelerate_py"

_T = TypeVar("_T")


@dataclass
class RunOptions:
    jobs: str
    out: str
    api: str = "openai"
    model: str | None = None  # for chat and completion lines that name none
    embedding_model: str | None = None  # for embeddings lines that name none
    window: int = MIN_WINDOW
    retry_failed: bool = False
    report: str | None = None  # path stem of the report files (".json", ".html" added)
    command: str = ""
    settings: dict[str, Any] = field(default_factory=dict)  # the client's, as the report shows them
    secrets: tuple[str, ...] = field(
        default=(), repr=False
    )  # the run's keys: masked in what it writes (see resilience.redact)
    max_outage: float = DEFAULT_MAX_OUTAGE
    max_same_failures: int = DEFAULT_MAX_SAME_FAILURES
    grace: float = DEFAULT_STOP_GRACE
    preflight: bool = True
    target: Mapping[str, Any] = field(default_factory=dict)  # where the run goes (target.Target)
    input_format: str = "auto"  # of the job file: auto, jobs or openai-batch (see jobs.read_jobs)
    output_format: str = "jobs"  # of the results file: jobs or openai-batch (see results.ResultLog)


class Preflight(TypedDict):
    """How the first request went."""

    ok: bool
    seconds: float
    error: str | None


RunRecord = dict[str, Any]
"""Everything the report is made of: plain JSON (see :meth:`Runner.record`,
read back and checked by :func:`.report.build_report`)."""


def model_for(job: Job, options: RunOptions, client: Any) -> str | None:
    """The model ``job`` goes to: its own, else the run's for its kind
    (``--embedding-model`` for embeddings, ``--model`` for chats and
    completions), else the backend's default (None: the backend has none)."""
    run_model = options.embedding_model if job.type == "embeddings" else options.model
    return job.model or run_model or client.default_model(job.type)


class Runner:
    """Runs the jobs of one file through ``client``, writing to ``log``."""

    def __init__(
        self,
        client: Any,
        options: RunOptions,
        log: ResultLog,
        outcomes: Outcomes,
        display: Display,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        check: Callable[[Job], tuple[str, str | None]] | None = None,
    ) -> None:
        """``check(job)`` -> ``(model, problem)``: a job with a problem is not
        sent but counted malformed, as the file's check before the run found it."""
        self.client = client
        self.options = options
        self.log = log
        self.outcomes = outcomes
        self.display = display
        self.clock = clock
        self.wall = wall
        self.check_job = check
        self.counts = dict.fromkeys(
            (
                "lines",
                "skipped",
                "skipped_failed",
                "submitted",
                "ok",
                "failed",
                "interrupted",
                "malformed",
            ),
            0,
        )  # skipped_failed: skipped because an earlier run failed them (no --retry-failed)
        self.errors_by_class: dict[str, int] = {}
        self.malformed: list[tuple[int, str]] = []  # (line, reason)
        self.latency = LatencyHistogram()
        self.timeline: dict[int, int] = {}
        self.total: int | None = None
        self.stop_reason: Stop | None = None
        self.abandoning = False
        self.preflight: Preflight | None = None
        self._streak = FailureStreak(options.max_same_failures)
        self._outage_since: float | None = None
        self._last_failure: Any = None  # the breaker's, for the outage's stop
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Task[Any] | None = None  # the client's close, begun by a stop
        self._seen = IdSet()
        self._tasks: set[asyncio.Task[Any]] = set()
        # each line's request in flight or queued, by its task: one whose request has
        # ended is left to record that ending, never abandoned
        self._requests: dict[asyncio.Task[Any] | None, Any] = {}
        self._refused = False  # the last usable key was refused (seen in the engine's thread)
        self._slots = asyncio.Semaphore(options.window)
        self._started = clock()
        self._started_wall = wall()

    @property
    def stopping(self) -> bool:
        return self._stop_requested()

    def _stop_requested(self) -> bool:
        return self.stop_reason is not None

    # ------------------------------------------------------------ the run

    async def run(self) -> RunRecord:
        """Every job of the file; the record of the run.  Raises
        :class:`~.stops.PreflightFailed` when the first request shows the
        target cannot work (nothing written then, the display not started)."""
        loop = self._loop = asyncio.get_running_loop()
        if self.total is None:
            self.total = await loop.run_in_executor(None, count_lines, self.options.jobs)
        self._seen = IdSet(self.total)  # sized once: no regrowth, no second table on the way
        undo = [
            self._catch_signals(loop),
            self._watch_circuit(loop),
            self._watch_refusals(),
            self._show_warnings(loop),
        ]
        ticker: asyncio.Task[None] | None = None
        try:
            pending = self._pending()
            if self.options.preflight:
                first = next(pending, None)
                if first is not None:
                    check = self._track(loop, self._preflight(first))
                    await asyncio.wait(
                        {check}
                    )  # a stop may cancel it (its write failed, say): then it is settled
                    if (
                        not check.cancelled() and not check.result()
                    ):  # result() raises PreflightFailed
                        pending = itertools.chain(
                            [first], pending
                        )  # not settled by the pre-flight: sent as any other
            self.display.start(self.total)
            ticker = loop.create_task(self._tick())
            await self._feed(loop, pending)
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            if (
                self._closing is not None
            ):  # bounded: an abandoned attempt must not hold the run for its grace
                await asyncio.wait(
                    {self._closing},
                    timeout=CLOSE_MARGIN_S
                    if self.abandoning
                    else self.options.grace + CLOSE_MARGIN_S,
                )
        finally:
            if ticker is not None:
                ticker.cancel()
            for timer in self._timers.values():
                timer.cancel()
            for restore in undo:
                restore()
        return self.record()

    async def check(self) -> Job | None:
        """The dry run's pre-flight: the first job to send, sent alone and not
        recorded; None when nothing is left to send.  Raises
        :class:`~.stops.PreflightFailed` as :meth:`run` does."""
        self._loop = asyncio.get_running_loop()
        job = next(self._pending(), None)
        if job is not None:
            await self._preflight(job, record=False)
        return job

    def _pending(self) -> Iterator[Job]:
        """The jobs of the file still to send, counting the lines passed over."""
        for item in read_jobs(self.options.jobs, self.options.input_format):
            self.counts["lines"] += 1
            if isinstance(item, BadLine):
                self._malformed(item.line, item.reason)
                continue
            if not self._seen.add(item.id):
                self._malformed(item.line, f"id {item.id!r} already used on an earlier line")
                continue
            problem = self.check_job(item)[1] if self.check_job is not None else None
            if problem is not None:
                self._malformed(item.line, problem)
                continue
            if self.outcomes.done(item.id, self.options.retry_failed):
                self.counts["skipped"] += 1
                self.counts["skipped_failed"] += self.outcomes.still_failed(item.id)
                continue
            yield item

    def _track(
        self, loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, _T]
    ) -> asyncio.Task[_T]:
        """A task for ``work`` among those a stop abandons."""
        task = loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _feed(self, loop: asyncio.AbstractEventLoop, pending: Iterator[Job]) -> None:
        # a call, not the property: the type checker would take a second read
        # across the await for the first one's answer
        for count, job in enumerate(pending):
            if self._stop_requested():
                return
            await self._slots.acquire()
            if self._stop_requested():
                self._slots.release()
                return
            self._track(loop, self._one(job))
            if count % 256 == 255:
                await asyncio.sleep(0)  # let finished jobs be written while the file is read

    def _submit(self, client: Any, job: Job) -> Any:
        model = model_for(job, self.options, self.client)
        endpoint, data = self.client.operation_request(job.type, model, job.content, job.params)
        return client.aqueue_with_priority(
            {"endpoint": endpoint, "data": data, "request_id": job.id}, job.priority
        )

    async def _preflight(self, job: Job, record: bool = True) -> bool:
        """Send ``job`` alone, with no retry and failing fast on an open
        circuit.  True when it is done (recorded, unless ``record`` is
        false); False when it should go through the run like any other job.
        Raises :class:`PreflightFailed` when its error shows that nothing can work."""
        started = self.clock()
        future = None
        try:
            future = self._submit(
                self.client.with_options(max_retries=0, on_circuit_open="fail"), job
            )
            result = await future
        except asyncio.CancelledError:
            if record:
                self.counts["submitted"] += 1
                self._finish(
                    job,
                    STATUS_INTERRUPTED,
                    started,
                    future,
                    error="abandoned: " + self._why_abandoned(),
                )
            return True
        except Exception as exc:
            self.preflight = {
                "ok": False,
                "seconds": round(self.clock() - started, 3),
                "error": type(exc).__name__,
            }
            verdict = preflight_failure(
                exc,
                self._usable_keys(besides=getattr(exc, "key_name", None)),
                tuple(self._disabled_keys()),
            )
            if verdict is not None:
                raise PreflightFailed(redact(verdict, self.options.secrets)) from exc
            if getattr(exc, "retryable", False) or isinstance(exc, AuthenticationError):
                return False  # retries, or another key, may get it through: it goes with the rest
            if record:
                self.counts["submitted"] += 1
                self._failed(
                    job, started, future, exc
                )  # a failure of this line alone (a 400, say): its result
            return True
        self.preflight = {"ok": True, "seconds": round(self.clock() - started, 3), "error": None}
        if record:
            self.counts["submitted"] += 1
            self._finish(job, STATUS_OK, started, future, result=result)
        return True

    async def _one(self, job: Job) -> None:
        started = self.clock()
        self.counts["submitted"] += 1
        future = None
        me = asyncio.current_task()
        try:
            while True:
                future = self._requests[me] = self._submit(self.client, job)
                if self._refused:  # refused meanwhile, after the engine's sweep of the requests
                    future.cancel()
                try:
                    result = await future
                except Exception as exc:
                    if self._in_outage(exc):
                        continue  # its retries ran out in an outage: it waits for the circuit again (--max-outage caps it)
                    raise
                break
        except asyncio.CancelledError:
            self._finish(
                job,
                STATUS_INTERRUPTED,
                started,
                future,
                error="abandoned: " + self._why_abandoned(),
            )
        except Exception as exc:  # typed errors, and anything else: recorded, never lost
            self._failed(job, started, future, exc)
        else:
            self._finish(job, STATUS_OK, started, future, result=result)
        finally:
            self._requests.pop(me, None)
            self._slots.release()

    def _in_outage(self, error: BaseException) -> bool:
        """Whether ``error`` is the service failing while the circuit is open:
        not the line's failure, so the line is not written off (an outage
        shorter than ``max_outage`` loses nothing)."""
        if (
            self.stopping
            or not getattr(error, "retryable", False)
            or isinstance(error, RateLimitError)
        ):
            return False
        return self._outage_since is not None or self.client.circuit_state != STATE_CLOSED

    def _failed(self, job: Job, started: float, future: Any, error: BaseException) -> None:
        """A job's error, and what it says of the run."""
        if (self.stopping or self._refused) and isinstance(
            error, (ShutdownError, CancelledRequestError)
        ):
            # failed by the stop itself (queued, or past the grace): not done, sent again on resume
            self._finish(
                job,
                STATUS_INTERRUPTED,
                started,
                future,
                error="not finished: " + self._why_abandoned(),
            )
            return
        if (
            isinstance(error, AuthenticationError)
            and self._usable_keys(besides=getattr(error, "key_name", None)) == 0
        ):
            # the key, or every key left, was refused: the line is not done, the run cannot go on
            self._finish(job, STATUS_INTERRUPTED, started, future, error=error)
            self.stop(no_key_stop(error, self._disabled_keys()))
            return
        if not self._finish(job, STATUS_ERROR, started, future, error=error):
            return
        stop = self._streak.failure(error)
        if stop is not None:
            self.stop(stop)

    def _finish(
        self,
        job: Job,
        status: str,
        started: float,
        future: Any,
        *,
        result: Any = None,
        error: Any = None,
    ) -> bool:
        """Write the line's result; it counts only once written.  False when
        the results file refused it (the run then stops: nothing is claimed
        that is not on disk)."""
        now = self.clock()
        latency = now - started
        record: dict[str, Any] = {"id": job.id, "line": job.line, "status": status}
        if status == STATUS_OK:
            record["result"] = result
        elif status == STATUS_ERROR or isinstance(error, BaseException):
            record["error"] = _error_record(error, self.options.secrets)
        else:
            record["error"] = {"type": "Interrupted", "message": error}
        record.update(
            attempts=getattr(future, "attempts", 0),
            latency_s=round(latency, 6),
            key=getattr(future, "key_name", None),
            finished_at=round(self.wall(), 3),
        )
        try:
            self.log.write(
                record, error
            )  # the exception too: a Batch API line takes the server's status and body
        except ResultWriteError as exc:
            self.stop(write_stop(exc, self.log.written))
            return False
        if status == STATUS_OK:
            self.counts["ok"] += 1
            self._streak.success()
        elif status == STATUS_ERROR:
            self.counts["failed"] += 1
            name = type(error).__name__
            self.errors_by_class[name] = self.errors_by_class.get(name, 0) + 1
        else:
            self.counts["interrupted"] += 1
        if status != STATUS_INTERRUPTED:
            self.latency.record(latency)
            second = int(now - self._started)
            self.timeline[second] = self.timeline.get(second, 0) + 1
        return True

    def _malformed(self, line: int, reason: str) -> None:
        self.counts["malformed"] += 1
        if len(self.malformed) < MALFORMED_KEPT:
            self.malformed.append((line, reason))
        self.display.note(f"line {line}: {reason} (skipped)")

    # ------------------------------------------------------------ keys

    def _key_rows(self) -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = self.client.get_stats()["key_pool"]
        return rows

    def _usable_keys(self, besides: str | None = None) -> int:
        """Keys not disabled, other than ``besides`` (the one that was just refused)."""
        return sum(
            1
            for name, row in self._key_rows().items()
            if row["disabled"] is None and name != besides
        )

    def _disabled_keys(self) -> dict[str, str]:
        return {
            name: row["disabled"]
            for name, row in self._key_rows().items()
            if row["disabled"] is not None
        }

    # ------------------------------------------------------------ stopping

    def stop(self, stop: Stop) -> None:
        """Stop the run (the first reason given is the one kept): no new job
        starts, and the client fails what is still queued at once (those
        lines are recorded ``interrupted``, never sent); the requests in
        flight get the grace period when ``stop`` is graceful, else are
        abandoned at once."""
        if self.stop_reason is not None:
            return
        self.stop_reason = stop
        stats = self.client.get_stats()
        in_flight, queued = stats["in_flight"], stats["current_queue_size"]
        grace = self.options.grace if stop.graceful else 0.0
        if self._loop is not None:
            self._closing = self._loop.create_task(self.client.aclose(grace=grace))
        if stop.graceful:
            self.display.note(
                f"stopping ({stop.reason}): {queued} queued lines are left for resume; {in_flight} in flight get "
                f"{grace:g}s to finish (press Ctrl-C again to abandon them now)"
            )
            self._later(
                "grace", grace + CLOSE_MARGIN_S, self._abandon
            )  # the client's grace ends first
        else:
            self.display.note(f"stopping: {stop.reason}")
            self._abandon()

    def interrupt(self, signum: int = signal.SIGINT) -> None:
        """A signal: the first stops the run gracefully, a second abandons what is in flight."""
        if self.stop_reason is None:
            self.stop(signal_stop(signum))
        else:
            self._abandon()

    def _abandon(self) -> None:
        if self.abandoning:
            return
        self.abandoning = True
        # a line whose request has ended (a queued one the stop failed, or an answer not
        # yet written) records that; the others are cancelled
        unfinished = [
            task
            for task in self._tasks
            if (request := self._requests.get(task)) is None or not request.done()
        ]
        if unfinished:
            self.display.note(
                f"abandoning the {len(unfinished)} lines not finished: they run again on resume"
            )
        for task in unfinished:
            task.cancel()

    def _why_abandoned(self) -> str:
        if self.stop_reason is not None:
            return self.stop_reason.reason
        return "the key was refused" if self._refused else "cancelled"

    def _later(self, name: str, delay: float, fn: Callable[[], None]) -> None:
        old = self._timers.pop(name, None)
        if old is not None:
            old.cancel()
        if self._loop is not None:
            self._timers[name] = self._loop.call_later(max(0.0, delay), fn)

    def _catch_signals(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        caught = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, self.interrupt, signum)
                caught.append(signum)
            except (
                NotImplementedError,
                RuntimeError,
                ValueError,
            ):  # not the main thread, or Windows
                pass

        def restore() -> None:
            for signum in caught:
                loop.remove_signal_handler(signum)

        return restore

    # ------------------------------------------------------------ outages

    def _watch_circuit(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        """Time each spell of the circuit away from CLOSED; past ``max_outage`` the run stops."""

        def changed(old: str, new: str, last_failure: Any) -> None:  # in the engine's thread
            loop.call_soon_threadsafe(self._circuit_changed, new, last_failure)

        remove: Callable[[], None] = self.client.add_circuit_listener(changed)
        return remove

    def _watch_refusals(self) -> Callable[[], None]:
        """When the last usable key is refused, every line's request is cancelled
        at once, in the engine's thread: before the engine sends the next queued
        one with that key, which the stop, a hop later through this loop, would not
        prevent (under load a revoked lone key then took a 401 for each slot freed)."""

        def refused(event: KeyRefused) -> None:  # in the engine's thread
            if event.usable_keys or self._refused:
                return
            self._refused = True  # set first: a line submitted after the sweep cancels its own
            # a copy made in C, under the GIL: the loop's thread may be adding a line
            for future in list(self._requests.values()):
                if future is not None:
                    future.cancel()  # thread-safe: the engine cancels it on its next turn

        remove: Callable[[], None] = self.client.subscribe(refused, KeyRefused)
        return remove

    def _circuit_changed(self, state: str, last_failure: Any) -> None:
        if last_failure is not None:
            self._last_failure = last_failure
        if state == STATE_CLOSED:
            self._outage_since = None
            timer = self._timers.pop("outage", None)
            if timer is not None:
                timer.cancel()
        elif self._outage_since is None:
            self._outage_since = self.clock()
            self._later("outage", self.options.max_outage, self._outage_check)

    def _outage_check(self) -> None:
        self._timers.pop("outage", None)
        if self._outage_since is None:
            return
        lasted = self.clock() - self._outage_since
        if (
            lasted < self.options.max_outage
        ):  # a clock that ran slower than the loop's: look again then
            self._later("outage", self.options.max_outage - lasted, self._outage_check)
            return
        self.stop(outage_stop(lasted, self._last_failure))

    def _show_warnings(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        """The core's warnings (a circuit opening, a key disabled) as notes of the display."""

        def note(message: str) -> None:  # in whichever thread logs
            loop.call_soon_threadsafe(self.display.note, message)

        handler = _NoteHandler(note)
        logger = logging.getLogger(PACKAGE_LOGGER)
        logger.addHandler(handler)
        return lambda: logger.removeHandler(handler)

    # ------------------------------------------------------------ reporting

    async def _tick(self) -> None:
        while True:
            self.display.update(self.snapshot())
            await asyncio.sleep(TICK_SECONDS)

    def snapshot(self) -> Snapshot:
        elapsed = self.clock() - self._started
        counts = self.counts
        done = counts["ok"] + counts["failed"]
        rate = done / elapsed if elapsed > 0 else 0.0
        remaining = None
        if self.total is not None:
            remaining = max(
                0,
                self.total - done - counts["skipped"] - counts["malformed"] - counts["interrupted"],
            )
        stats = self.client.get_stats()
        keys: dict[str, KeyLoad] = {
            name: {
                "in_flight": row["in_flight"],
                "requests": row["requests"],
                "rate_limited": row["rate_limited"],
            }
            for name, row in stats["key_pool"].items()
        }
        return {
            "elapsed_s": elapsed,
            "total": self.total,
            "done": done,
            "ok": counts["ok"],
            "failed": counts["failed"],
            "skipped": counts["skipped"],
            "malformed": counts["malformed"],
            "interrupted": counts["interrupted"],
            "in_flight": stats["in_flight"],
            "queued": stats["current_queue_size"],
            "throughput_rps": rate,
            "eta_s": remaining / rate if remaining is not None and rate > 0 else None,
            "errors_by_class": dict(self.errors_by_class),
            "circuit_state": stats["circuit_state"],
            "keys": keys,
            "stopping": self.stopping,
        }

    def record(self) -> RunRecord:
        """Everything the report is made of (plain data; no key ever)."""
        duration = self.clock() - self._started
        stats = self.client.get_stats()
        latency = self.latency.snapshot()
        breaker = self.client.generate_report()["circuit_breaker"]
        return {
            "command": redact(
                self.options.command, self.options.secrets
            ),  # --key KEY stays out of the report
            "api": self.options.api,
            "base_url": public_url(self.client.base_url),
            "input": self.options.jobs,
            "output": self.options.out,
            "started_at": self._started_wall,
            "finished_at": self.wall(),
            "duration_s": duration,
            "stopped": self.stop_reason.reason if self.stop_reason is not None else None,
            "exit_code": self.stop_reason.code if self.stop_reason is not None else None,
            "target": dict(self.options.target),
            "preflight": self.preflight,
            "totals": dict(self.counts),
            "throughput_rps": (self.counts["ok"] + self.counts["failed"]) / duration
            if duration > 0
            else 0.0,
            "latency": {
                "count": latency["count"],
                "mean": latency["mean"],
                "p50": latency["p50"],
                "p90": latency["p90"],
                "p99": latency["p99"],
                "max": latency["max"],
                "histogram": self.latency.distribution(),
            },
            "timeline": sorted([second, count] for second, count in self.timeline.items()),
            "errors_by_class": dict(self.errors_by_class),
            "keys": {
                name: {
                    k: row[k]
                    for k in ("requests", "successes", "failures", "rate_limited", "auth_failures")
                }
                for name, row in stats["key_pool"].items()
            },
            "keys_disabled": self._disabled_keys(),
            "circuit": {
                "state": breaker.get("state"),
                "times_opened": breaker.get("times_opened", 0),
            },
            "malformed_lines": [[line, reason] for line, reason in self.malformed],
            "settings": dict(self.options.settings),
            "client_stats": stats,
        }


def _error_record(error: BaseException, secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    """The error as the results file keeps it; its text redacted (the engine
    has done so for a server's errors; this covers any other exception)."""
    out: dict[str, Any] = {"type": type(error).__name__, "message": redact(str(error), secrets)}
    for name in ("kind", "status", "retry_after"):
        value = getattr(error, name, None)
        if value is not None:
            out[name] = value
    return out


class _NoteHandler(logging.Handler):
    def __init__(self, note: Callable[[str], None]) -> None:
        super().__init__(logging.WARNING)
        self._note = note

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._note(record.getMessage())
        except (
            Exception
        ):  # a closed loop at the very end: the message goes nowhere rather than raise
            self.handleError(record)
