"""The async API over loopback against the simulator: the same core as the
sync API (one queue, breaker, stats and key pool per backend), from any
event loop, with cancellation that reaches the queue and the wire.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from ipfs_accelerate_py.api_backends import BACKENDS, openai_api
from ipfs_accelerate_py.resilience.errors import ShutdownError

from ..helpers import FAST, REPLY_PREFIX, WAIT, eventually, eventually_async, messages, reply_text
from ..helpers.openai_sim import CHAT_MODEL, EMBED_MODEL, chat_data, held_slot, make_client

KEY = "sk-async-0123456789"


def make(name: str, simulator, **settings):
    backend = BACKENDS[name]
    metadata = backend.connection_metadata(
        simulator.url + backend.provider.spec.simulator_path, KEY
    )
    metadata.update(FAST, **settings)
    return backend({}, metadata)


# ------------------------------------------------------------- every backend


@pytest.mark.parametrize(
    "name", sorted(n for n, b in BACKENDS.items() if b.provider.spec.default_chat_model)
)
async def test_achat_on_every_backend_that_chats(simulator, name):
    async with make(name, simulator) as client:
        reply = await client.achat(client.provider.spec.default_chat_model, messages("async hello"))
        assert client.provider.reply_text(reply) == REPLY_PREFIX + "async hello"
        stats = client.get_stats()
    assert stats["successful_requests"] == 1
    assert simulator.counters()["requests_total"] == 1


@pytest.mark.parametrize(
    "name", sorted(n for n, b in BACKENDS.items() if b.provider.spec.default_embedding_model)
)
async def test_aembeddings_on_every_backend_that_embeds(simulator, name):
    async with make(name, simulator) as client:
        result = await client.aembeddings(client.provider.spec.default_embedding_model, ["a", "b"])
        vectors = client.provider.embedding_vectors(result)
    assert len(vectors) == 2 and all(isinstance(x, float) for x in vectors[0])


async def test_acompletions_and_amake_request(simulator):
    async with make_client(simulator) as client:
        completion = await client.acompletions(CHAT_MODEL, "complete me")
        raw = await client.amake_request("chat/completions", chat_data("by hand"))
        models = await client.amake_request("models")
    assert completion["choices"][0]["text"].endswith("complete me")
    assert reply_text(raw) == REPLY_PREFIX + "by hand"
    assert models["data"]
    assert simulator.counters()["requests_total"] == 3


async def test_bad_input_fails_at_once_with_the_same_typed_errors_as_sync(simulator):
    from ipfs_accelerate_py.resilience.errors import InvalidInputError

    async with make_client(simulator) as client:
        with pytest.raises(InvalidInputError, match="messages must be a non-empty list"):
            await client.achat(CHAT_MODEL, [])
        with pytest.raises(InvalidInputError, match="unknown priority"):
            await client.achat(CHAT_MODEL, messages("x"), priority=7)
        with pytest.raises(InvalidInputError, match="endpoint must name"):
            await client.amake_request("")
    assert simulator.counters()["requests_total"] == 0


# ---------------------------------------------------------- one shared core


async def test_sync_and_async_callers_share_one_queue_breaker_and_stats(simulator):
    with make_client(simulator, max_concurrent_requests=2) as client:
        sync_results = await asyncio.gather(
            *(asyncio.to_thread(client.chat, CHAT_MODEL, messages(f"sync {i}")) for i in range(4))
        )
        async_results = await asyncio.gather(
            *(client.achat(CHAT_MODEL, messages(f"async {i}")) for i in range(4))
        )
        stats = client.get_stats()
    assert [reply_text(r) for r in sync_results + async_results] == [
        REPLY_PREFIX + f"{kind} {i}" for kind in ("sync", "async") for i in range(4)
    ]
    assert stats["total_requests"] == stats["successful_requests"] == 8
    counted = simulator.counters()
    assert counted["requests_total"] == 8 and counted["peak_concurrency"] <= 2


async def test_async_embeddings_are_batched_with_each_other(simulator):
    async with make_client(simulator, batch_timeout=0.3, max_batch_size=16) as client:
        results = await asyncio.gather(
            *(client.aembeddings(EMBED_MODEL, f"text {i}") for i in range(6))
        )
        stats = client.get_stats()
    assert all(len(r["data"]) == 1 for r in results)
    assert simulator.counters()["requests_total"] == 1
    assert stats["batches"]["count"] == 1 and stats["batches"]["members"] == 6


def test_callers_on_several_loops_in_several_threads_share_one_backend(simulator):
    errors = []
    with make_client(simulator, max_concurrent_requests=8) as client:

        def run(n: int) -> None:
            async def main():
                replies = await asyncio.gather(
                    *(client.achat(CHAT_MODEL, messages(f"t{n} r{i}")) for i in range(10))
                )
                assert [reply_text(r) for r in replies] == [
                    REPLY_PREFIX + f"t{n} r{i}" for i in range(10)
                ]

            try:
                asyncio.run(main())
            except BaseException as exc:  # handed to the test thread
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        stats = client.get_stats()
    assert errors == []
    assert stats["successful_requests"] == 40
    assert simulator.counters()["requests_total"] == 40


async def test_aqueue_with_priority_queues_at_once_in_priority_order(fresh_simulator):
    finished: list[str] = []
    with make_client(fresh_simulator, max_concurrent_requests=1) as client:
        with held_slot(client, fresh_simulator):
            futures = []
            for name, priority in [("low", 2), ("normal", 1), ("high", 0)]:
                future = client.aqueue_with_priority(
                    {"endpoint": "chat/completions", "data": chat_data(name), "request_id": name},
                    priority,
                )
                future.add_done_callback(lambda f: finished.append(f["request_id"]))
                futures.append(future)
            assert client.get_stats()["queue_by_priority"] == {0: 1, 1: 1, 2: 1}
        results = await asyncio.gather(*futures)
    assert finished == ["high", "normal", "low"]
    assert [reply_text(r) for r in results] == [REPLY_PREFIX + n for n in ("low", "normal", "high")]


# ---------------------------------------------------------------- cancelling


async def test_cancelling_a_queued_request_removes_it_at_once(fresh_simulator):
    with make_client(fresh_simulator, max_concurrent_requests=1) as client:
        with held_slot(client, fresh_simulator):
            task = asyncio.ensure_future(client.achat(CHAT_MODEL, messages("never sent")))
            await eventually_async(
                lambda: client.get_stats()["current_queue_size"] == 1, "the request is queued"
            )
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await eventually_async(
                lambda: client.get_stats()["current_queue_size"] == 0, "the queue is empty"
            )
        reply = await client.achat(CHAT_MODEL, messages("after"))
        stats = client.get_stats()
    assert reply_text(reply) == REPLY_PREFIX + "after"
    assert stats["cancelled_requests"] == 2  # the queued request, and the held stream closed early
    assert stats["failed_requests"] == 0
    assert (
        fresh_simulator.counters()["requests_total"] == 2
    )  # the held stream and "after": never "never sent"


async def test_cancelling_a_request_in_flight_aborts_it_and_the_server_sees_the_connection_close(
    fresh_simulator,
):
    fresh_simulator.configure(hang_next=1, hang_seconds=30.0)
    with make_client(fresh_simulator, max_concurrent_requests=1) as client:
        task = asyncio.ensure_future(client.achat(CHAT_MODEL, messages("hung")))
        await eventually_async(
            lambda: fresh_simulator.counters()["in_flight"] == 1, "the server holds the request"
        )
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await eventually_async(
            lambda: fresh_simulator.counters()["client_disconnects"] == 1,
            "the server sees the client go",
        )
        await eventually_async(lambda: client.current_requests == 0, "the slot is free")
        pool = client.get_stats()["key_pool"]
        assert all(row["in_flight"] == 0 for row in pool.values())
        reply = await client.achat(CHAT_MODEL, messages("next"))  # the one slot works again
        stats = client.get_stats()
        summary = client.generate_report()["summary"]
    assert (summary["cancelled_requests"], summary["failed_requests"], summary["success_rate"]) == (
        1,
        0,
        100.0,
    )
    assert reply_text(reply) == REPLY_PREFIX + "next"
    assert (
        stats["cancelled_requests"],
        stats["failed_requests"],
        stats["successful_requests"],
    ) == (1, 0, 1)
    assert stats["total_requests"] == 2


async def test_cancelling_with_a_timeout_counts_as_cancelled_not_failed(fresh_simulator):
    fresh_simulator.configure(hang_next=1, hang_seconds=30.0)
    async with make_client(fresh_simulator) as client:
        with pytest.raises((asyncio.TimeoutError, TimeoutError)):
            await asyncio.wait_for(client.achat(CHAT_MODEL, messages("slow")), 0.2)
        await eventually_async(
            lambda: client.get_stats()["cancelled_requests"] == 1, "the cancel is counted"
        )
        stats = client.get_stats()
    assert stats["failed_requests"] == 0 and stats["success_rate"] == 0.0


def test_a_caller_loop_that_closes_before_its_answer_does_not_hurt_the_backend(fresh_simulator):
    fresh_simulator.configure(latency=0.2)
    with make_client(fresh_simulator) as client:
        loop = asyncio.new_event_loop()
        task = loop.create_task(client.achat(CHAT_MODEL, messages("orphan")))
        loop.run_until_complete(  # submitted, not answered
            eventually_async(
                lambda: fresh_simulator.counters()["in_flight"] == 1, "the server holds the request"
            )
        )
        loop.close()  # its task never hears back: nothing to cancel, nobody to wake
        eventually(
            lambda: client.get_stats()["successful_requests"] == 1, "the orphan's answer arrives"
        )
        fresh_simulator.configure(latency=0.0)
        assert (
            reply_text(client.chat(CHAT_MODEL, messages("still fine")))
            == REPLY_PREFIX + "still fine"
        )
    del task


# ------------------------------------------------------------------- closing


async def test_async_with_closes_and_later_calls_fail_with_shutdown_error(simulator):
    async with make_client(simulator) as client:
        await client.achat(CHAT_MODEL, messages("one"))
    with pytest.raises(ShutdownError):
        await client.achat(CHAT_MODEL, messages("two"))
    await client.aclose()  # closing twice is harmless


async def test_aclose_fails_queued_requests_with_shutdown_error(fresh_simulator):
    client = make_client(fresh_simulator, max_concurrent_requests=1)
    with held_slot(client, fresh_simulator):
        queued = asyncio.ensure_future(client.achat(CHAT_MODEL, messages("queued")))
        await eventually_async(
            lambda: client.get_stats()["current_queue_size"] == 1, "the request is queued"
        )
        await client.aclose(grace=0.1)  # the held stream stalls: no use waiting 5 s for it
    with pytest.raises(ShutdownError):
        await queued


def test_openai_api_has_every_async_method():
    for name in ("achat", "acompletions", "aembeddings", "amake_request", "aclose"):
        assert asyncio.iscoroutinefunction(getattr(openai_api, name)), name
    assert callable(openai_api.aqueue_with_priority)


# ------------------------------------------------------------------ failover


async def test_a_failover_chain_awaits_each_step_in_turn(fresh_simulator, simulator):
    from ipfs_accelerate_py.api_backends import FailoverChain

    fresh_simulator.configure(outage=True)
    async with (
        make("openai", fresh_simulator, max_retries=0) as down,
        make("groq", simulator) as up,
    ):
        chain = FailoverChain([down, up])
        reply = await chain.achat(CHAT_MODEL, messages("failed over"))
        assert chain.last_step.backend is up
        stream = await chain.achat(CHAT_MODEL, messages("streamed"), stream=True)
        text = "".join([chunk.text async for chunk in stream])
        stats = chain.get_stats()
    assert chain.reply_text(reply) == REPLY_PREFIX + "failed over"
    assert text == REPLY_PREFIX + "streamed"
    assert (
        sorted(stats["served_by"].values()) == [0, 2]
        and stats["served_by"][chain.last_step.name] == 2
    )
    assert stats["failovers"] == 2
