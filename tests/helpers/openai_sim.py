"""``openai_api`` clients on the simulator, as the ``test_openai_*`` modules make them.

:data:`KEY`, the models, :data:`RESET_TIMEOUT`, :func:`make_client` (a client
pointed at a simulator), :func:`chat_data`, :func:`chat_once`,
:func:`chat_soon`, :func:`wait_real` and :func:`held_slot` (occupy one concurrency slot with a
stalled stream, which makes saturation deterministic).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from ipfs_accelerate_py.api_backends import openai_api
from ipfs_accelerate_py.simulator import Simulator

from . import FAST, WAIT, ClientFactory, messages

KEY = "sk-integration-0123456789abcdef"
CHAT_MODEL = "gpt-4o-mini"
EMBED_MODEL = "text-embedding-3-small"

RESET_TIMEOUT = 0.3
"""The breaker's reset_timeout in these tests: the longest real wait of the suite."""


make_client = ClientFactory(openai_api, "openai_api_base", "openai_api_key", FAST, key=KEY).on
"""``make_client(sim, key=KEY, **settings)``: a client pointed at ``sim`` (close it: ``with make_client(...) as c``)."""


def chat_data(text: str, model: str = CHAT_MODEL, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": messages(text), **extra}


def chat_once(client: openai_api, text: str = "x") -> dict[str, Any]:
    reply: dict[str, Any] = client.chat(CHAT_MODEL, messages(text))
    return reply


def chat_soon(client: openai_api, text: str = "x") -> dict[str, Any]:
    """:func:`chat_once` through the queue, waiting at most WAIT for the answer (else
    ``TimeoutError``): for a test whose failure would be a wait of minutes."""
    future = client.queue_with_priority({"endpoint": "chat/completions", "data": chat_data(text)})
    reply: dict[str, Any] = future.result(timeout=WAIT)
    return reply


def wait_real(seconds: float) -> None:
    """Let a real interval pass (a breaker's reset_timeout); never used to wait for an event."""
    threading.Event().wait(seconds)


@contextlib.contextmanager
def held_slot(client: openai_api, sim: Simulator) -> Iterator[Any]:
    """Occupy one of ``client``'s concurrency slots until the block ends.

    The simulator's next targeted request (this stream) stalls after its
    first chunk; ``chat(stream=True)`` returns once the stream has started,
    so the slot is taken when the block begins.  Leaving closes the stream,
    which aborts the attempt and frees the slot.  The simulator counts the
    stream's status and model only once it notices the client left, so tests
    count it through ``requests_total`` (counted on arrival).
    """
    sim.configure(stall_seconds=30.0)
    sim.script([{"stream_stall_after": 1}], append=True)
    stream = client.chat(CHAT_MODEL, messages("hold the slot"), stream=True)
    try:
        yield stream
    finally:
        stream.close()
