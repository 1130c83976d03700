"""Async chat side by side: ``openai_api.achat`` against raw aiohttp, the openai SDK and LiteLLM's Router.

One small chat request (``gpt-4o-mini``, one short user message) is sent to
the simulator at zero latency, from ``concurrency`` asyncio tasks on one
event loop of this process (uvloop when installed), by these contenders:

* ``aiohttp``: one raw ``aiohttp.ClientSession``, the reply decoded with
  ``json.loads``: the distance from the limit;
* ``openai_sdk``: ``openai.AsyncOpenAI(base_url=..., max_retries=2)`` and
  ``await client.chat.completions.create(...)``, on its default httpx transport;
* ``openai_sdk_aiohttp``: the same on the SDK's aiohttp transport
  (``http_client=openai.DefaultAioHttpClient()``, ``pip install 'openai[aiohttp]'``):
  the SDK at its fastest, so that ours is not only compared with its httpx side;
* ``litellm_router``: ``litellm.Router`` over one deployment
  (``openai/gpt-4o-mini`` at the simulator, ``num_retries=2``) and
  ``await router.acompletion(...)``, with LiteLLM kept offline (local cost
  map, offline mode, telemetry and debug output off);
* ``ours``: ``openai_api`` with batching off and every other feature on
  (priority queue, circuit breaker with its failure-rate and slow-call rules,
  retries, stats), ``max_concurrent_requests=concurrency``, and
  ``await client.achat(...)``.

``openai`` (with its ``aiohttp`` extra) and ``litellm`` are optional
(``pip install -e '.[bench]'``): a contender whose package is missing is
skipped with a note.  The simulator runs as a subprocess pinned to core 1 and this process
to core 0 (when there are two cores; ``--no-pin`` for an unpinned run).  For
each concurrency (64 and 256) the contenders alternate A B C D ... A B C D ... for
``--rounds`` rounds; each run builds its client, warms it up, measures a batch
and closes it.  The SDK and LiteLLM are slow, so their batches are capped at
``--peer-requests``; every figure is per request, so the counts need not match.
Every package is imported before the first run and the GC's heap frozen, so
that no contender pays for the objects another one's import left (LiteLLM's
~400,000); ``--no-gc-freeze`` to see the difference.  A LiteLLM batch ends
once LiteLLM's deferred logging queue is flushed (its cost, not the next
contender's).

Printed per contender (medians over the rounds): requests/s, p50/p99 latency
as the caller saw it, client CPU per request (user+sys of this whole process
over the batch, from getrusage: our engine thread included), the CPU shares of
this process and of the simulator, and failed requests.  Then the ratios of
requests/s at each concurrency with PASS/FAIL for the targets: ours/aiohttp
>= 0.5, ours/openai_sdk >= 5, ours/litellm_router >= 20 (ours/openai_sdk_aiohttp
and ours/httpx_async are measured, with no target of their own).  Targets set the exit
status only with ``--strict`` (exit 2); more than 1% failed requests for any
contender exits 1.

    python benchmarks/async_overhead.py [--rounds 3] [--requests 3000] [--peer-requests 1000]
                                        [--concurrency 64 256] [--contenders ...] [--no-pin]
                                        [--no-gc-freeze] [--quick] [--json PATH] [--strict]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import importlib.util
import json
import os
import platform
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.metadata import version
from typing import Any, NamedTuple

import aiohttp
from procs import (
    Meter,
    can_pin,
    check_targets,
    close_litellm,
    drive_tasks,
    exit_status,
    keep_litellm_offline,
    litellm_logging_flush,
    our_metadata,
    pinned_simulator,
    pinning_note,
    print_batch,
    print_report,
    quiet_litellm,
    ratios,
    run_in_new_loop,
    run_script,
    summarise,
)

keep_litellm_offline()

CONCURRENCIES = (64, 256)
DEFAULT_ROUNDS = 3
DEFAULT_REQUESTS = 3000
DEFAULT_PEER_REQUESTS = 1000
DEFAULT_WARMUP = 500  # at least one warm-up request per task whatever this says
QUICK_REQUESTS = 300
QUICK_WARMUP = 50
RETRIES = 2  # max_retries / num_retries of every client that retries
RUN_CAP = 300.0  # seconds: a batch still running then is stopped, its rest counted as failed

MODEL = "gpt-4o-mini"
LITELLM_MODEL = "openai/gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Say hello"}]
API_KEY = "sk-bench"
BODY = json.dumps({"model": MODEL, "messages": MESSAGES}).encode()
HEADERS = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}

CONTENDERS = (
    "aiohttp",
    "httpx_async",
    "openai_sdk",
    "openai_sdk_aiohttp",
    "litellm_router",
    "ours",
)
OPTIONAL = {
    "httpx_async": "httpx",
    "openai_sdk": "openai",
    "openai_sdk_aiohttp": "openai",
    "litellm_router": "litellm",
}  # contender: the package it needs
INSTALL = {
    "openai_sdk_aiohttp": "openai[aiohttp]"
}  # what to install, where it is more than OPTIONAL's package
PEERS = (
    "httpx_async",
    "openai_sdk",
    "openai_sdk_aiohttp",
    "litellm_router",
)  # slow: batches capped at --peer-requests
TARGET_CONCURRENCIES = (
    64,
    256,
)  # where the targets are set (issue #5); other concurrencies are only measured
TARGETS = (  # (numerator, denominator, minimum ratio of requests/s[, only at this concurrency])
    ("ours", "aiohttp", 0.6, 64),  # issue #15
    ("ours", "aiohttp", 0.5, 256),
    ("ours", "openai_sdk", 5.0),
    ("ours", "litellm_router", 20.0),
)


# ---------------------------------------------------------------- contenders
#
# Each contender is an async context manager: it builds its client, yields a
# Client and closes the client on the way out.


class Client(NamedTuple):
    """``call()``: one request, True when the reply was a chat completion;
    ``settle()``: waits out the work the client deferred past its replies
    (measured with the batch, see procs.drive_tasks), or None."""

    call: Callable[[], Awaitable[bool]]
    settle: Callable[[], Awaitable[None]] | None = None


@contextlib.asynccontextmanager
async def aiohttp_contender(url: str, concurrency: int) -> AsyncIterator[Client]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def call() -> bool:
            async with session.post(
                url + "/chat/completions", data=BODY, headers=HEADERS
            ) as response:
                response.raise_for_status()
                return "choices" in json.loads(await response.read())

        yield Client(call)


@contextlib.asynccontextmanager
async def httpx_async_contender(url: str, concurrency: int) -> AsyncIterator[Client]:
    """Raw ``httpx.AsyncClient`` (what the openai SDK is built on), a pool of ``concurrency``."""
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as client:

        async def call() -> bool:
            response = await client.post(url + "/chat/completions", content=BODY, headers=HEADERS)
            response.raise_for_status()
            return "choices" in response.json()

        yield Client(call)


@contextlib.asynccontextmanager
async def openai_sdk_contender(
    url: str, concurrency: int, aiohttp: bool = False
) -> AsyncIterator[Client]:
    """``openai.AsyncOpenAI`` on httpx, or on its aiohttp transport (``DefaultAioHttpClient``),
    with the SDK's own pool defaults either way."""
    import openai

    transport = {"http_client": openai.DefaultAioHttpClient()} if aiohttp else {}
    client = openai.AsyncOpenAI(base_url=url, api_key=API_KEY, max_retries=RETRIES, **transport)
    try:

        async def call() -> bool:
            response = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
            return bool(response.choices)

        yield Client(call)
    finally:
        await client.close()


