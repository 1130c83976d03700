"""``Priority``: the queue's three levels as a public enum.

``Priority.HIGH`` (0), ``Priority.NORMAL`` (1) and ``Priority.LOW`` (2) are
the priority queue's own constants (:mod:`ipfs_accelerate_py.resilience.priority_queue`),
as an :class:`~enum.IntEnum`: every call that takes a priority accepts one,
as well as the plain numbers and the words ``"high"``, ``"normal"``, ``"low"``.
"""

from __future__ import annotations

import enum
from typing import TypeAlias

from ..resilience.priority_queue import PRIORITY_HIGH, PRIORITY_LOW, PRIORITY_NORMAL

__all__ = ["Priority", "PriorityLike"]


class Priority(enum.IntEnum):
    """A request's place in the queue: HIGH goes before NORMAL before LOW."""

    HIGH = PRIORITY_HIGH
    NORMAL = PRIORITY_NORMAL
    LOW = PRIORITY_LOW


PriorityLike: TypeAlias = "Priority | int | str | None"
"""What a ``priority=`` argument takes: a :class:`Priority`, 0/1/2, a word
(any case), or None (the client's or the view's default)."""
