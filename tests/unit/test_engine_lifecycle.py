"""The driver keeps the lifecycle's promises under a mixed load (in-memory
transport): every request ends in DONE exactly once, and at rest nothing is
held: no slot, no key lease, no breaker permit, no timer, no queued entry."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from ipfs_accelerate_py.api_backends import openai_api
from ipfs_accelerate_py.engine.engine import Engine
from ipfs_accelerate_py.engine.lifecycle import Phase
from ipfs_accelerate_py.engine.request import Request
from ipfs_accelerate_py.resilience.errors import ApiError
from ipfs_accelerate_py.transport.base import HttpRequest

from ..helpers import QUICK_RETRIES, WAIT, ClientFactory, answer, messages, stream_answer

MODEL = "gpt-4o-mini"
CHAT = {
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
STREAM = [b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}', b"", b"data: [DONE]", b""]


def test_a_mixed_load_ends_every_request_once_and_leaves_nothing_held(monkeypatch) -> None:
    submitted: list[Request] = []
    real_submit = Engine.submit

    def submit(self: Engine, req: Request) -> Request:
        submitted.append(req)
        return real_submit(self, req)

    monkeypatch.setattr(Engine, "submit", submit)
    turns = itertools.count()

    def server(request: HttpRequest) -> Any:
        turn = next(turns) % 6
        if turn == 0:
            return answer(503, {"error": {"message": "busy"}})
        if turn == 1:
            return answer(429, {"error": {"message": "slow"}}, {"retry-after": "0"})
        if turn == 2:
            return answer(400, {"error": {"message": "bad"}})
        if b'"stream": true' in (request.body or b"") or b'"stream":true' in (request.body or b""):
            return stream_answer(STREAM)
        return answer(200, CHAT)

    make = ClientFactory(openai_api, "openai_api_base", "openai_api_key", QUICK_RETRIES, key="sk-x")
    client, _ = make.in_memory(
        server, max_concurrent_requests=3, max_retries=2, failure_threshold=1000
    )

    async def one(i: int) -> str:
        try:
            if i % 4 == 3:
                stream = await client.achat(MODEL, messages(f"s{i}"), stream=True)
                async for _ in stream:
                    pass
                return "stream"
            await client.achat(MODEL, messages(f"c{i}"))
            return "ok"
        except ApiError as error:
            return error.kind

    async def main() -> list[str]:
        calls = [asyncio.ensure_future(one(i)) for i in range(60)]
        victims = calls[5::11]
        await asyncio.sleep(0)  # let them submit
        for call in victims:
            call.cancel()
        done = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), WAIT)
        return [d if isinstance(d, str) else type(d).__name__ for d in done]

    with client:
        outcomes = asyncio.run(main())
        engine = client._engine

        async def settled() -> int:  # (engine loop) the attempts' tasks run to their end
            if engine._tasks:
                await asyncio.wait(list(engine._tasks), timeout=WAIT)
            return len(engine._tasks)

        assert asyncio.run_coroutine_threadsafe(settled(), engine.loop).result(WAIT) == 0
        assert len(submitted) == 60
        assert {r.phase for r in submitted} == {Phase.DONE}
        assert all(r.future.done() for r in submitted)
        snap = engine.snapshot()
        assert snap["in_flight"] == 0 and snap["queue_size"] == 0 and snap["backing_off"] == 0
        assert all(state["in_flight"] == 0 for state in snap["key_pool"].values())
        assert engine.breaker.acquire(engine.clock.now()) is not None  # a permit is free
        stats = client.get_stats()
    assert "ok" in outcomes and "stream" in outcomes and "invalid_request" in outcomes
    # a cancel that reaches the engine after its answer leaves the request a success
    assert outcomes.count("CancelledError") == 5 >= stats["cancelled_requests"]
    finished = stats["successful_requests"] + stats["failed_requests"]
    assert finished + stats["cancelled_requests"] == 60  # each request counted once