def openai_sdk_aiohttp_contender(
    url: str, concurrency: int
) -> contextlib.AbstractAsyncContextManager:
    return openai_sdk_contender(url, concurrency, aiohttp=True)


@contextlib.asynccontextmanager
async def litellm_router_contender(url: str, concurrency: int) -> AsyncIterator[Client]:
    """A new Router each run.  LiteLLM caches its HTTP clients across Routers;
    they are closed once, at the end (:func:`close_litellm`).

    LiteLLM runs each request's success logging later, from a queue worked
    100 at a time: at concurrency 256, ~70% of a batch's callbacks were still
    queued after its last reply, ~0.4 ms of CPU per request that would
    otherwise run during the next contender's batch.  ``settle`` flushes that
    queue inside the measurement."""
    litellm = quiet_litellm()
    deployment = {
        "model_name": MODEL,
        "litellm_params": {"model": LITELLM_MODEL, "api_base": url, "api_key": API_KEY},
    }
    router = litellm.Router(model_list=[deployment], num_retries=RETRIES)

    async def call() -> bool:
        response = await router.acompletion(model=MODEL, messages=MESSAGES)
        return bool(response.choices)

    yield Client(call, litellm_logging_flush())


@contextlib.asynccontextmanager
async def ours_contender(url: str, concurrency: int) -> AsyncIterator[Client]:
    from ipfs_accelerate_py.api_backends import openai_api

    client = openai_api(metadata=our_metadata(url, API_KEY, concurrency))
    try:

        async def call() -> bool:
            return "choices" in await client.achat(MODEL, MESSAGES)

        yield Client(call)
    finally:
        await client.aclose()


