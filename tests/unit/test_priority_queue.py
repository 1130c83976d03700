"""PriorityRequestQueue: order, bound, removal, aging, memory, threads."""

from __future__ import annotations

import enum
import random
import threading

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
)

from ipfs_accelerate_py.resilience.clock import FakeClock
from ipfs_accelerate_py.resilience.errors import (
    ApiError,
    InvalidInputError,
    QueueFullError,
    SettingError,
)
from ipfs_accelerate_py.resilience.priority_queue import (
    DEFAULT_QUEUE_SIZE,
    PRIORITIES,
    PRIORITY_HIGH,
    PRIORITY_LOW,
    PRIORITY_NORMAL,
    PriorityRequestQueue,
    QueueEntry,
    priority_level,
)

from ..helpers import beside

H, N, L = PRIORITY_HIGH, PRIORITY_NORMAL, PRIORITY_LOW


def pop_all(q: PriorityRequestQueue, now: float = 0.0) -> list:
    out = []
    while (entry := q.pop(now)) is not None:
        out.append(entry.item)
    return out


def test_constants():
    assert (H, N, L) == (0, 1, 2)
    assert PRIORITIES == (0, 1, 2)
    assert DEFAULT_QUEUE_SIZE == 100
    assert PriorityRequestQueue().maxsize == DEFAULT_QUEUE_SIZE


@pytest.mark.parametrize(
    "given, level",
    [(0, H), (1, N), (2, L), (1.0, N), ("high", H), (" High ", H), ("NORMAL", N), ("low\n", L)],
)
def test_a_priority_is_a_level_or_its_word_in_any_case(given, level):
    assert priority_level(given) == level


@pytest.mark.parametrize("given", ["urgent", "", "0", 3, -1, True, False, None, [0]])
def test_anything_else_is_refused_naming_the_constants_and_the_words(given):
    with pytest.raises(InvalidInputError, match=r'PRIORITY_HIGH \(0\).*"high", "normal" or "low"'):
        priority_level(given)


@pytest.mark.parametrize(
    "pushes, expected",
    [
        ([("a", L), ("b", N), ("c", H)], ["c", "b", "a"]),
        ([("a", H), ("b", H), ("c", H)], ["a", "b", "c"]),
        ([("a", N), ("b", L), ("c", N), ("d", H), ("e", L)], ["d", "a", "c", "b", "e"]),
        ([("a", L), ("b", L), ("c", H), ("d", N), ("e", H)], ["c", "e", "d", "a", "b"]),
        ([], []),
    ],
)
def test_order_by_priority_then_fifo(pushes, expected):
    q = PriorityRequestQueue()
    for item, prio in pushes:
        q.push(item, prio, now=0.0)
    assert q.snapshot() == expected
    assert pop_all(q) == expected
    assert q.pop(0.0) is None


def test_fifo_within_a_level_over_many_items():
    q = PriorityRequestQueue(maxsize=1000)
    for i in range(500):
        q.push(i, N, now=float(i))
    assert pop_all(q) == list(range(500))


def test_entry_fields_and_alive_flag():
    clock = FakeClock()
    q = PriorityRequestQueue()
    e1 = q.push("x", L, clock.now())
    clock.advance(1.5)
    e2 = q.push("y", L, clock.now())
    assert isinstance(e1, QueueEntry)
    assert (e1.item, e1.priority, e1.enqueued_at, e1.alive) == ("x", L, 1000.0, True)
    assert e2.seq > e1.seq and e2.enqueued_at == 1001.5
    assert q.pop(clock.now()) is e1
    assert e1.alive is False and e2.alive is True
    assert not hasattr(e1, "__dict__")  # __slots__


def test_requeue_keeps_its_place():
    q = PriorityRequestQueue()
    a = q.push("a", N, 0.0)
    q.push("b", N, 1.0)
    q.push("low", L, 1.0)
    assert q.pop(2.0) is a
    q.push("c", N, 3.0)
    q.requeue(a, now=4.0)
    assert a.alive and a.enqueued_at == 0.0
    assert pop_all(q, 5.0) == ["a", "b", "c", "low"]


