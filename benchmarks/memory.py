"""Memory per queued request: what ``openai_api`` holds for each request waiting in its queue.

``openai_api`` (batching off, every other feature on, ``queue_size=200,000``,
``max_concurrent_requests=1``) points at a local TCP server that accepts and
never answers.  One chat request takes the only slot and hangs there; then N
chat requests are queued with ``queue_with_priority`` (sync), all with the
same body (the client's own copy of it is counted; the caller's is not), and
memory is read before and after:

* ``tracemalloc``: Python's traced bytes still allocated (exact, no noise);
* ``RSS``: ``VmRSS`` from /proc/self/status (what the OS sees: allocator
  overhead included), measured in a run without tracemalloc, whose own
  bookkeeping would inflate it.

Then the client is closed (every queued request fails with ``ShutdownError``;
the hanging one ends as the server lets go of it once the close has begun),
our references to the futures are dropped and memory is read again: it should
be back near the baseline (no leak).  Each (N, measure) pair runs in a fresh
subprocess so no run inherits another's heap; N/10 is measured too, to show
the cost per request is constant (linear growth).  RSS after close is read
after ``malloc_trim(0)`` (glibc), which hands freed heap back to the OS.

The openai SDK and LiteLLM's Router have no client-side queue (LiteLLM's only
with its separate scheduler), so there is nothing of theirs to measure here.

    python benchmarks/memory.py                     # N = 100,000 and 10,000
    python benchmarks/memory.py --quick --json out.json   # N = 10,000 and 1,000: seconds
    python benchmarks/memory.py --requests 200000
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import os
import platform
import selectors
import socket
import subprocess
import sys
import threading
import time
import tracemalloc

from procs import CLIENT_CORE, can_pin, our_metadata, pinning_note

DEFAULT_REQUESTS = 100_000
QUICK_REQUESTS = 10_000
CYCLES = 2  # fill and close twice: the second shows whether memory kept after the first is reused
SCALE = 10  # N and N / SCALE are measured: equal bytes per request means linear growth
QUEUE_SIZE = 200_000
MEASURES = ("tracemalloc", "rss")
MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Say hello"}]
API_KEY = "sk-bench"
REQUEST_INFO = {"endpoint": "chat/completions", "data": {"model": MODEL, "messages": MESSAGES}}
HOLD_SECONDS = 120.0  # the server lets go of every connection after this, whatever happens
SLOT_WAIT = 10.0  # seconds for the first request to reach the server
CLOSE_WAIT = 30.0  # seconds for the close to begin failing the queue
CHILD_TIMEOUT = 300.0
LEAK_SHARE = 0.01  # tracemalloc after close within 1% of what the queue took: no leak
MB = 1024 * 1024


# ------------------------------------------------------------- the server


class HangServer:
    """A TCP server on 127.0.0.1 that accepts, reads and never answers.

    :meth:`release` closes every connection it holds and every one it
    accepts from then on; it releases by itself ``hold`` seconds after it
    started, so a hang can never outlive the run."""

    def __init__(self, hold: float = HOLD_SECONDS) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self.received = threading.Event()  # set once a request's bytes arrived
        self._released = threading.Event()
        self._stopped = threading.Event()
        self._deadline = time.monotonic() + hold
        self._thread = threading.Thread(target=self._serve, name="hang-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def release(self) -> None:
        self._released.set()

    def stop(self) -> None:
        self._released.set()
        self._stopped.set()
        self._thread.join(5.0)

    def _serve(self) -> None:
        held: list = []
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            while not self._stopped.is_set():
                if time.monotonic() >= self._deadline:
                    self._released.set()
                if self._released.is_set():
                    for conn in held:
                        selector.unregister(conn)
                        conn.close()
                    held.clear()
                for key, _ in selector.select(0.02):
                    if key.fileobj is self._listener:
                        conn, _ = self._listener.accept()
                        conn.setblocking(False)
                        selector.register(conn, selectors.EVENT_READ)
                        held.append(conn)
                    elif self._read(key.fileobj):
                        self.received.set()
                    else:  # the client left
                        selector.unregister(key.fileobj)
                        held.remove(key.fileobj)
                        key.fileobj.close()
            for conn in held:
                conn.close()
        self._listener.close()

    @staticmethod
    def _read(conn: socket.socket) -> bool:
        """Read what came (and drop it); False once the peer closed."""
        try:
            return bool(conn.recv(65536))
        except BlockingIOError:
            return True
        except OSError:
            return False


# ------------------------------------------------------------ the child


def rss_bytes() -> int:
    """VmRSS of this process, from /proc/self/status."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def trim_heap() -> bool:
    """glibc's malloc_trim(0): hand freed heap back to the OS; False where unavailable."""
    name = ctypes.util.find_library("c")
    try:
        return bool(name) and ctypes.CDLL(name).malloc_trim(0) >= 0
    except (OSError, AttributeError):
        return False