FACTORIES = {
    "aiohttp": aiohttp_contender,
    "httpx_async": httpx_async_contender,
    "openai_sdk": openai_sdk_contender,
    "openai_sdk_aiohttp": openai_sdk_aiohttp_contender,
    "litellm_router": litellm_router_contender,
    "ours": ours_contender,
}


def preload(contenders: tuple, freeze: bool) -> None:
    """Import every contender's package now, then (``freeze``) move every
    object alive into the GC's permanent generation.  LiteLLM's import alone
    leaves ~400,000 tracked objects; without the freeze each full collection
    walks them, and whoever allocates most pays for LiteLLM's heap (ours ran
    ~40% more CPU per request after ``import litellm``).  Freezing spares the
    SDK and LiteLLM their own import heaps too, as a fresh process would not:
    it can only flatter them."""
    for name in contenders:
        if name == "litellm_router":
            quiet_litellm()
        elif name in OPTIONAL:
            importlib.import_module(OPTIONAL[name])
    importlib.import_module("ipfs_accelerate_py.api_backends")
    if freeze:
        gc.collect()
        gc.freeze()


def available(name: str) -> bool:
    package = OPTIONAL.get(name)
    if package is not None and importlib.util.find_spec(package) is None:
        return False
    return name != "openai_sdk_aiohttp" or openai_aiohttp_transport()


def openai_aiohttp_transport() -> bool:
    """Whether the installed SDK can run on aiohttp: it has ``DefaultAioHttpClient``
    (openai >= 1.89) and building one does not raise the RuntimeError that says
    the ``aiohttp`` extra is missing."""
    import asyncio

    import openai

    factory = getattr(openai, "DefaultAioHttpClient", None)
    if factory is None:
        return False
    try:
        client = factory()
    except RuntimeError:
        return False
    asyncio.run(client.aclose())
    return True


def skip_note(name: str) -> str:
    need = INSTALL.get(name, OPTIONAL[name])
    return f"skipped {name}: {need} is not installed (pip install '{need}')"


# ------------------------------------------------------------------- running


async def run_one(
    name: str, url: str, concurrency: int, warmup: int, requests: int, server_pid: int
) -> Any:
    """One run of one contender: a fresh client, a warm-up, the measured batch."""
    async with FACTORIES[name](url, concurrency) as client:
        await drive_tasks(
            client.call, concurrency, warmup, Meter(server_pid), RUN_CAP, client.settle
        )
        return await drive_tasks(
            client.call, concurrency, requests, Meter(server_pid), RUN_CAP, client.settle
        )


def requests_for(name: str, args: argparse.Namespace) -> int:
    return min(args.requests, args.peer_requests) if name in PEERS else args.requests


async def run_all(url: str, server_pid: int, contenders: tuple, args: argparse.Namespace) -> dict:
    """Every concurrency, contenders alternating within each round: the batches."""
    batches: dict = {name: {c: [] for c in args.concurrency} for name in contenders}
    try:
        for concurrency in args.concurrency:
            warmup = max(args.warmup, concurrency)
            for round_no in range(args.rounds):
                for name in contenders:
                    batch = await run_one(
                        name, url, concurrency, warmup, requests_for(name, args), server_pid
                    )
                    batches[name][concurrency].append(batch)
                    print_batch(concurrency, round_no, args.rounds, name, batch)
    finally:
        await close_litellm()
    return batches


