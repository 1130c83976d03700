"""PriorityRequestQueue's lazy deletion, exactly: which entries a level's heap still holds,
how many of them are dead, and when it compacts, checked against a plain model after every
operation of seeded random runs; plus the entry's and the queue's own small contracts."""

from __future__ import annotations

import random

import pytest

from ipfs_accelerate_py.resilience.errors import QueueFullError, SettingError
from ipfs_accelerate_py.resilience.priority_queue import (
    PRIORITIES,
    PRIORITY_HIGH,
    PRIORITY_LOW,
    PRIORITY_NORMAL,
    PriorityRequestQueue,
    QueueEntry,
)


class LevelModel:
    """What one level's heap holds: ``held`` (seq -> entry, dead ones too) and the live seqs.
    The rules: the top's dead entries are dropped when the head is looked at; a remove that
    leaves more dead than live entries compacts the heap to the live ones."""

    def __init__(self) -> None:
        self.held: dict[int, QueueEntry] = {}
        self.live: set[int] = set()

    def head(self) -> int | None:
        while self.held and min(self.held) not in self.live:
            del self.held[min(self.held)]
        return min(self.held) if self.held else None


class Model:
    def __init__(self) -> None:
        self.levels = {p: LevelModel() for p in PRIORITIES}

    def push(self, entry: QueueEntry) -> None:
        level = self.levels[entry.priority]
        level.held[entry.seq] = entry
        level.live.add(entry.seq)

    def pop(self) -> int | None:
        heads = [(p, level.head()) for p, level in self.levels.items()]
        found = [(p, seq) for p, seq in heads if seq is not None]
        if not found:
            return None
        p, seq = min(found)
        level = self.levels[p]
        del level.held[seq]
        level.live.discard(seq)
        return seq

    def remove(self, entry: QueueEntry) -> bool:
        level = self.levels[entry.priority]
        if entry.seq not in level.live:
            return False
        level.live.discard(entry.seq)
        if len(level.held) - len(level.live) > len(level.live):
            level.held = {s: e for s, e in level.held.items() if s in level.live}
        return True

    def requeue(self, entry: QueueEntry) -> None:
        level = self.levels[entry.priority]
        level.held[entry.seq] = entry  # revived in place, or pushed back
        level.live.add(entry.seq)

    def drain(self) -> list[int]:
        out = sorted(
            (p, s) for p, level in self.levels.items() for s in level.held if s in level.live
        )
        for level in self.levels.values():
            level.held, level.live = {}, set()
        return [s for _, s in out]

    def look_at_heads(self) -> None:
        for level in self.levels.values():
            level.head()


def check(q: PriorityRequestQueue, model: Model) -> None:
    for p, level in model.levels.items():
        real = q._levels[p]
        assert real.live == len(level.live), p
        assert len(real.heap) == len(level.held), p
        assert real.dead == len(level.held) - len(level.live), p
        assert {seq for seq, _ in real.heap} == set(level.held), p
    assert q.counts() == {p: len(level.live) for p, level in model.levels.items()}
    assert len(q) == sum(len(level.live) for level in model.levels.values())
    assert q._physical_size() == sum(len(level.held) for level in model.levels.values())
    # the count that tells pop whether any level has dead entries to drop
    assert q._dead == sum(len(level.held) - len(level.live) for level in model.levels.values())


@pytest.mark.parametrize("seed", range(6))
def test_heaps_hold_exactly_what_lazy_deletion_says(seed):
    rng = random.Random(seed)
    q = PriorityRequestQueue(maxsize=40)
    model = Model()
    queued: list[QueueEntry] = []
    popped: list[QueueEntry] = []
    for _ in range(400):
        op = rng.choice(["push", "push", "push", "pop", "remove", "remove", "requeue", "look"])
        if rng.random() < 0.01:
            op = "drain"
        if op == "push" and len(q) < q.maxsize:
            entry = q.push(object(), rng.choice(PRIORITIES), now=0.0)
            model.push(entry)
            queued.append(entry)
        elif op == "pop":
            entry = q.pop(0.0)
            assert (entry.seq if entry else None) == model.pop()
            if entry is not None:
                assert not entry.alive
                popped.append(entry)
        elif op == "remove" and queued:
            entry = rng.choice(queued)
            assert q.remove(entry) is model.remove(entry)
            popped.append(entry)
        elif op == "requeue" and popped:
            entry = popped.pop(rng.randrange(len(popped)))
            if not entry.alive:
                q.requeue(entry, now=0.0)
                model.requeue(entry)
                assert entry.alive
        elif op == "look":
            q.oldest_enqueued_at()
            model.look_at_heads()
        elif op == "drain":
            assert [e.seq for e in q.drain()] == model.drain()
        queued = [e for e in queued if e.alive]
        check(q, model)


