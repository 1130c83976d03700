"""How many requests per second the simulator serves on one core.

Starts ``python -m ipfs_accelerate_py.simulator --port 0`` in a subprocess
pinned to core 1 (when the machine has more than one core), pins this process
to core 0, and drives the server with raw aiohttp at a fixed concurrency over
keep-alive connections: a warm-up, then a measured window.  Prints the
requests/s, the server process's CPU use over the window (from
``/proc/PID/stat``) and what that implies for one fully busy core.

    python benchmarks/simulator_rate.py [--seconds 5] [--concurrency 64]
                                        [--endpoint chat|embeddings|models]

When the server's CPU is below 100%, the client (one core of aiohttp) is the
limit, and ``capacity`` (requests/s divided by server CPU share) estimates the
server's ceiling.  ``--client raw`` drives the same load (one request in
flight per keep-alive connection) from a minimal asyncio protocol instead of
aiohttp, cheap enough on the client side to saturate the server's core.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time

import aiohttp
from procs import CLIENT_CORE, own_cpu_seconds, process_cpu_seconds, start_simulator, stop_simulator

CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
BODIES = {
    "chat": (
        "POST",
        "/chat/completions",
        b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}',
    ),
    "embeddings": (
        "POST",
        "/embeddings",
        b'{"model":"text-embedding-3-small","input":["one","two","three","four"]}',
    ),
    "models": ("GET", "/models", None),
}


async def measure(done: dict, warmup: float, seconds: float, server_pid: int) -> tuple:
    """Counts and CPU readings at the start and the end of the measured window."""
    await asyncio.sleep(warmup)
    start = (time.perf_counter(), done["ok"], process_cpu_seconds(server_pid), own_cpu_seconds())
    await asyncio.sleep(seconds)
    end = (time.perf_counter(), done["ok"], process_cpu_seconds(server_pid), own_cpu_seconds())
    return start, end


async def drive_aiohttp(
    base_url: str, endpoint: str, concurrency: int, warmup: float, seconds: float, server_pid: int
) -> dict:
    method, path, body = BODIES[endpoint]
    url = base_url + path
    headers = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}
    done = {"ok": 0, "failed": 0}
    stop = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while not stop.is_set():
                async with session.request(method, url, data=body, headers=headers) as response:
                    await response.read()
                    done["ok" if response.status == 200 else "failed"] += 1

        tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
        start, end = await measure(done, warmup, seconds, server_pid)
        stop.set()
        await asyncio.gather(*tasks)
    return summarise(done, start, end)


class RawConnection(asyncio.Protocol):
    """One keep-alive connection sending the same request again as each answer completes."""

    def __init__(self, request: bytes, done: dict, stop: asyncio.Event) -> None:
        self._request, self._done, self._stop = request, done, stop
        self._buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        head_end = self._buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        found = CONTENT_LENGTH.search(self._buffer, 0, head_end + 2)
        end = head_end + 4 + (int(found.group(1)) if found else 0)
        if len(self._buffer) < end:
            return
        self._done["ok" if self._buffer[9:12] == b"200" else "failed"] += 1
        self._buffer = self._buffer[end:]
        if not self._stop.is_set():
            self.transport.write(self._request)


async def drive_raw(
    base_url: str, endpoint: str, concurrency: int, warmup: float, seconds: float, server_pid: int
) -> dict:
    method, path, body = BODIES[endpoint]
    host_port, prefix = base_url[len("http://") :].split("/", 1)
    host, port = host_port.rsplit(":", 1)
    body = body or b""
    request = (
        f"{method} /{prefix}{path} HTTP/1.1\r\nHost: {host_port}\r\n"
        f"Authorization: Bearer sk-bench\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    done = {"ok": 0, "failed": 0}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    connections = [
        await loop.create_connection(lambda: RawConnection(request, done, stop), host, int(port))
        for _ in range(concurrency)
    ]
    start, end = await measure(done, warmup, seconds, server_pid)
    stop.set()
    for transport, _ in connections:
        transport.close()
    return summarise(done, start, end)


def summarise(done: dict, start: tuple, end: tuple) -> dict:
    elapsed = end[0] - start[0]
    return {
        "requests": end[1] - start[1],
        "elapsed": elapsed,
        "failed": done["failed"],
        "server_cpu": (end[2] - start[2]) / elapsed,
        "client_cpu": (end[3] - start[3]) / elapsed,
    }


def report(endpoint: str, concurrency: int, result: dict) -> None:
    rate = result["requests"] / result["elapsed"]
    server = result["server_cpu"]
    print(f"endpoint={endpoint} concurrency={concurrency} window={result['elapsed']:.1f}s")
    print(f"requests/s:           {rate:,.0f}  (failed: {result['failed']})")
    print(
        f"server CPU:           {server:.0%} of one core, {server / rate * 1e6:.0f} us per request"
    )
    print(f"client CPU:           {result['client_cpu']:.0%} of one core")
    if server > 0:
        print(f"server capacity est.: {rate / server:,.0f} requests/s at 100% of one core")


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=1.5, help="warm-up before measuring")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--endpoint", choices=sorted(BODIES), default="chat")
    parser.add_argument(
        "--client",
        choices=("aiohttp", "raw"),
        default="aiohttp",
        help="aiohttp (the default) or a minimal asyncio protocol",
    )
    parser.add_argument(
        "--asyncio-client",
        action="store_true",
        help="drive with the default asyncio loop instead of uvloop",
    )
    args = parser.parse_args(argv)
    pin = (os.cpu_count() or 1) > 1
    proc, base_url = start_simulator(pin)
    try:
        if pin:
            os.sched_setaffinity(0, {CLIENT_CORE})
        drive = drive_raw if args.client == "raw" else drive_aiohttp
        run = drive(base_url, args.endpoint, args.concurrency, args.warmup, args.seconds, proc.pid)
        if args.asyncio_client:
            result = asyncio.run(run)
        else:
            try:
                import uvloop
            except ImportError:
                result = asyncio.run(run)
            else:
                result = uvloop.run(run)
    finally:
        stop_simulator(proc)
    print(f"simulator at {base_url}, pinned: {'server core 1, client core 0' if pin else 'no'}")
    print(f"client: {args.client}")
    report(args.endpoint, args.concurrency, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
