"""The request lifecycle table (engine/lifecycle.py): every phase x event,
the decisions over plain inputs, and random event sequences."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ipfs_accelerate_py.engine import lifecycle
from ipfs_accelerate_py.engine.lifecycle import (
    ACQUIRES,
    HOLDS,
    RELEASES,
    TABLE,
    Action,
    Event,
    IllegalTransition,
    Outcome,
    Phase,
    step,
)
from ipfs_accelerate_py.resilience.errors import (
    AuthenticationError,
    DeadlineExceededError,
    InvalidRequestError,
    NetworkError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
)
from ipfs_accelerate_py.resilience.retry import RetryOptions

# The lifecycle as it is meant: every legal (phase, event) and where it goes.
EXPECTED = {
    (Phase.NEW, Event.ADMITTED): Phase.QUEUED,
    (Phase.NEW, Event.BATCHED): Phase.IN_BATCH,
    (Phase.NEW, Event.REJECTED): Phase.DONE,
    (Phase.WAIT_KEY, Event.TIMER): Phase.QUEUED,
    (Phase.IN_BATCH, Event.LAUNCHED): Phase.CARRIED,
    (Phase.IN_BATCH, Event.CANCEL): Phase.DONE,
    (Phase.IN_BATCH, Event.SHUTDOWN): Phase.DONE,
    (Phase.CARRIED, Event.BATCH_DONE): Phase.DONE,
    (Phase.CARRIED, Event.CANCEL): Phase.DONE,
    (Phase.LEASING, Event.KEY_LEASED): Phase.SENDING,
    (Phase.LEASING, Event.NO_KEY_WAIT): Phase.WAIT_KEY,
    (Phase.LEASING, Event.NO_KEY_HOLD): Phase.WAIT_KEY,
    (Phase.LEASING, Event.NO_KEY_IN_TIME): Phase.DONE,
    (Phase.SENDING, Event.RESPONSE_OK): Phase.DONE,
    (Phase.SENDING, Event.FIRST_CHUNK): Phase.STREAMING,
    (Phase.SENDING, Event.RETRY_LATER): Phase.BACKOFF,
    (Phase.SENDING, Event.RETRY_NOW): Phase.QUEUED,
    (Phase.SENDING, Event.FAILED): Phase.DONE,
    (Phase.SENDING, Event.DEADLINE): Phase.DONE,
    (Phase.SENDING, Event.CANCEL): Phase.DONE,
    (Phase.SENDING, Event.SHUTDOWN): Phase.DONE,
    (Phase.STREAMING, Event.STREAM_END): Phase.DONE,
    (Phase.STREAMING, Event.STALL): Phase.DONE,
    (Phase.STREAMING, Event.FAILED): Phase.DONE,
    (Phase.STREAMING, Event.CANCEL): Phase.DONE,
    (Phase.STREAMING, Event.SHUTDOWN): Phase.DONE,
    (Phase.BACKOFF, Event.TIMER): Phase.QUEUED,
    (Phase.BACKOFF, Event.CIRCUIT_OPEN): Phase.DONE,
    (Phase.BACKOFF, Event.CANCEL): Phase.DONE,
    (Phase.BACKOFF, Event.SHUTDOWN): Phase.DONE,
}
for _waiting in (Phase.QUEUED, Phase.WAIT_KEY):
    EXPECTED[_waiting, Event.PERMIT_GRANTED] = Phase.LEASING
    for _event in (
        Event.DEADLINE,
        Event.CIRCUIT_OPEN,
        Event.NO_KEY_EVER,
        Event.CANCEL,
        Event.SHUTDOWN,
        Event.BUDGET,
    ):
        EXPECTED[_waiting, _event] = Phase.DONE

_ENDINGS = {Action.COMPLETE, Action.RECORD}


@pytest.mark.parametrize("phase", list(Phase), ids=lambda p: p.name)
@pytest.mark.parametrize("event", list(Event), ids=lambda e: e.name)
def test_every_phase_and_event(phase: Phase, event: Event) -> None:
    expected = EXPECTED.get((phase, event))
    if expected is None:
        with pytest.raises(IllegalTransition, match=event.name):
            step(phase, event)
        return
    transition = step(phase, event)
    assert transition.next is expected
    acquired = {ACQUIRES[a] for a in transition.actions if a in ACQUIRES}
    released = {RELEASES[a] for a in transition.actions if a in RELEASES}
    # leaving a phase gives back exactly what it held and the next does not hold;
    # entering takes exactly what the next holds and this one did not
    assert released == HOLDS[phase] - HOLDS[expected]
    assert acquired == HOLDS[expected] - HOLDS[phase]
    counts = Counter(transition.actions)
    assert all(n == 1 for n in counts.values()), transition.actions
    if expected is Phase.DONE:
        assert Action.RECORD in transition.actions
        if phase is not Phase.NEW:  # a rejected request is raised to its caller instead
            assert Action.COMPLETE in transition.actions
    else:
        assert not _ENDINGS & set(transition.actions)


def test_table_has_no_rows_beyond_the_lifecycle() -> None:
    assert set(TABLE) == set(EXPECTED)


def test_done_takes_no_event() -> None:
    for event in Event:
        with pytest.raises(IllegalTransition):
            step(Phase.DONE, event)


def test_an_attempt_reports_before_it_releases() -> None:
    """The breaker hears the outcome with the permit, then the key gets its lease back."""
    for (phase, _), transition in TABLE.items():
        if phase is Phase.SENDING and Action.RELEASE_LEASE in transition.actions:
            actions = transition.actions
            assert (
                actions.index(Action.REPORT)
                < actions.index(Action.RELEASE_PERMIT)
                < actions.index(Action.RELEASE_LEASE)
            )


def test_a_stream_reports_at_its_first_chunk_and_keeps_its_key() -> None:
    transition = step(Phase.SENDING, Event.FIRST_CHUNK)
    assert transition.actions == (Action.REPORT, Action.RELEASE_PERMIT, Action.HAND_STREAM)
    assert HOLDS[Phase.STREAMING] == {lifecycle.Resource.LEASE}


# ------------------------------------------------------------- decisions

OPTIONS = RetryOptions(max_retries=3, initial_delay=0.5, jitter=0.0, max_retry_after=60.0)


def _after(error, **kw):
    args = dict(
        retries=0,
        options=OPTIONS,
        rng=random.Random(1),
        now=100.0,
        deadline=None,
        cut_at=None,
        last_key="k1",
        closed=False,
        another_key_usable=False,
    )
    args.update(kw)
    return lifecycle.after_failure(error, **args)


def test_a_timeout_at_the_deadline_cut_is_the_deadline() -> None:
    verdict = _after(RequestTimeoutError("slow"), cut_at=100.0)
    assert verdict.event is Event.DEADLINE
    assert _after(RequestTimeoutError("slow"), cut_at=100.5).event is Event.RETRY_LATER


def test_a_429_on_a_key_goes_back_to_the_queue_at_once() -> None:
    limited = RateLimitError("slow down", status=429, retry_after=5.0)
    assert _after(limited).event is Event.RETRY_NOW
    assert _after(limited, retries=3).event is Event.FAILED  # retries used up
    assert _after(limited, closed=True).event is Event.FAILED
    # without a key to cool, Retry-After is waited out like any server's word
    verdict = _after(limited, last_key=None)
    assert (verdict.event, verdict.delay) == (Event.RETRY_LATER, 5.0)


def test_a_refused_key_moves_on_only_when_another_may_work() -> None:
    refused = AuthenticationError("bad key", status=401)
    assert _after(refused, another_key_usable=True).event is Event.RETRY_NOW
    verdict = _after(refused)
    assert verdict.event is Event.FAILED and verdict.reason == "not_retryable"


def test_a_server_error_backs_off_and_respects_the_deadline() -> None:
    verdict = _after(ServerError("boom", status=503))
    assert (verdict.event, verdict.delay, verdict.reason) == (Event.RETRY_LATER, 0.5, "backoff")
    later = _after(ServerError("boom", status=503), retries=2)
    assert later.delay == 2.0
    cut = _after(ServerError("boom", status=503), deadline=100.2)
    assert cut.event is Event.FAILED and cut.reason == "deadline" and cut.delay == 0.5
    assert cut.decision is not None and not cut.decision.retry


def test_retry_after_is_this_attempts_own() -> None:
    verdict = _after(ServerError("busy", status=503, retry_after=7.0))
    assert (verdict.delay, verdict.reason) == (7.0, "retry_after")


def test_client_errors_and_admission_errors_end_the_request() -> None:
    for error in (InvalidRequestError("bad", status=400), DeadlineExceededError("late")):
        assert _after(error).event is Event.FAILED
    assert _after(NetworkError("reset")).event is Event.RETRY_LATER


def test_cooldown_only_for_a_429_without_a_believable_retry_after() -> None:
    rng = random.Random(1)
    assert lifecycle.cooldown_for(RateLimitError("x", status=429), 0, OPTIONS, rng) == 0.5
    assert lifecycle.cooldown_for(RateLimitError("x", status=429), 1, OPTIONS, rng) == 1.0
    over = RateLimitError("x", status=429, retry_after=3600.0)
    assert lifecycle.cooldown_for(over, 0, OPTIONS, rng) == 0.5
    believed = RateLimitError("x", status=429, retry_after=3.0)
    assert lifecycle.cooldown_for(believed, 0, OPTIONS, rng) is None
    assert lifecycle.cooldown_for(ServerError("x", status=500), 0, OPTIONS, rng) is None
    assert lifecycle.cooldown_for(None, 0, OPTIONS, rng) is None


def test_circuit_fail_fast_or_wait() -> None:
    fail_fast = lifecycle.must_fail_fast
    assert not fail_fast(False, False, None, 0.0, 10.0)
    assert fail_fast(True, False, None, 0.0, 10.0)
    assert not fail_fast(True, True, None, 0.0, 10.0)
    assert not fail_fast(True, True, 10.0, 0.0, 10.0)  # the probe comes just in time
    assert fail_fast(True, True, 9.9, 0.0, 10.0)


def test_no_key_events() -> None:
    no_key = lifecycle.no_key_event
    assert no_key(None, False, None, True) is Event.NO_KEY_WAIT
    assert no_key(5.0, False, 4.0, True) is Event.NO_KEY_IN_TIME
    assert no_key(5.0, False, 5.0, True) is Event.NO_KEY_HOLD
    assert no_key(5.0, True, None, True) is Event.NO_KEY_WAIT  # busy: a finishing attempt frees it
    assert no_key(5.0, False, None, False) is Event.NO_KEY_WAIT


def test_attempt_timeout_cut_by_the_deadline() -> None:
    assert lifecycle.attempt_timeout(30.0, None, 0.0) == (30.0, None)
    assert lifecycle.attempt_timeout(30.0, 40.0, 0.0) == (30.0, None)
    assert lifecycle.attempt_timeout(30.0, 10.0, 0.0) == (10.0, 10.0)
    assert lifecycle.attempt_timeout(30.0, 10.0, 10.0) == (0.001, 10.0)


def test_breaker_outcome() -> None:
    outcome = lifecycle.breaker_outcome
    assert outcome(None, 200) is Outcome.SUCCESS
    assert outcome(None, None) is Outcome.SUCCESS
    assert outcome(None, 404) is Outcome.IGNORED  # an answer the provider reads as "not ready"
    assert outcome(ServerError("x", status=500), 500) is Outcome.FAILURE
    assert outcome(NetworkError("reset"), None) is Outcome.FAILURE
    assert outcome(RateLimitError("x", status=429), 429) is Outcome.IGNORED
    assert outcome(InvalidRequestError("x", status=400), 400) is Outcome.IGNORED


# ------------------------------------------------------------- random sequences


class Lifecycles(RuleBasedStateMachine):
    """Random events fed to a handful of requests, as a driver would: every
    request ends exactly once, and every permit, lease and slot taken is
    given back exactly once; what is held always matches the phase."""

    @initialize(n=st.integers(min_value=1, max_value=4))
    def start(self, n: int) -> None:
        self.phases = [Phase.NEW] * n
        self.completed = [0] * n
        self.taken = [Counter() for _ in range(n)]
        self.given = [Counter() for _ in range(n)]

    @rule(data=st.data(), event=st.sampled_from(list(Event)))
    def feed(self, data: st.DataObject, event: Event) -> None:
        i = data.draw(st.integers(min_value=0, max_value=len(self.phases) - 1))
        phase = self.phases[i]
        if (phase, event) not in TABLE:
            with pytest.raises(IllegalTransition):
                step(phase, event)
            return
        transition = step(phase, event)
        for action in transition.actions:
            if action in ACQUIRES:
                self.taken[i][ACQUIRES[action]] += 1
            elif action in RELEASES:
                self.given[i][RELEASES[action]] += 1
            elif action is Action.COMPLETE:
                self.completed[i] += 1
        if phase is Phase.NEW and transition.next is Phase.DONE:
            self.completed[i] += 1  # rejected: the caller hears it as a raise
        self.phases[i] = transition.next

    @invariant()
    def held_matches_phase(self) -> None:
        for phase, taken, given in zip(self.phases, self.taken, self.given, strict=True):
            held = {r for r in lifecycle.Resource if taken[r] - given[r]}
            assert held == HOLDS[phase]
            assert all(0 <= taken[r] - given[r] <= 1 for r in lifecycle.Resource)

    @invariant()
    def ends_once(self) -> None:
        for phase, completed in zip(self.phases, self.completed, strict=True):
            assert completed == (1 if phase is Phase.DONE else 0)


TestLifecycles = Lifecycles.TestCase
TestLifecycles.settings = settings(max_examples=300, stateful_step_count=60, deadline=None)


def test_the_lifecycle_is_sans_io() -> None:
    """No asyncio, no clock, no I/O: only the policies' pure modules."""
    import ast
    import pathlib

    tree = ast.parse(pathlib.Path(lifecycle.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
    assert imported <= {
        "__future__",
        "enum",
        "random",
        "dataclasses",
        "..resilience",
        "..resilience.errors",
    }, imported


def test_the_architecture_page_shows_the_table_as_it_is():
    from pathlib import Path

    from ipfs_accelerate_py.engine.lifecycle import table_markdown

    page = Path(__file__).resolve().parents[2] / "docs" / "ARCHITECTURE.md"
    assert page.read_text(encoding="utf-8").endswith(table_markdown())
