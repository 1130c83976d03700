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
    pool = KeyPool(
        [KeyOptions("a"), KeyOptions("b")], "round-robin", breaker_options=BreakerOptions()
    )
    queue, breaker, stats = (
        PriorityRequestQueue(),
        CircuitBreaker(BreakerOptions()),
        StatsCollector(),
    )
    key_breaker = pool._keys["a"].breaker
    named = [
        pool._lock,
        pool.strategy._lock,
        key_breaker._lock,
        queue.lock,
        breaker._lock,
        stats._lock,
        stats.latency._lock,
    ]
    locks = list({id(lock): lock for lock in named}.values())  # a histogram shares its collector's
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


def test_a_lock_held_by_another_thread_at_the_fork_does_not_hang_the_childs_first_await():
    import asyncio
    import os
    import threading

    from ipfs_accelerate_py.engine import future

    held, release = threading.Event(), threading.Event()

    def holder() -> None:  # another thread holds the loops' inbox lock while the main thread forks
        with future._inboxes_lock:
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(10)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first use of the inbox must not wait for the parent's thread
        try:
            import signal

            signal.alarm(5)  # a hang ends the child, and the parent sees no answer
            future._inbox_of(asyncio.new_event_loop())
            os.write(write, b"ok")
        finally:
            os._exit(0)
    release.set()
    thread.join(10)
    os.close(write)
    answer = os.read(read, 2)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"ok"
