"""CPU per request of the client layer alone: no network, no server.

A backend over the in-memory transport, which answers every request at once
with the same small chat completion, so what is measured is everything the
client does around the HTTP exchange: admission, queue, breaker, key pool,
attempt, retries bookkeeping, stats, futures and the hand-off between the
caller and the engine loop.  Every resilience feature stays on (batching off,
as chat is never batched).

    python benchmarks/engine_cpu.py                    # async and sync, 20,000 requests each
    python benchmarks/engine_cpu.py --requests 50000 --concurrency 256
    python benchmarks/engine_cpu.py --quick --json out.json    # a second or two (the test uses it)

It prints CPU microseconds per request (this process, user + sys) for the
async API (``await client.achat`` from ``concurrency`` tasks) and the sync API
(``client.chat`` from ``concurrency`` threads).  These figures move little
from run to run, unlike throughput against a server, so they are the ones to
compare before and after a change to the engine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time

from procs import CLIENT_CORE, new_event_loop, own_cpu_seconds, usable_cores

from ipfs_accelerate_py.api_backends import openai_api
from ipfs_accelerate_py.transport.base import HttpResponse
from ipfs_accelerate_py.transport.memory import MemoryTransport

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Hello"}]
ANSWER = HttpResponse(
    200,
    {"content-type": "application/json"},
    json.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
    }).encode(),
)  # fmt: skip
WARMUP = 2000
QUICK_REQUESTS = 1000
QUICK_WARMUP = 200


class _Transport(MemoryTransport):
    """The in-memory transport without its record of requests (memory stays flat)."""

    async def send(self, request):
        return ANSWER


def make_client(concurrency: int) -> openai_api:
    metadata = {
        "openai_api_key": "sk-bench",
        "max_concurrent_requests": concurrency,
        "queue_size": max(1024, 4 * concurrency),
        "batching_enabled": False,
    }
    return openai_api(metadata=metadata, transport=_Transport(lambda request: ANSWER))


def async_run(client: openai_api, concurrency: int, requests: int, warmup: int) -> float:
    async def main() -> float:
        async def worker(count: int) -> None:
            for _ in range(count):
                await client.achat(MODEL, MESSAGES)

        async def batch(total: int) -> None:
            share, extra = divmod(total, concurrency)
            await asyncio.gather(*(worker(share + (i < extra)) for i in range(concurrency)))

        await batch(warmup)
        started = own_cpu_seconds()
        await batch(requests)
        return own_cpu_seconds() - started

    loop = new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def sync_run(client: openai_api, concurrency: int, requests: int, warmup: int) -> float:
    def batch(total: int) -> None:
        share, extra = divmod(total, concurrency)
        threads = [
            threading.Thread(
                target=lambda n=share + (i < extra): [
                    client.chat(MODEL, MESSAGES) for _ in range(n)
                ]
            )
            for i in range(concurrency)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    batch(warmup)
    started = own_cpu_seconds()
    batch(requests)
    return own_cpu_seconds() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--no-pin", action="store_true", help="do not pin this process to one core")
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_REQUESTS} requests, a short warm-up"
    )
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    requests, warmup = (QUICK_REQUESTS, QUICK_WARMUP) if args.quick else (args.requests, WARMUP)
    if not args.no_pin and CLIENT_CORE in usable_cores():
        os.sched_setaffinity(0, {CLIENT_CORE})
    print(
        f"{requests} requests at concurrency {args.concurrency}, in-memory transport"
        f"{'' if args.no_pin else f', pinned to core {CLIENT_CORE}'}"
    )
    figures = {}
    for name, run in (("async", async_run), ("sync", sync_run)):
        with make_client(args.concurrency) as client:
            wall = time.perf_counter()
            cpu = run(client, args.concurrency, requests, warmup)
            wall = time.perf_counter() - wall
            stats = client.get_stats()
        done = stats["successful_requests"] - warmup
        if done != requests or stats["failed_requests"]:
            print(
                f"{name}: {done} of {requests} requests succeeded, {stats['failed_requests']} failed",
                file=sys.stderr,
            )
            return 1
        figures[name] = {
            "cpu_us_per_request": cpu / requests * 1e6,
            "requests_per_s": requests / wall,
        }
        print(
            f"{name:>5}: {figures[name]['cpu_us_per_request']:6.1f} us CPU per request "
            f"({figures[name]['requests_per_s']:,.0f} req/s)"
        )
    if args.json:
        with open(args.json, "w") as out:
            json.dump(
                {"requests": requests, "concurrency": args.concurrency, **figures}, out, indent=2
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