def memory_now(measure: str) -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0] if measure == "tracemalloc" else rss_bytes()


def measure_queue(requests: int, measure: str) -> dict:
    """In this (fresh) process, :func:`fill_and_close` CYCLES times: bytes per
    queued request and what is left after the close, from the first cycle;
    the later cycles show whether memory the allocator kept is reused."""
    from ipfs_accelerate_py.api_backends import openai_api  # imported before any reading

    if measure == "tracemalloc":
        tracemalloc.start()
    try:
        cycles = [fill_and_close(openai_api, requests, measure) for _ in range(CYCLES)]
    finally:
        tracemalloc.stop()
    first, last = cycles[0], cycles[-1]
    return {
        "requests": requests, "measure": measure,
        "bytes_per_request": (first["queued_bytes"] - first["baseline_bytes"]) / requests,
        "after_close_above_baseline_bytes": first["after_close_bytes"] - first["baseline_bytes"],
        "later_cycles_growth_bytes": last["after_close_bytes"] - first["after_close_bytes"],
        **{k: v for k, v in first.items()},
        "cycles": cycles,
    }  # fmt: skip


def fill_and_close(openai_api, requests: int, measure: str) -> dict:
    """A client with its one slot held by a hanging request (memory read:
    the baseline), ``requests`` queued behind it (read again), the client
    closed and our references to the futures dropped (read again)."""
    from ipfs_accelerate_py.resilience.errors import ShutdownError

    server = HangServer()
    client = openai_api(metadata=dict(our_metadata(server.url, API_KEY, 1), queue_size=QUEUE_SIZE))
    try:
        holder = client.queue_with_priority(REQUEST_INFO)
        if not server.received.wait(SLOT_WAIT):
            raise RuntimeError(f"the first request did not reach the server within {SLOT_WAIT:g}s")
        baseline = memory_now(measure)
        started = time.perf_counter()
        futures = [client.queue_with_priority(REQUEST_INFO) for _ in range(requests)]
        submit_s = time.perf_counter() - started
        queued_bytes = memory_now(measure)
        stats = client.get_stats()
        close_s = close_while_hanging(client, server, futures)
        figures = {
            "baseline_bytes": baseline, "queued_bytes": queued_bytes,
            "queued": stats["current_queue_size"], "in_flight": stats["in_flight"],
            "shutdown_errors": sum(1 for f in futures if isinstance(f["error"], ShutdownError)),
            "holder_error": type(holder["error"]).__name__ if holder["error"] is not None else None,
            "submit_us_per_request": submit_s / requests * 1e6, "close_s": close_s,
        }  # fmt: skip
        del futures, holder
        figures["heap_trimmed"] = trim_heap() if measure == "rss" else False
        figures["after_close_bytes"] = memory_now(measure)
    finally:
        client.close()
        server.stop()
    return figures


def close_while_hanging(client, server: HangServer, futures: list) -> float:
    """``client.close()``; once it has begun failing the queue (so no retry
    can follow), the server lets go of the hanging request, which ends it at
    once instead of after the close's grace period.  Seconds the close took."""

    def release_when_closing() -> None:
        if futures:
            futures[0].wait(CLOSE_WAIT)
        server.release()

    releaser = threading.Thread(target=release_when_closing, daemon=True)
    started = time.perf_counter()
    releaser.start()
    client.close()
    releaser.join(CLOSE_WAIT)
    return time.perf_counter() - started


