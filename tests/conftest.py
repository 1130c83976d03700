"""Shared fixtures: the local provider simulator on 127.0.0.1, ephemeral port.

* ``simulator``: one server for the whole session, reset before each test
  (counters zeroed, starting scenario and empty script restored).
* ``fresh_simulator``: a server of its own for a test that needs isolation
  (e.g. one that must not see a previous test's lingering connections).

And, beside them:

* ``recorder``: a plain loopback server recording each request as sent and
  answering an OpenAI-shaped JSON body, at ``.../v1`` (a module whose wire
  wants another answer overrides it with ``helpers.recorder_fixture``).
* ``frequent_thread_switches``: the interpreter switches threads often while
  the test runs, so unguarded updates would race.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from ipfs_accelerate_py.simulator import Simulator

from .helpers import LOOPBACK, recorder_fixture

OPENAI_RECORDED_ANSWER = {
    "object": "list",
    "data": [],
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
}
"""What ``recorder`` answers: a chat completion and an empty model list at once."""


@pytest.fixture(scope="session")
def session_simulator() -> Iterator[Simulator]:
    """The session's simulator; prefer ``simulator``, which resets it first."""
    sim = Simulator(host=LOOPBACK, port=0).start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def simulator(session_simulator: Simulator) -> Iterator[Simulator]:
    """The shared simulator with zeroed counters, the default scenario and no script."""
    session_simulator.reset()
    yield session_simulator


@pytest.fixture
def fresh_simulator() -> Iterator[Simulator]:
    """A simulator started for this test only."""
    with Simulator(host=LOOPBACK, port=0) as sim:
        yield sim


recorder = recorder_fixture(OPENAI_RECORDED_ANSWER, "/v1")


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    """Make the interpreter switch threads often, so unguarded updates would race."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)
