"""The engine's event bus (engine/events.py): subscribe by kind, unsubscribe,
a raising subscriber logged once, and nothing built when nobody listens."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from ipfs_accelerate_py.api_backends import openai_api
from ipfs_accelerate_py.engine import events as ev
from ipfs_accelerate_py.transport.base import HttpResponse

from ..helpers import QUICK_RETRIES, ClientFactory, messages

DONE = ev.RequestDone("r1", "openai", "m", True, None, 1, 0.5, 10.0)
RETRY = ev.RetryScheduled("r1", "openai", "m", 1, "backoff", 0.25, "server", 10.0)
ANSWER = json.dumps(
    {
        "id": "c1",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
).encode()


def test_events_are_frozen_and_slotted() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DONE.ok = False  # type: ignore[misc]
    assert not hasattr(DONE, "__dict__")


def test_subscribe_by_kind_and_unsubscribe() -> None:
    bus = ev.EventBus()
    assert not any(bus.subscribers[kind] for kind in ev.EVENT_TYPES)
    everything: list[object] = []
    retries: list[object] = []
    bus.subscribe(everything.append)
    stop = bus.subscribe(retries.append, ev.RetryScheduled)
    assert all(bus.subscribers[kind] for kind in ev.EVENT_TYPES)
    bus.publish(DONE)
    bus.publish(RETRY)
    assert everything == [DONE, RETRY] and retries == [RETRY]
    stop()
    bus.unsubscribe(everything.append)
    assert not any(bus.subscribers[kind] for kind in ev.EVENT_TYPES)
    bus.publish(RETRY)
    assert everything == [DONE, RETRY] and retries == [RETRY]
    bus.unsubscribe(print)  # never subscribed: nothing happens
    with pytest.raises(TypeError):
        bus.subscribe(print, int)


def test_a_raising_subscriber_is_logged_once_and_the_others_still_hear(caplog) -> None:
    bus = ev.EventBus()
    heard: list[object] = []

    def broken(event: object) -> None:
        raise ValueError("bug")

    bus.subscribe(broken)
    bus.subscribe(heard.append)
    with caplog.at_level(logging.ERROR, logger="ipfs_accelerate_py.engine.events"):
        for _ in range(3):
            bus.publish(DONE)
    assert heard == [DONE] * 3
    assert len(caplog.records) == 1
    assert "broken" in caplog.records[0].getMessage()


def test_nothing_is_published_when_nobody_listens(monkeypatch) -> None:
    published: list[object] = []
    monkeypatch.setattr(ev.EventBus, "publish", lambda self, event: published.append(event))

    def handler(request: object) -> HttpResponse:
        return HttpResponse(200, {"content-type": "application/json"}, ANSWER)

    make = ClientFactory(openai_api, "openai_api_base", "openai_api_key", QUICK_RETRIES, key="sk-x")
    client, _ = make.in_memory(handler)
    with client:
        client.chat("m", messages("hi"))
        assert published == []  # no event was even built
        client.subscribe(lambda event: None, ev.RequestDone)
        client.chat("m", messages("hi"))
    assert [type(e) for e in published] == [ev.RequestDone]