def test_requeue_ignores_maxsize():
    q = PriorityRequestQueue(maxsize=2)
    a = q.push("a", N, 0.0)
    q.pop(0.0)
    q.push("b", N, 0.0)
    q.push("c", N, 0.0)
    q.requeue(a, 1.0)
    assert len(q) == 3
    with pytest.raises(QueueFullError):
        q.push("d", N, 1.0)
    assert pop_all(q) == ["a", "b", "c"]


def test_requeue_of_a_queued_entry_or_a_foreign_entry_is_refused():
    q, other = PriorityRequestQueue(), PriorityRequestQueue()
    a = q.push("a", N, 0.0)
    with pytest.raises(ValueError):
        q.requeue(a, 0.0)
    b = other.push("b", N, 0.0)
    other.pop(0.0)
    with pytest.raises(ValueError):
        q.requeue(b, 0.0)
    assert len(q) == 1


def test_requeue_after_remove_revives_without_duplicating():
    q = PriorityRequestQueue()
    a = q.push("a", N, 0.0)
    q.push("b", N, 0.0)
    q.push("c", N, 0.0)
    assert q.remove(a)
    q.requeue(a, 1.0)
    assert len(q) == 3 and q._physical_size() == 3
    assert pop_all(q) == ["a", "b", "c"]
    assert q._physical_size() == 0


def test_full_queue_error_type_and_text():
    q = PriorityRequestQueue(maxsize=3)
    for i in range(3):
        q.push(i, N, 0.0)
    with pytest.raises(QueueFullError) as info:
        q.push("x", H, 0.0)
    err = info.value
    assert isinstance(err, ApiError) and err.kind == "queue_full"
    assert str(err).startswith("Request queue is full (3 of 3)")
    assert (
        "raise client.queue_size, lower the request rate, or raise client.max_concurrent_requests"
        in str(err)
    )
    assert len(q) == 3
    q.pop(0.0)
    q.push("x", H, 0.0)  # room again
    assert len(q) == 3


def test_an_int_subclass_priority_is_kept_as_given():
    class Level(enum.IntEnum):
        HIGH, NORMAL, LOW = 0, 1, 2

    q = PriorityRequestQueue()
    low = q.push("low", Level.LOW, 0.0)
    q.push("high", Level.HIGH, 0.0)
    assert low.priority is Level.LOW and q.counts() == {H: 1, N: 0, L: 1}
    assert pop_all(q) == ["high", "low"]


@pytest.mark.parametrize("bad", [3, -1, "high", True, False, 1.5, None, 1.0])
def test_invalid_priority(bad):
    q = PriorityRequestQueue()
    with pytest.raises(InvalidInputError) as info:
        q.push("x", bad, 0.0)
    message = str(info.value)
    assert repr(bad) in message
    assert "0 (HIGH), 1 (NORMAL), 2 (LOW)" in message
    assert isinstance(info.value, ValueError)
    assert len(q) == 0


def test_remove_then_len_and_counts():
    q = PriorityRequestQueue()
    entries = [q.push(i, i % 3, 0.0) for i in range(9)]
    assert len(q) == 9 and q.counts() == {H: 3, N: 3, L: 3}
    assert q.remove(entries[4]) is True
    assert len(q) == 8 and q.counts() == {H: 3, N: 2, L: 3}
    assert entries[4].alive is False
    assert q.remove(entries[4]) is False
    assert len(q) == 8
    assert 4 not in q.snapshot()
    assert 4 not in pop_all(q)


def test_remove_frees_room_at_once():
    q = PriorityRequestQueue(maxsize=2)
    a = q.push("a", N, 0.0)
    q.push("b", N, 0.0)
    q.remove(a)
    q.push("c", N, 0.0)
    assert pop_all(q) == ["b", "c"]


