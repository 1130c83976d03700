"""A set of job ids in a few bytes each, so memory stays flat as files grow.

An id is kept as a 64-bit digest (BLAKE2b) in an open-addressing table of
unsigned 64-bit slots, at most half full: 8 to 16 bytes an id, against some
80 for a Python set of strings.  Two different ids share a digest with
probability 2**-64 per pair (about 3 in a million for ten million ids); such a
pair would be taken for one id.
"""

from __future__ import annotations

from array import array
from hashlib import blake2b

__all__ = ["IdSet"]

_INITIAL_SLOTS = 1024  # a power of two


def _digest(job_id: str) -> int:
    value = int.from_bytes(
        blake2b(job_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little"
    )
    return value or 1  # 0 marks an empty slot


class IdSet:
    __slots__ = ("_slots", "_mask", "_count")

    def __init__(self, expected: int = 0) -> None:
        """``expected``: how many ids are coming, if known (no regrowth on the way)."""
        size = _INITIAL_SLOTS
        while size < 2 * expected:
            size *= 2
        self._slots = array("Q", bytes(8 * size))
        self._mask = size - 1
        self._count = 0

    def add(self, job_id: str) -> bool:
        """Add ``job_id``; True if it was not there yet."""
        digest = _digest(job_id)
        if not self._insert(digest):
            return False
        self._count += 1
        if 2 * self._count > len(self._slots):
            self._grow()
        return True

    def __contains__(self, job_id: object) -> bool:
        if not isinstance(job_id, str):
            return False
        digest = _digest(job_id)
        slots, mask = self._slots, self._mask
        index = digest & mask
        while True:
            value = slots[index]
            if value == 0:
                return False
            if value == digest:
                return True
            index = (index + 1) & mask

    def __len__(self) -> int:
        return self._count

    def _insert(self, digest: int) -> bool:
        slots, mask = self._slots, self._mask
        index = digest & mask
        while True:
            value = slots[index]
            if value == 0:
                slots[index] = digest
                return True
            if value == digest:
                return False
            index = (index + 1) & mask

    def _grow(self) -> None:
        old = self._slots
        self._slots = array("Q", bytes(16 * len(old)))
        self._mask = len(self._slots) - 1
        for digest in old:
            if digest:
                self._insert(digest)