def test_a_requeued_entry_revived_in_its_heap_counts_as_live_again():
    q = PriorityRequestQueue(maxsize=10)
    a, b, c = (q.push(name, PRIORITY_NORMAL, now=0.0) for name in "abc")
    assert q.remove(b)  # 1 dead, 2 live: no compaction, b stays in the heap
    assert (q._levels[PRIORITY_NORMAL].dead, q._physical_size()) == (1, 3)
    q.requeue(b, now=5.0)
    assert (q._levels[PRIORITY_NORMAL].dead, q._physical_size(), len(q)) == (0, 3, 3)
    assert [q.pop(0.0).item for _ in range(3)] == ["a", "b", "c"]
    assert q._physical_size() == 0 and q.pop(0.0) is None


def test_drain_empties_the_heaps_dead_entries_included():
    q = PriorityRequestQueue(maxsize=10)
    entries = [q.push(i, PRIORITY_LOW, now=0.0) for i in range(4)]
    q.remove(entries[1])
    assert [e.item for e in q.drain()] == [0, 2, 3]
    assert (q._physical_size(), len(q), q._levels[PRIORITY_LOW].dead) == (0, 0, 0)
    assert q.counts() == {PRIORITY_HIGH: 0, PRIORITY_NORMAL: 0, PRIORITY_LOW: 0}


def test_snapshot_is_in_pop_order_after_a_requeue():
    q = PriorityRequestQueue(maxsize=10)
    for name in "abc":
        q.push(name, PRIORITY_NORMAL, now=0.0)
    q.push("h", PRIORITY_HIGH, now=0.0)
    h, a = q.pop(0.0), q.pop(0.0)
    q.requeue(a, now=1.0)  # back into a heap whose list is no longer in order
    q.requeue(h, now=1.0)
    assert q.snapshot() == ["h", "a", "b", "c"]
    assert q.snapshot(now=1.0) == ["h", "a", "b", "c"]
    assert [q.pop(0.0).item for _ in range(4)] == ["h", "a", "b", "c"]


def test_sequence_numbers_start_at_zero_and_count_up():
    q = PriorityRequestQueue(maxsize=10)
    assert [q.push(i, PRIORITY_LOW, now=0.0).seq for i in range(3)] == [0, 1, 2]


def test_a_new_entry_is_alive_and_orders_by_seq():
    entry, later = QueueEntry("x", PRIORITY_NORMAL, 3, 0.0), QueueEntry("y", 1, 4, 0.0)
    assert entry.alive is True
    assert entry < later and not later < entry and not entry < entry


def test_entry_and_queue_reprs():
    q = PriorityRequestQueue(maxsize=5, aging_interval=2.0)
    entry = q.push("secret item", PRIORITY_HIGH, now=0.0)
    assert repr(entry) == "QueueEntry(seq=0, priority=HIGH, queued)"
    assert repr(q) == (
        "PriorityRequestQueue(len=1, maxsize=5, aging_interval=2.0, counts={0: 1, 1: 0, 2: 0})"
    )
    q.pop(0.0)
    assert repr(entry) == "QueueEntry(seq=0, priority=HIGH, out)"
    assert repr(QueueEntry("x", 7, 1, 0.0)) == "QueueEntry(seq=1, priority=7, queued)"


def test_requeue_refusals_say_why():
    q, other = PriorityRequestQueue(maxsize=5), PriorityRequestQueue(maxsize=5)
    entry = q.push("x", PRIORITY_NORMAL, now=0.0)
    with pytest.raises(ValueError, match=r"QueueEntry\(seq=0, .*\) is still queued"):
        q.requeue(entry, now=0.0)
    q.pop(0.0)
    with pytest.raises(ValueError, match=r"QueueEntry\(seq=0, .*\) belongs to another queue"):
        other.requeue(entry, now=0.0)


def test_maxsize_setter_names_the_setting():
    q = PriorityRequestQueue(maxsize=5)
    with pytest.raises(SettingError, match="queue_size"):
        q.maxsize = 0
    assert q.maxsize == 5


def test_aging_ignores_a_now_from_before_the_entry_was_queued():
    q = PriorityRequestQueue(maxsize=10, aging_interval=100.0)
    q.push("low", PRIORITY_LOW, now=0.0)
    q.push("normal", PRIORITY_NORMAL, now=10.0)
    # at 5.0 the NORMAL entry has "waited" -5 s: it keeps its level, it does not sink below LOW
    assert q.snapshot(now=5.0) == ["normal", "low"]
    assert q.pop(5.0).item == "normal"


def test_aging_ignores_even_a_fraction_of_a_second_from_the_past():
    q = PriorityRequestQueue(maxsize=10, aging_interval=100.0)
    q.push("low", PRIORITY_LOW, now=0.0)
    q.push("normal", PRIORITY_NORMAL, now=10.0)
    assert q.snapshot(now=9.5) == ["normal", "low"]


def test_ensure_room_counts_requests_held_elsewhere():
    q = PriorityRequestQueue(maxsize=3)
    q.push("a", PRIORITY_NORMAL, now=0.0)
    q.ensure_room(held_elsewhere=1)  # 1 queued + 1 admitted elsewhere: one more fits
    with pytest.raises(QueueFullError, match=r"Request queue is full \(3 of 3\)"):
        q.ensure_room(held_elsewhere=2)
