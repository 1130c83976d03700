"""``ipfs-accelerate run JOBS.jsonl``: push a file of requests through one backend.

Every line goes through the backend's whole core (priority queue, breaker,
retries with Retry-After, batching, keys), at most ``window`` jobs at a time,
read from the file as they are needed (memory does not grow with the file).
Each result is appended to the results file as it finishes (see
:mod:`.results`); running the same command again resumes.

Waiting out an outage: the run's client is made with
``on_circuit_open="wait"``, so while the circuit is OPEN a job waits in the
queue (no polling) for the probe that closes it, within its
``request_deadline``; a run that meets an outage shorter than that completes
once the service is back (Ctrl-C stops it meanwhile), and a job whose deadline
ends first is recorded failed (``--retry-failed`` sends it again).  Errors are final for this run and
recorded (``--retry-failed`` on the next run sends them again).

Ctrl-C (SIGINT) or SIGTERM: no new job starts; those in flight finish and are
recorded.  A second Ctrl-C abandons them: they are recorded ``interrupted``
(and run again on resume).
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..resilience.redact import public_url, redact
from ..resilience.stats import LatencyHistogram
from .idset import IdSet
from .jobs import BadLine, Job, count_lines, read_jobs
from .results import STATUS_ERROR, STATUS_INTERRUPTED, STATUS_OK, Outcomes, ResultLog

__all__ = ["RunOptions", "Runner"]

DEFAULT_WINDOW_PER_SLOT = 4  # jobs admitted per concurrency slot: enough to fill batches and the queue
MIN_WINDOW = 64
TICK_SECONDS = 0.25  # how often the display gets a snapshot
MALFORMED_KEPT = 100  # malformed lines listed in the report (all are counted)
EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass
class RunOptions:
    jobs: str
    out: str
    api: str = "openai"
    model: Optional[str] = None
    window: int = MIN_WINDOW
    retry_failed: bool = False
    report: Optional[str] = None  # path stem of the report files (".json", ".html" added)
    command: str = ""
    settings: dict = field(default_factory=dict)
    secrets: tuple = field(default=(), repr=False)  # the run's keys: masked in what it writes (see resilience.redact)


class Runner:
    """Runs the jobs of one file through ``client``, writing to ``log``."""

    def __init__(
        self,
        client: Any,
        options: RunOptions,
        log: ResultLog,
        outcomes: Outcomes,
        display: Any,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.options = options
        self.log = log
        self.outcomes = outcomes
        self.display = display
        self.clock = clock
        self.wall = wall
        self.counts = dict.fromkeys(
            ("lines", "skipped", "skipped_failed", "submitted", "ok", "failed", "interrupted", "malformed"), 0
        )  # skipped_failed: skipped because an earlier run failed them (no --retry-failed)
        self.errors_by_class: dict[str, int] = {}
        self.malformed: list[list] = []
        self.latency = LatencyHistogram()
        self.timeline: dict[int, int] = {}
        self.total: Optional[int] = None
        self.stopping = False
        self.abandoning = False
        self._seen = IdSet()
        self._tasks: set[asyncio.Task] = set()
        self._slots = asyncio.Semaphore(options.window)
        self._started = clock()
        self._started_wall = wall()

    # ------------------------------------------------------------ the run

    async def run(self) -> dict:
        loop = asyncio.get_running_loop()
        self.total = await loop.run_in_executor(None, count_lines, self.options.jobs)
        self._seen = IdSet(self.total)  # sized once: no regrowth, no second table on the way
        self.display.start(self.total)
        restore = self._catch_signals(loop)
        ticker = loop.create_task(self._tick())
        try:
            await self._feed(loop)
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
        finally:
            ticker.cancel()
            restore()
        return self.record()

    async def _feed(self, loop: asyncio.AbstractEventLoop) -> None:
        for count, item in enumerate(read_jobs(self.options.jobs)):
            if self.stopping:
                return
            self.counts["lines"] += 1
            if isinstance(item, BadLine):
                self._malformed(item.line, item.reason)
                continue
            if not self._seen.add(item.id):
                self._malformed(item.line, f"id {item.id!r} already used on an earlier line")
                continue
            if self.outcomes.done(item.id, self.options.retry_failed):
                self.counts["skipped"] += 1
                self.counts["skipped_failed"] += self.outcomes.still_failed(item.id)
                continue
            await self._slots.acquire()
            if self.stopping:
                self._slots.release()
                return
            task = loop.create_task(self._one(item))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            if count % 256 == 255:
                await asyncio.sleep(0)  # let finished jobs be written while the file is read

    async def _one(self, job: Job) -> None:
        started = self.clock()
        self.counts["submitted"] += 1
        future = None
        try:
            model = job.model or self.options.model or self.client.default_model(job.type)
            endpoint, data = self.client.operation_request(job.type, model, job.content, job.params)
            request = {"endpoint": endpoint, "data": data, "request_id": job.id}
            future = self.client.aqueue_with_priority(request, job.priority)
            result = await future
        except asyncio.CancelledError:
            self._finish(job, STATUS_INTERRUPTED, started, future, error="abandoned at Ctrl-C")
        except Exception as exc:  # typed errors, and anything else: recorded, never lost
            self._finish(job, STATUS_ERROR, started, future, error=exc)
        else:
            self._finish(job, STATUS_OK, started, future, result=result)
        finally:
            self._slots.release()

    def _finish(self, job: Job, status: str, started: float, future: Any, *, result: Any = None, error: Any = None) -> None:
        now = self.clock()
        latency = now - started
        record: dict[str, Any] = {"id": job.id, "line": job.line, "status": status}
        if status == STATUS_OK:
            record["result"] = result
            self.counts["ok"] += 1
        elif status == STATUS_ERROR:
            record["error"] = _error_record(error, self.options.secrets)
            self.counts["failed"] += 1
            name = type(error).__name__
            self.errors_by_class[name] = self.errors_by_class.get(name, 0) + 1
        else:
            record["error"] = {"type": "Interrupted", "message": error}
            self.counts["interrupted"] += 1
        record.update(
            attempts=getattr(future, "attempts", 0),
            latency_s=round(latency, 6),
            key=getattr(future, "key_name", None),
            finished_at=round(self.wall(), 3),
        )
        self.log.write(record)
        if status != STATUS_INTERRUPTED:
            self.latency.record(latency)
            second = int(now - self._started)
            self.timeline[second] = self.timeline.get(second, 0) + 1

    def _malformed(self, line: int, reason: str) -> None:
        self.counts["malformed"] += 1
        if len(self.malformed) < MALFORMED_KEPT:
            self.malformed.append([line, reason])
        self.display.note(f"line {line}: {reason} (skipped)")

    # ------------------------------------------------------------ signals

    def _catch_signals(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        caught = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, self.interrupt)
                caught.append(signum)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
                pass

        def restore() -> None:
            for signum in caught:
                loop.remove_signal_handler(signum)

        return restore

    def interrupt(self) -> None:
        """First time: start no new job.  Second time: abandon those in flight."""
        if not self.stopping:
            self.stopping = True
            self.display.note(
                f"stopping: no new requests; waiting for {len(self._tasks)} in flight (Ctrl-C again to abandon them)"
            )
            return
        if not self.abandoning:
            self.abandoning = True
            self.display.note(f"abandoning {len(self._tasks)} requests in flight: recorded as interrupted")
            for task in list(self._tasks):
                task.cancel()

    # ------------------------------------------------------------ reporting

    async def _tick(self) -> None:
        while True:
            self.display.update(self.snapshot())
            await asyncio.sleep(TICK_SECONDS)

    def snapshot(self) -> dict:
        elapsed = self.clock() - self._started
        counts = self.counts
        done = counts["ok"] + counts["failed"]
        rate = done / elapsed if elapsed > 0 else 0.0
        remaining = None
        if self.total is not None:
            remaining = max(0, self.total - done - counts["skipped"] - counts["malformed"] - counts["interrupted"])
        stats = self.client.get_stats()
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
            "keys": {
                name: {"in_flight": row["in_flight"], "requests": row["requests"], "rate_limited": row["rate_limited"]}
                for name, row in stats["key_pool"].items()
            },
            "stopping": self.stopping,
        }

    def record(self) -> dict:
        """Everything the report is made of (plain data; no key ever)."""
        duration = self.clock() - self._started
        stats = self.client.get_stats()
        latency = self.latency.snapshot()
        breaker = self.client.generate_report()["circuit_breaker"]
        return {
            "command": redact(self.options.command, self.options.secrets),  # --key KEY stays out of the report
            "api": self.options.api,
            "base_url": public_url(self.client.base_url),
            "input": self.options.jobs,
            "output": self.options.out,
            "started_at": self._started_wall,
            "finished_at": self.wall(),
            "duration_s": duration,
            "stopped": "interrupted" if self.stopping else None,
            "totals": dict(self.counts),
            "throughput_rps": (self.counts["ok"] + self.counts["failed"]) / duration if duration > 0 else 0.0,
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
                name: {k: row[k] for k in ("requests", "successes", "failures", "rate_limited")}
                for name, row in stats["key_pool"].items()
            },
            "circuit": {"state": breaker.get("state"), "times_opened": breaker.get("times_opened", 0)},
            "malformed_lines": list(self.malformed),
            "settings": dict(self.options.settings),
            "client_stats": stats,
        }


def _error_record(error: BaseException, secrets: tuple = ()) -> dict:
    """The error as the results file keeps it; its text redacted (the engine
    has done so for a server's errors; this covers any other exception)."""
    out: dict[str, Any] = {"type": type(error).__name__, "message": redact(str(error), secrets)}
    for name in ("kind", "status", "retry_after"):
        value = getattr(error, name, None)
        if value is not None:
            out[name] = value
    return out