# ------------------------------------------------------------ the parent


def run_child(requests: int, measure: str, pin: bool) -> dict:
    """:func:`measure_queue` in a fresh interpreter (pinned to CLIENT_CORE when ``pin``)."""
    pin_child = (lambda: os.sched_setaffinity(0, {CLIENT_CORE})) if pin else None
    command = [sys.executable, os.path.abspath(__file__), "--child", str(requests), measure]
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=CHILD_TIMEOUT, preexec_fn=pin_child
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"the run for N={requests} ({measure}) exited {proc.returncode}: {proc.stderr[-2000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def problems(run: dict) -> list:
    """What makes a run's figures mean nothing: the queue did not hold N, or the close did not fail them."""
    n = run["requests"]
    found = []
    if run["queued"] != n or run["in_flight"] != 1:
        found.append(f"queue held {run['queued']} (in flight {run['in_flight']}), expected {n} (1)")
    for cycle in run["cycles"]:
        if cycle["shutdown_errors"] != n or cycle["holder_error"] is None:
            found.append(
                f"{cycle['shutdown_errors']} of {n} queued requests failed with ShutdownError"
                f" (the hanging one: {cycle['holder_error']})"
            )
    return found


def taken(run: dict) -> int:
    """Bytes the N queued requests took (read with them queued, less the baseline)."""
    return run["queued_bytes"] - run["baseline_bytes"]


def findings_from(sizes: list, runs: dict) -> list:
    """One sentence per fact, computed from the runs at the largest N (and N / SCALE)."""
    small, big = sizes
    tm, rss = runs[(big, "tracemalloc")], runs[(big, "rss")]
    left = tm["after_close_above_baseline_bytes"] / taken(tm)
    linear = runs[(small, "tracemalloc")]["bytes_per_request"] / tm["bytes_per_request"]
    verdict = "no leak" if abs(left) < LEAK_SHARE else "a LEAK"
    return [
        f"{big:,} queued requests cost {tm['bytes_per_request']:,.0f} bytes each by tracemalloc "
        f"({rss['bytes_per_request']:,.0f} bytes of RSS each): {taken(tm) / MB:.1f} MB in all.",
        f"Linear: at {small:,} queued the cost per request is {linear:.3f}x the figure at {big:,}.",
        f"After close (all {big:,} failed with ShutdownError, futures dropped) tracemalloc is "
        f"{tm['after_close_above_baseline_bytes'] / MB:+.3f} MB from its baseline ({left:+.2%} of what the queue "
        f"took): {verdict}; RSS stays {rss['after_close_above_baseline_bytes'] / MB:+.1f} MB above its baseline "
        f"(allocator arenas still partly used, kept even after malloc_trim).",
        f"A second fill of {big:,} and close, with a new client in the same process, ends "
        f"{tm['later_cycles_growth_bytes'] / MB:+.3f} MB (tracemalloc) and "
        f"{rss['later_cycles_growth_bytes'] / MB:+.1f} MB of RSS ({rss['later_cycles_growth_bytes'] / taken(rss):.0%} "
        f"of what the queue took) from where the first ended.",
        "The openai SDK and LiteLLM's Router queue nothing on the client side (LiteLLM only with its separate "
        "scheduler): not measured.",
    ]