def test_remove_of_a_popped_or_foreign_entry_returns_false():
    q, other = PriorityRequestQueue(), PriorityRequestQueue()
    a = q.push("a", N, 0.0)
    assert q.pop(0.0) is a
    assert q.remove(a) is False
    b = other.push("b", N, 0.0)
    assert q.remove(b) is False
    assert b.alive and len(other) == 1


def test_drain_returns_every_live_entry_in_order():
    q = PriorityRequestQueue()
    es = [q.push(name, prio, 0.0) for name, prio in [("l", L), ("n", N), ("h", H), ("h2", H)]]
    q.remove(es[1])
    drained = q.drain()
    assert [e.item for e in drained] == ["h", "h2", "l"]
    assert all(not e.alive for e in es)
    assert len(q) == 0 and q.pop(0.0) is None and q._physical_size() == 0
    assert q.remove(es[0]) is False


def test_oldest_enqueued_at():
    q = PriorityRequestQueue()
    assert q.oldest_enqueued_at() is None
    a = q.push("a", L, 5.0)
    q.push("b", H, 7.0)
    q.push("c", N, 9.0)
    assert q.oldest_enqueued_at() == 5.0
    q.remove(a)
    assert q.oldest_enqueued_at() == 7.0
    q.pop(10.0)
    assert q.oldest_enqueued_at() == 9.0


# ---------------------------------------------------------------- aging


def test_aging_low_overtakes_high_after_exactly_two_intervals():
    clock = FakeClock()
    q = PriorityRequestQueue(aging_interval=10.0)
    q.push("low", L, clock.now())
    clock.advance(1.0)
    q.push("high", H, clock.now())
    clock.advance(18.999)  # LOW waited 19.999 s: effective NORMAL
    assert q.snapshot(clock.now()) == ["high", "low"]
    assert q.pop(clock.now()).item == "high"
    q.push("high2", H, clock.now())
    clock.advance(0.001)  # LOW waited 20 s: effective HIGH, older than high2
    assert q.snapshot(clock.now()) == ["low", "high2"]
    assert q.pop(clock.now()).item == "low"


def test_aging_one_interval_lifts_one_level():
    clock = FakeClock()
    q = PriorityRequestQueue(aging_interval=5)
    q.push("low", L, clock.now())
    clock.advance(5.0)
    q.push("normal", N, clock.now())
    q.push("high", H, clock.now())
    # low is effective NORMAL and older than "normal"; HIGH still first.
    assert pop_all(q, clock.now()) == ["high", "low", "normal"]


def test_low_is_not_starved_by_a_steady_stream_of_high():
    clock = FakeClock()
    q = PriorityRequestQueue(maxsize=1000, aging_interval=1.0)
    q.push("low", L, clock.now())
    served = []
    for i in range(100):
        q.push(f"h{i}", H, clock.now())
        served.append(q.pop(clock.now()).item)
        clock.advance(0.25)
    assert "low" in served
    # pushed at t=0, it ties HIGH at t=2.0 (the 9th step) and is older than the new HIGH.
    assert served.index("low") == 8


def test_without_aging_high_stream_starves_low():
    q = PriorityRequestQueue(maxsize=1000)
    q.push("low", L, 0.0)
    served = []
    for i in range(100):
        q.push(i, H, float(i))
        served.append(q.pop(float(i)).item)
    assert "low" not in served


def test_aging_interval_setting():
    q = PriorityRequestQueue()
    assert q.aging_interval is None
    q.aging_interval = 2
    assert q.aging_interval == 2.0
    q.aging_interval = None
    assert q.aging_interval is None
    for bad in (0, -1, True, "1", float("nan"), float("inf")):
        with pytest.raises(SettingError) as info:
            q.aging_interval = bad
        assert info.value.setting == "aging_interval"
    with pytest.raises(SettingError) as info:
        PriorityRequestQueue(aging_interval=0)
    assert info.value.setting == "aging_interval"


