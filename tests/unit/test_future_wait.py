"""A future's blocking wait: every waiting thread wakes once it completes,
and a wait that times out says so (``RequestFuture.wait`` / ``result``)."""

from __future__ import annotations

import threading

import pytest

from ipfs_accelerate_py.engine.future import RequestFuture


def test_every_thread_waiting_on_one_future_wakes_with_its_result():
    future = RequestFuture("r-1")
    results: list[object] = []
    started = threading.Barrier(5)

    def waiter() -> None:
        started.wait(10)
        results.append(future.result(10))

    threads = [threading.Thread(target=waiter) for _ in range(4)]
    for thread in threads:
        thread.start()
    started.wait(10)
    assert future._complete({"answer": 1}, None, 1, "k")
    for thread in threads:
        thread.join(10)
    assert results == [{"answer": 1}] * 4
    assert future.wait(0) and future.wait(None) and future.wait(-1)  # open for good


@pytest.mark.parametrize("timeout", [0, -1.0])
def test_a_wait_that_times_out_returns_false_and_the_future_still_completes(timeout):
    future = RequestFuture("r-2")
    assert future.wait(timeout) is False
    with pytest.raises(TimeoutError, match="r-2"):
        future.result(timeout)
    error = ValueError("boom")
    assert future._complete(None, error)
    assert future.wait(timeout) is True
    with pytest.raises(ValueError, match="boom"):
        future.result(timeout)
    assert future._complete("late") is False  # completes once