# ---------------------------------------------------------------------- main


def parse_args(argv: list | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rounds", type=int, default=DEFAULT_ROUNDS, help="A B C D rounds per concurrency"
    )
    parser.add_argument(
        "--requests", type=int, default=DEFAULT_REQUESTS, help="measured requests per run"
    )
    parser.add_argument(
        "--peer-requests",
        type=int,
        default=DEFAULT_PEER_REQUESTS,
        help=f"at most this many measured requests per run of {' and '.join(PEERS)}",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=DEFAULT_WARMUP,
        help="warm-up requests per run (at least one per task)",
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCIES))
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin server and client to cores"
    )
    parser.add_argument(
        "--no-gc-freeze",
        action="store_true",
        help="leave the imported packages' objects to the cyclic GC (see preload)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_REQUESTS} requests, {QUICK_WARMUP} warm-up, 1 round (seconds)",
    )
    parser.add_argument("--json", metavar="PATH", help="write every figure to PATH")
    parser.add_argument("--strict", action="store_true", help="exit 2 when a target is missed")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.warmup, args.rounds = QUICK_REQUESTS, QUICK_WARMUP, 1
    if (
        min(args.rounds, args.requests, args.peer_requests, *args.concurrency) < 1
        or args.warmup < 0
    ):
        parser.error(
            "--rounds, --requests, --peer-requests and --concurrency must be >= 1, --warmup >= 0"
        )
    args.concurrency = tuple(args.concurrency)
    args.contenders = tuple(c for c in CONTENDERS if c in args.contenders)  # the documented order
    return args


def main(argv: list | None = None) -> int:
    args = parse_args(argv)
    contenders = tuple(c for c in args.contenders if available(c))
    skipped = [c for c in args.contenders if c not in contenders]
    pin = can_pin(args.no_pin)
    with pinned_simulator(pin) as (proc, url):  # before any thread of ours exists
        print(
            f"simulator {url} (pid {proc.pid}); pinned: {pinning_note(pin)}; rounds {args.rounds}, "
            f"requests {args.requests} (openai SDK, LiteLLM: {min(args.requests, args.peer_requests)}), "
            f"warm-up {args.warmup}; GC heap frozen after imports: {'no' if args.no_gc_freeze else 'yes'}",
            flush=True,
        )
        for name in skipped:
            print(skip_note(name), flush=True)
        preload(contenders, freeze=not args.no_gc_freeze)
        batches = run_in_new_loop(run_all(url, proc.pid, contenders, args))
    summary = summarise(batches)
    others = tuple(c for c in contenders if c != "ours")
    ratio = ratios(summary, "ours", others, args.concurrency) if "ours" in contenders else {}
    targets = check_targets(
        ratio, TARGETS, tuple(c for c in args.concurrency if c in TARGET_CONCURRENCIES)
    )
    print_report(summary, ratio, targets, contenders, args.concurrency)
    if args.json:
        write_json(args, pin, contenders, skipped, summary, ratio, targets)
    return exit_status(summary, targets, args.strict)


def write_json(
    args: argparse.Namespace,
    pin: bool,
    contenders: tuple,
    skipped: list,
    summary: dict,
    ratio: dict,
    targets: list,
) -> None:
    versions = {"python": platform.python_version(), "aiohttp": aiohttp.__version__}
    versions.update({OPTIONAL[c]: version(OPTIONAL[c]) for c in contenders if c in OPTIONAL})
    document = {
        "config": {
            "rounds": args.rounds,
            "requests": args.requests,
            "peer_requests": args.peer_requests,
            "warmup": args.warmup,
            "concurrency": list(args.concurrency),
            "pinned": pin,
            "quick": args.quick,
            "gc_freeze": not args.no_gc_freeze,
            "model": MODEL,
            "retries": RETRIES,
            "contenders": list(contenders),
            "skipped": skipped,
            "cpus": os.cpu_count(),
            **versions,
        },
        "contenders": summary,
        "ratios": ratio,
        "targets": targets,
    }
    with open(args.json, "w") as out:
        json.dump(document, out, indent=2)


if __name__ == "__main__":
    run_script(main)
