"""Hooks (user callbacks on start, success, failure) and budgets (max_cost,
max_tokens_total), over real HTTP to the simulator: what the hooks heard and
what the budget stopped are checked against what the server counted."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
import yaml

from ipfs_accelerate_py.engine.events import RequestDone, RequestQueued
from ipfs_accelerate_py.observability import hooks as hooks_module
from ipfs_accelerate_py.resilience.errors import (
    BudgetExceededError,
    ServerError,
    SettingError,
)
from ipfs_accelerate_py.resilience.prices import DEFAULT_PRICES, PriceTable

from ..helpers import WAIT, messages
from ..helpers.openai_sim import CHAT_MODEL, KEY, chat_data, chat_once, make_client

PRICES = {CHAT_MODEL: {"input": 100.0, "output": 200.0}}  # dear: a few requests spend dollars


# ------------------------------------------------------------------ hooks


def test_hooks_hear_start_success_and_failure_with_typed_events(simulator):
    heard: list[tuple[str, object]] = []
    with make_client(simulator, max_retries=0, prices=PRICES) as client:
        remove = client.add_hooks(
            on_start=lambda e: heard.append(("start", e)),
            on_success=lambda e: heard.append(("success", e)),
            on_failure=lambda e: heard.append(("failure", e)),
        )
        chat_once(client, "fine")
        first = simulator.counters()["tokens"]  # what the server counted for the success
        simulator.configure(fail_next=1)
        with pytest.raises(ServerError):
            chat_once(client, "broken")
        remove()
        chat_once(client, "unheard")
    counted = simulator.counters()
    assert [kind for kind, _ in heard] == ["start", "success", "start", "failure"]
    start, success, _, failure = (event for _, event in heard)
    assert isinstance(start, RequestQueued) and start.model == CHAT_MODEL
    assert isinstance(success, RequestDone) and success.ok and success.error is None
    assert success.request_id == start.request_id
    assert success.response_model == CHAT_MODEL and success.response_id
    assert success.finish_reasons == ("stop",)
    assert success.host == f"127.0.0.1:{simulator.port}"
    assert (success.tokens_in, success.tokens_out) == (first["prompt"], first["completion"])
    assert success.tokens_in > 0
    assert success.cost == pytest.approx((success.tokens_in * 100 + success.tokens_out * 200) / 1e6)
    assert isinstance(failure, RequestDone) and not failure.ok
    assert isinstance(failure.error, ServerError) and failure.error.status == 500
    assert failure.error_kind == "server" and failure.tokens_in == 0
    assert counted["requests_total"] == 3  # the removed hooks heard nothing of the third


def test_a_failing_hook_is_logged_once_with_its_traceback_and_breaks_nothing(simulator, caplog):
    def broken(event):
        raise RuntimeError("my store is down")

    with make_client(simulator) as client:
        client.add_hooks(on_start=broken, on_success=broken)
        with caplog.at_level(logging.WARNING, logger="ipfs_accelerate_py.hooks"):
            replies = [chat_once(client, f"q{i}") for i in range(3)]
    assert len(replies) == 3 and simulator.counters()["requests_total"] == 3
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "my store is down" in str(tracebacks[0].exc_info[1])
    assert "the request is unaffected" in tracebacks[0].getMessage()
    again = [r for r in caplog.records if "raised again" in r.getMessage()]
    assert len(again) == 5  # 3 starts and 3 successes, the first logged in full


def test_async_hooks_run_on_the_engine_loop_and_their_failures_are_logged(simulator, caplog):
    done = threading.Event()
    seen: list[tuple[str, bool]] = []

    async def record(event):
        await asyncio.sleep(0)  # a real coroutine: it awaits
        seen.append((event.request_id, event.ok))
        if len(seen) == 2:
            done.set()

    async def broken(event):
        raise ValueError("async store refused")

    with make_client(simulator) as client:
        client.add_hooks(on_success=record)
        client.add_hooks(on_start=broken)
        with caplog.at_level(logging.WARNING, logger="ipfs_accelerate_py.hooks"):
            chat_once(client, "a")
            chat_once(client, "b")
            assert done.wait(WAIT)
    assert [ok for _, ok in seen] == [True, True]
    assert any("async store refused" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


def test_async_hooks_past_the_cap_are_dropped_and_counted(simulator, monkeypatch):
    monkeypatch.setattr(hooks_module, "MAX_PENDING", 1)
    release = threading.Event()

    async def slow(event):
        await asyncio.get_running_loop().run_in_executor(None, release.wait, WAIT)

    with make_client(simulator) as client:
        engine = client._engine
        hooks = hooks_module.Hooks(engine.events, lambda: engine.loop, on_success=slow)
        try:
            for i in range(3):
                chat_once(client, f"q{i}")
            assert hooks.dropped == 2  # one runs (held), the next two found no room
        finally:
            release.set()
            hooks.remove()


def test_add_hooks_refuses_what_is_not_a_function(simulator):
    with make_client(simulator) as client:
        with pytest.raises(TypeError, match="on_success must be a function"):
            client.add_hooks(on_success="log.txt")
        with pytest.raises(TypeError, match="at least one of"):
            client.add_hooks()


# ---------------------------------------------------------------- budgets


def test_max_cost_refuses_new_requests_once_spent_and_the_server_saw_no_more(simulator):
    with make_client(simulator, prices=PRICES, max_cost=0.001) as client:
        sent = 0
        with pytest.raises(BudgetExceededError) as caught:
            for i in range(50):
                chat_once(client, f"spend {i}")
                sent += 1
        stats = client.get_stats()
        report = client.generate_report()
    error = caught.value
    assert sent >= 1 and simulator.counters()["requests_total"] == sent
    assert error.budget == "max_cost" and error.limit == 0.001 and error.spent >= 0.001
    assert "max_cost" in str(error) and "client.max_cost" in str(error)
    assert error.provider == "openai" and error.model == CHAT_MODEL
    assert stats["errors_by_type"]["budget"] == 1 and stats["rejected_requests"] == 1
    assert stats["cost"]["total"] == pytest.approx(error.spent)
    assert report["cost"]["max_cost"] == 0.001 and report["cost"]["total"] == stats["cost"]["total"]
    assert KEY not in str(error)


def test_max_tokens_total_counts_what_the_server_reported_and_can_be_raised(simulator):
    with make_client(simulator, max_tokens_total=1) as client:
        chat_once(client, "one")  # admitted before anything was spent
        with pytest.raises(BudgetExceededError, match="max_tokens_total"):
            chat_once(client, "two")
        counted = simulator.counters()["tokens"]["total"]
        assert client.get_stats()["tokens"]["total"] == counted
        client.max_tokens_total = None  # lifted: requests go again
        chat_once(client, "three")
    assert simulator.counters()["requests_total"] == 2


def test_requests_in_flight_when_the_budget_is_spent_finish_and_count(simulator):
    simulator.configure(latency=0.2)
    with make_client(
        simulator, prices=PRICES, max_cost=0.0001, max_concurrent_requests=4
    ) as client:
        futures = [
            client.queue_with_priority({"endpoint": "chat/completions", "data": chat_data(f"p{i}")})
            for i in range(4)
        ]
        results = [f.result(timeout=WAIT) for f in futures]  # all admitted before any finished
        with pytest.raises(BudgetExceededError):
            chat_once(client)
        stats = client.get_stats()
    assert len(results) == 4 and stats["successful_requests"] == 4
    assert simulator.counters()["requests_total"] == 4
    assert stats["cost"]["total"] > 0.0001  # every finished request counted, past the budget


def test_queued_requests_not_yet_sent_are_not_sent_once_the_budget_is_spent(simulator):
    simulator.configure(latency=0.05)
    with make_client(simulator, max_tokens_total=1, max_concurrent_requests=1) as client:
        futures = [
            client.queue_with_priority({"endpoint": "chat/completions", "data": chat_data(f"q{i}")})
            for i in range(6)
        ]  # all admitted at once: nothing spent yet
        outcomes = []
        for future in futures:
            try:
                future.result(timeout=WAIT)
                outcomes.append("ok")
            except BudgetExceededError as exc:
                outcomes.append(exc.budget)
        stats = client.get_stats()
    assert outcomes == ["ok"] + ["max_tokens_total"] * 5
    assert simulator.counters()["requests_total"] == 1
    assert stats["errors_by_type"] == {"budget": 5}


def test_an_async_caller_gets_the_budget_error_too(simulator):
    async def main():
        with make_client(simulator, max_tokens_total=1) as client:
            await client.achat(CHAT_MODEL, messages("one"))
            with pytest.raises(BudgetExceededError):
                await client.achat(CHAT_MODEL, messages("two"))

    asyncio.run(main())
    assert simulator.counters()["requests_total"] == 1


# ----------------------------------------------------------------- prices


def test_a_price_file_prices_models_over_the_built_in_table(simulator, tmp_path):
    path = tmp_path / "prices.yaml"
    path.write_text(
        yaml.safe_dump({"as_of": "2026-12-01", "models": {CHAT_MODEL: {"input": 1, "output": 3}}})
    )
    with make_client(simulator, prices=str(path)) as client:
        chat_once(client, "priced")
        stats = client.get_stats()
        report = client.generate_report()
        table = client.prices
    counted = simulator.counters()["tokens"]
    expected = (counted["prompt"] * 1 + counted["completion"] * 3) / 1_000_000
    assert stats["cost"]["total"] == pytest.approx(expected)
    assert stats["keys"][next(iter(stats["keys"]))]["cost"] == pytest.approx(expected)
    assert stats["cost"]["unpriced_models"] == []
    assert report["cost"]["prices_as_of"] == "2026-12-01"
    assert isinstance(table, PriceTable) and table.price("gpt-4o") == DEFAULT_PRICES.price("gpt-4o")


def test_a_model_without_a_price_costs_nothing_and_is_named(simulator):
    with make_client(simulator) as client:
        client.chat("my-own-model", messages("x"))
        stats = client.get_stats()
    assert stats["cost"]["total"] == 0.0 and stats["cost"]["unpriced_models"] == ["my-own-model"]


@pytest.mark.parametrize(
    "content, why",
    [
        ("models: {m: {input: -1}}", "input must be a number of dollars >= 0"),
        ("models: {m: {input: 1, outptu: 2}}", "must be {input: dollars, output: dollars}"),
        ("models: [1, 2", "is not valid YAML"),
        ("", "is empty"),
        ("models: {m: 1}\ncurrency: EUR", "currency must be USD"),
    ],
)
def test_a_bad_price_file_is_refused_naming_the_file_and_the_fix(simulator, tmp_path, content, why):
    path = tmp_path / "prices.yaml"
    path.write_text(content)
    with pytest.raises(SettingError) as caught:
        make_client(simulator, prices=str(path))
    assert why in str(caught.value) and str(path) in str(caught.value)


def test_dated_versions_and_prefixed_names_find_their_price():
    assert DEFAULT_PRICES.price("gpt-4o-mini-2024-07-18") == DEFAULT_PRICES.price("gpt-4o-mini")
    assert DEFAULT_PRICES.price("openai/gpt-4o") == DEFAULT_PRICES.price("gpt-4o")
    assert DEFAULT_PRICES.price("gpt-4o-mini") != DEFAULT_PRICES.price("gpt-4o")
    assert DEFAULT_PRICES.price("gpt-4") is None and DEFAULT_PRICES.price(None) is None
    assert DEFAULT_PRICES.as_of == "2025-08"