def test_aging_looks_at_the_oldest_entry_of_each_level():
    q = PriorityRequestQueue(aging_interval=10.0)
    q.push("old normal", N, 0.0)
    q.push("high", H, 5.0)
    q.push("new normal", N, 10.0)
    # at 10.0 "old normal" is effective HIGH and older than "high"; "new normal" is not aged
    assert pop_all(q, 10.0) == ["old normal", "high", "new normal"]


def test_aging_intervals_shorter_than_a_second():
    q = PriorityRequestQueue(aging_interval=0.5)
    q.push("low", L, 0.0)
    q.push("high", H, 0.5)
    # at 1.0 LOW has waited two intervals: effective HIGH, and older
    assert pop_all(q, 1.0) == ["low", "high"]


# ---------------------------------------------------------------- maxsize


@pytest.mark.parametrize("bad", [0, -1, 1.5, "10", True, None])
def test_maxsize_validation(bad):
    with pytest.raises(SettingError) as info:
        PriorityRequestQueue(maxsize=bad)
    assert info.value.setting == "queue_size"
    q = PriorityRequestQueue(maxsize=5)
    with pytest.raises(SettingError):
        q.maxsize = bad
    assert q.maxsize == 5


def test_maxsize_shrink_keeps_entries_and_refuses_until_below():
    q = PriorityRequestQueue(maxsize=5)
    for i in range(5):
        q.push(i, N, 0.0)
    q.maxsize = 3
    assert len(q) == 5
    with pytest.raises(QueueFullError, match=r"\(5 of 3\)"):
        q.push("x", N, 0.0)
    q.pop(0.0)
    q.pop(0.0)
    with pytest.raises(QueueFullError, match=r"\(3 of 3\)"):
        q.push("x", N, 0.0)
    q.pop(0.0)
    q.push("x", N, 0.0)
    assert pop_all(q) == [3, 4, "x"]


def test_maxsize_grow_admits_more():
    q = PriorityRequestQueue(maxsize=1)
    q.push("a", N, 0.0)
    with pytest.raises(QueueFullError):
        q.push("b", N, 0.0)
    q.maxsize = 2
    q.push("b", N, 0.0)
    assert len(q) == 2


# ---------------------------------------------------------------- memory


def test_push_then_remove_100k_keeps_memory_small():
    q = PriorityRequestQueue(maxsize=10)
    keep = q.push("keep", L, 0.0)
    peak = 0
    for i in range(100_000):
        entry = q.push(i, i % 3, float(i))
        assert q.remove(entry)
        peak = max(peak, q._physical_size())
    assert peak <= 3
    assert len(q) == 1 and q.pop(0.0) is keep


def test_random_removals_keep_dead_at_most_live_per_level():
    rng = random.Random(7)
    q = PriorityRequestQueue(maxsize=100_000)
    entries = [q.push(i, rng.choice(PRIORITIES), 0.0) for i in range(20_000)]
    rng.shuffle(entries)
    for n, entry in enumerate(entries[:19_000], start=1):
        q.remove(entry)
        if n % 997 == 0:
            assert q._physical_size() <= 2 * len(q) + 3
    assert len(q) == 1000
    assert q._physical_size() <= 2 * 1000 + 3
    survivors = {e.item for e in entries[19_000:]}
    assert set(q.snapshot()) == survivors


# ---------------------------------------------------------------- model-based


