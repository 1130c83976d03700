"""After a fork, the locks a policy holds are free again in the child."""

from __future__ import annotations

import threading

from ipfs_accelerate_py.engine.forking import reinit_locks
from ipfs_accelerate_py.resilience.breaker import BreakerOptions, CircuitBreaker
from ipfs_accelerate_py.resilience.keys import KeyOptions, KeyPool
from ipfs_accelerate_py.resilience.priority_queue import PriorityRequestQueue
from ipfs_accelerate_py.resilience.stats import StatsCollector


def _held_elsewhere(lock) -> None:
    """Take ``lock`` in another thread and keep it, as a thread caught by a fork would."""
    taken = threading.Event()
    threading.Thread(target=lambda: (lock.acquire(), taken.set()), daemon=True).start()
    assert taken.wait(5.0)


def test_every_lock_inside_a_policy_is_freed():
    pool = KeyPool([KeyOptions("a"), KeyOptions("b")], "round-robin", breaker_options=BreakerOptions())
    queue, breaker, stats = PriorityRequestQueue(), CircuitBreaker(BreakerOptions()), StatsCollector()
    key_breaker = pool._keys["a"].breaker
    locks = [pool._lock, pool.strategy._lock, key_breaker._lock, queue.lock, breaker._lock, stats._lock,
             stats.latency._lock]
    for lock in locks:
        _held_elsewhere(lock)
    for policy in (pool, queue, breaker, stats):
        reinit_locks(policy)
    for lock in locks:
        assert lock.acquire(blocking=False), lock
        lock.release()


def test_objects_outside_the_policies_are_left_alone():
    foreign = threading.Lock()
    holder = {"lock": foreign}
    foreign.acquire()
    reinit_locks(holder)  # a dict is walked: its lock is freed
    assert foreign.acquire(blocking=False)
    other = threading.Lock()
    other.acquire()

    class NotAPolicy:
        def __init__(self) -> None:
            self.lock = other

    reinit_locks(NotAPolicy())
    assert not other.acquire(blocking=False)  # not ours to touch