def build_document(sizes: list, runs: dict, quick: bool, pin: bool) -> dict:
    rows = []
    series: dict = {"tracemalloc": [], "RSS": []}
    for n in sizes:
        tm, rss = runs[(n, "tracemalloc")], runs[(n, "rss")]
        rows.append(
            [
                "ours",
                n,
                round(tm["bytes_per_request"], 1),
                round(rss["bytes_per_request"], 1),
                round(tm["after_close_above_baseline_bytes"] / MB, 3),
                round(rss["after_close_above_baseline_bytes"] / MB, 3),
                round(rss["submit_us_per_request"], 2),
            ]
        )
        series["tracemalloc"].append([f"N={n:,}", round(tm["bytes_per_request"], 1)])
        series["RSS"].append([f"N={n:,}", round(rss["bytes_per_request"], 1)])
    findings = findings_from(sizes, runs)
    return {
        "scenario": "memory",
        "title": "Memory per queued request: openai_api with 1 slot held and N requests waiting",
        "description": (
            "openai_api (batching off, queue_size=200,000, max_concurrent_requests=1) points at a local TCP server "
            "that never answers; one request holds the slot and N chat requests are queued with queue_with_priority. "
            "Bytes per queued request = growth of tracemalloc's traced memory (exact) or of VmRSS (in a separate run "
            "without tracemalloc) over N; each run is a fresh process. The client is then closed (every queued "
            "request fails with ShutdownError) and memory read again, against the baseline."
        ),
        "config": {
            "requests": sizes,
            "queue_size": QUEUE_SIZE,
            "max_concurrent_requests": 1,
            "batching": False,
            "quick": quick,
            "pinned": pinning_note(pin),
            "python": platform.python_version(),
            "peers": {
                "openai_sdk": "no client-side queue",
                "litellm_router": "no client-side queue without its scheduler",
            },
            "runs": {f"{n}/{m}": r for (n, m), r in runs.items()},
        },
        "tables": [
            {
                "title": "Bytes per queued request (RSS in a run without tracemalloc; after close = above the baseline)",
                "columns": [
                    "contender",
                    "queued N",
                    "tracemalloc B/req",
                    "RSS B/req",
                    "after close tracemalloc MB",
                    "after close RSS MB",
                    "submit us/req",
                ],
                "rows": rows,
            }
        ],
        "plots": [
            {
                "title": "Bytes per queued request",
                "kind": "bar",
                "xlabel": "requests queued",
                "ylabel": "bytes per queued request",
                "series": series,
            }
        ],
        "findings": findings,
    }


def print_table(document: dict) -> None:
    table = document["tables"][0]
    widths = [10, 10, 18, 11, 27, 20, 14]
    print("".join(f"{c:>{w}}" for c, w in zip(table["columns"], widths, strict=False)))
    for row in table["rows"]:
        print(
            "".join(
                f"{v:>{w},}" if isinstance(v, (int, float)) else f"{v:>{w}}"
                for v, w in zip(row, widths, strict=False)
            )
        )
    print()
    for finding in document["findings"]:
        print(f"- {finding}")


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--requests", type=int, default=DEFAULT_REQUESTS, help="N; N / 10 is measured too"
    )
    parser.add_argument("--quick", action="store_true", help=f"N = {QUICK_REQUESTS:,}: seconds")
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin the measured processes to one core"
    )
    parser.add_argument("--child", nargs=2, metavar=("N", "MEASURE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure_queue(int(args.child[0]), args.child[1])))
        return 0
    big = QUICK_REQUESTS if args.quick else args.requests
    if not SCALE <= big <= QUEUE_SIZE:
        parser.error(f"--requests must be between {SCALE} and {QUEUE_SIZE:,}")
    sizes = [big // SCALE, big]
    pin = can_pin(args.no_pin)
    print(
        f"N = {sizes}; 1 slot held by a hanging request; queue_size {QUEUE_SIZE:,}; pinned: {pinning_note(pin)}"
    )
    runs, bad = {}, []
    for n in sizes:
        for measure in MEASURES:
            try:
                run = runs[(n, measure)] = run_child(n, measure, pin)
            except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                print(f"N={n} {measure}: {exc}", file=sys.stderr)
                return 1
            bad += [f"N={n} {measure}: {p}" for p in problems(run)]
            print(
                f"  N={n:>7,} {measure:<11} {run['bytes_per_request']:>8,.0f} B/request  "
                f"after close {run['after_close_above_baseline_bytes'] / MB:+.3f} MB  "
                f"2nd cycle {run['later_cycles_growth_bytes'] / MB:+.3f} MB  close {run['close_s']:.2f} s",
                flush=True,
            )
    for line in bad:
        print(line, file=sys.stderr)
    document = build_document(sizes, runs, args.quick, pin)
    print()
    print_table(document)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(document, out, indent=2)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
