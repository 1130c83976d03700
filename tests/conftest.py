"""Shared fixtures: the local provider simulator on 127.0.0.1, ephemeral port.

* ``simulator``: one server for the whole session, reset before each test
  (counters zeroed, starting scenario and empty script restored).
* ``fresh_simulator``: a server of its own for a test that needs isolation
  (e.g. one that must not see a previous test's lingering connections).
"""

from __future__ import annotations

from typing import Iterator

import pytest

from ipfs_accelerate_py.simulator import Simulator

LOOPBACK = "127.0.0.1"


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