class QueueMachine(RuleBasedStateMachine):
    """Against a plain list: pop returns the minimum of (effective priority, seq)."""

    queued = Bundle("queued")
    popped = Bundle("popped")

    def __init__(self) -> None:
        super().__init__()
        self.q = PriorityRequestQueue()
        self.aging = None
        self.model: list[QueueEntry] = []  # live entries
        self.now = 0.0
        self.counter = 0

    @initialize(maxsize=st.integers(1, 8), aging=st.sampled_from([None, 1.0, 2.5]))
    def start(self, maxsize, aging):
        self.q = PriorityRequestQueue(maxsize=maxsize, aging_interval=aging)
        self.aging = aging

    def effective(self, e: QueueEntry) -> int:
        if self.aging is None:
            return e.priority
        return max(0, e.priority - int((self.now - e.enqueued_at) // self.aging))

    @rule(target=queued, priority=st.sampled_from(PRIORITIES))
    def push(self, priority):
        self.counter += 1
        if len(self.model) >= self.q.maxsize:
            with pytest.raises(QueueFullError):
                self.q.push(self.counter, priority, self.now)
            return multiple()  # nothing new for the bundle
        entry = self.q.push(self.counter, priority, self.now)
        self.model.append(entry)
        return entry

    @rule(target=popped)
    def pop(self):
        got = self.q.pop(self.now)
        if not self.model:
            assert got is None
            return multiple()
        expected = min(self.model, key=lambda e: (self.effective(e), e.seq))
        assert got is expected
        self.model.remove(expected)
        return got

    @rule(entry=queued)
    def remove(self, entry):
        was_live = any(e is entry for e in self.model)
        assert self.q.remove(entry) is was_live
        if was_live:
            self.model = [e for e in self.model if e is not entry]

    @rule(entry=consumes(popped))
    def requeue(self, entry):
        if entry.alive:  # requeued already through another path
            return
        self.q.requeue(entry, self.now)
        self.model.append(entry)

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 2.5]))
    def advance(self, dt):
        self.now += dt

    @rule(shrink_to=st.integers(1, 8))
    def set_maxsize(self, shrink_to):
        self.q.maxsize = shrink_to

    @invariant()
    def agrees(self):
        assert len(self.q) == len(self.model)
        expected_counts = {p: sum(1 for e in self.model if e.priority == p) for p in PRIORITIES}
        assert self.q.counts() == expected_counts
        order = sorted(self.model, key=lambda e: (self.effective(e), e.seq))
        assert self.q.snapshot(self.now) == [e.item for e in order]
        assert self.q._physical_size() <= 2 * len(self.model) + 3
        assert all(e.alive for e in self.model)


TestQueueMachine = QueueMachine.TestCase
TestQueueMachine.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# ---------------------------------------------------------------- threads


def test_eight_pushers_one_popper_every_item_exactly_once(frequent_thread_switches):
    q = PriorityRequestQueue(maxsize=100_000)
    per_thread = 2_000
    pushers = 8
    total = pushers * per_thread
    popped: list = []
    done_pushing = threading.Event()

    def push_all(tid: int) -> None:
        for i in range(per_thread):
            q.push((tid, i), i % 3, float(i))

    def pop_until_all() -> None:
        while len(popped) < total:
            entry = q.pop(0.0)
            if entry is not None:
                popped.append(entry.item)
            elif done_pushing.is_set() and len(q) == 0:
                break

    beside(pop_until_all, [lambda t=t: push_all(t) for t in range(pushers)], done_pushing)
    assert len(popped) == total
    assert set(popped) == {(t, i) for t in range(pushers) for i in range(per_thread)}
    # FIFO per thread within a priority survives the interleaving.
    for tid in range(pushers):
        for prio in PRIORITIES:
            seq = [i for (t, i) in popped if t == tid and i % 3 == prio]
            assert seq == sorted(seq)
    assert len(q) == 0


def test_concurrent_pushes_never_exceed_the_bound(frequent_thread_switches):
    q = PriorityRequestQueue(maxsize=50)
    accepted = []
    refused = []
    barrier = threading.Barrier(8)

    def push_many(tid: int) -> None:
        barrier.wait()
        for i in range(100):
            try:
                q.push((tid, i), i % 3, 0.0)
                accepted.append((tid, i))
            except QueueFullError:
                refused.append((tid, i))

    threads = [threading.Thread(target=push_many, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(accepted) == 50 and len(refused) == 750
    assert len(q) == 50
    assert sorted(pop_all(q)) == sorted(accepted)


def test_lock_is_public_and_reentrant():
    q = PriorityRequestQueue(maxsize=2)
    with q.lock:
        if len(q) < q.maxsize:
            q.push("a", N, 0.0)
        with q.lock:
            assert len(q) == 1
