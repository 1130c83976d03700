"""Batch assembly for embeddings requests, and splitting the answer back.

Sans-IO: the engine tells the assembler what arrived and when (``now``,
monotonic seconds); the assembler answers which batches are ready to send.
It never sleeps, never reads a clock and never sends anything.

Which requests are combined
    Only alike ones: same endpoint, same model, same parameters other than
    ``input`` (``dimensions``, ``encoding_format``, ``user``, ...) and the
    same API key identity.  :func:`batch_key` turns those into one hashable
    key; the assembler keeps at most one open batch per key.

When a batch goes
    * when it holds the input limit exactly (ready at once, from ``add``);
    * ``batch_timeout`` seconds after its FIRST member arrived (``due``),
      or earlier: by the ``due_by`` of any member (the latest its caller can
      wait for company: the engine gives half the time to the request's
      deadline), so that no batch_timeout holds a request past its deadline;
    * before a member that would push it over the input or token limit:
      the open batch is closed and the member starts a new one;
    * at shutdown or flush (``drain``).

    A caller's list of inputs is never split.  A member that alone meets or
    exceeds the limit goes out at once as its own batch (the open batch for
    its key is left alone), and so does a member holding an input that is
    probably longer than the model accepts, so that if the provider refuses
    it, only that caller gets the error.

Limits
    The input limit of a batch is ``min(max_batch_size, limits.max_inputs)``;
    the token limit is ``limits.max_tokens`` over :func:`estimate_tokens`.
    ``limits_for(key)`` gives the provider's caps for a key
    (:data:`OPENAI_EMBEDDING_LIMITS` for OpenAI embeddings).

Settings
    ``max_batch_size`` and ``batch_timeout`` may be set at any time and take
    effect for the next ``add``: an open batch keeps the deadline it was
    opened with, and an open batch already over a lowered size limit is
    closed by the next member for its key (or by its deadline).

Splitting the answer
    :func:`split_by_index` hands each member its own results, re-indexed
    from 0; any count or index mismatch raises
    :class:`~ipfs_accelerate_py.resilience.errors.MalformedResponseError`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from .errors import InvalidInputError, MalformedResponseError
from .validation import require_int, require_number

__all__ = [
    "BYTES_PER_TOKEN",
    "Batch",
    "BatchAssembler",
    "BatchLimits",
    "BatchMember",
    "DEFAULT_BATCH_TIMEOUT",
    "DEFAULT_MAX_BATCH_SIZE",
    "NO_LIMITS",
    "OPENAI_EMBEDDING_LIMITS",
    "batch_key",
    "estimate_tokens",
    "normalize_inputs",
    "split_by_index",
]

DEFAULT_MAX_BATCH_SIZE = 10
DEFAULT_BATCH_TIMEOUT = 0.5

#: Bytes of UTF-8 per token assumed by :func:`estimate_tokens`.  Real BPE
#: tokenizers average about 4 bytes per token on English text, so 3 errs on
#: the side of smaller batches.
BYTES_PER_TOKEN = 3

# ---------------------------------------------------------------- limits


@dataclass(frozen=True)
class BatchLimits:
    """A provider's caps on one embeddings call; ``None`` means no cap.

    ``max_inputs``: inputs per call.  ``max_tokens``: estimated tokens per
    call, summed over inputs.  ``max_tokens_per_input``: estimated tokens of
    one input; a member holding a longer input is sent on its own.
    """

    max_inputs: int | None = None
    max_tokens: int | None = None
    max_tokens_per_input: int | None = None

    def __post_init__(self) -> None:
        require_int("max_inputs", self.max_inputs, 1, optional=True)
        require_int("max_tokens", self.max_tokens, 1, optional=True)
        require_int("max_tokens_per_input", self.max_tokens_per_input, 1, optional=True)


NO_LIMITS = BatchLimits()

#: OpenAI embeddings: 2048 inputs and 300,000 tokens per request; 8,192
#: tokens per input for text-embedding-3-* and text-embedding-ada-002.
OPENAI_EMBEDDING_LIMITS = BatchLimits(
    max_inputs=2048, max_tokens=300_000, max_tokens_per_input=8192
)


def _no_limits(_key: Hashable) -> BatchLimits:
    return NO_LIMITS


# ---------------------------------------------------------------- inputs and keys


def estimate_tokens(text: Any) -> int:
    """A cheap, conservative token count for one input.

    A string counts ``ceil(utf8_bytes / 3)``; a token array (list of ints)
    counts its length.  Anything else raises :class:`InvalidInputError`.
    """
    if isinstance(text, str):
        size = len(text) if text.isascii() else len(text.encode("utf-8"))
        return -(-size // BYTES_PER_TOKEN)
    if isinstance(text, list):
        return len(text)
    raise InvalidInputError(
        f"an embeddings input must be a string or a token array, got {type(text).__name__}"
    )


def batch_key(
    endpoint: str, model: str, params: dict[str, Any] | None, key_id: str | None
) -> tuple[Any, ...]:
    """The hashable identity of requests that may share a batch.

    ``params`` are the request's parameters; ``input`` is left out and the
    rest is written as canonical JSON (sorted keys), so two requests differ
    exactly when a parameter the provider sees differs.  A value JSON cannot
    write is compared by ``repr`` (never wrongly equal).  ``key_id`` names the
    API key (a caller-given name or a fingerprint, never the secret).
    """
    rest = {k: v for k, v in (params or {}).items() if k != "input"}
    canonical = json.dumps(
        rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr
    )
    return (endpoint, model, canonical, key_id)


_INPUT_EXPECTED = (
    "a non-empty string, a non-empty list of non-empty strings, "
    "or token arrays (non-empty lists of ints)"
)


def _is_token_array(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(t, int) and not isinstance(t, bool) for t in value)
    )


def _refuse(got: str) -> InvalidInputError:
    return InvalidInputError(f"embeddings 'input' must be {_INPUT_EXPECTED}; got {got}")


def normalize_inputs(value: Any) -> list[Any]:
    """The request's ``input`` as a list with one entry per embedding.

    ``"text"`` -> ``["text"]``; a list of strings -> the same strings (a new
    list); one token array ``[1, 2]`` -> ``[[1, 2]]``; a list of token arrays
    -> the same arrays.  An empty string, empty list, empty token array or
    any other type is refused with :class:`InvalidInputError` saying what is
    expected, so one caller's bad input never fails a whole batch.
    """
    if isinstance(value, str):
        if not value:
            raise _refuse("an empty string")
        return [value]
    if not isinstance(value, (list, tuple)):
        raise _refuse(type(value).__name__)
    if not value:
        raise _refuse("an empty list")
    items = list(value)
    if _is_token_array(items):
        return [items]
    for position, entry in enumerate(items):
        if isinstance(entry, str):
            if not entry:
                raise _refuse(f"an empty string at position {position}")
        elif not _is_token_array(entry):
            raise _refuse(f"{_describe(entry)} at position {position}")
    return items


def _describe(value: Any) -> str:
    if isinstance(value, list) and not value:
        return "an empty list"
    if isinstance(value, list):
        return "a list that is not a token array"
    return type(value).__name__


# ---------------------------------------------------------------- members and batches


class BatchMember:
    """One caller's request inside a batch; ``item`` is the engine's, opaque here."""

    __slots__ = ("item", "inputs", "n_inputs", "n_tokens", "added_at", "_batch")

    def __init__(self, item: Any, inputs: list[Any], added_at: float) -> None:
        if not isinstance(inputs, list) or not inputs:
            raise InvalidInputError(
                f"a batch member needs a non-empty list of inputs, got {inputs!r:.80}"
            )
        self.item = item
        self.inputs = inputs
        self.n_inputs = len(inputs)
        self.n_tokens = sum(estimate_tokens(text) for text in inputs)
        self.added_at = added_at
        self._batch: Batch | None = None

    def __repr__(self) -> str:
        return f"BatchMember(n_inputs={self.n_inputs}, n_tokens={self.n_tokens}, added_at={self.added_at})"


class Batch:
    """Alike members sent as one call; their inputs go in member order."""

    __slots__ = ("key", "members", "n_inputs", "n_tokens", "opened_at", "due_at")

    def __init__(self, key: Hashable, opened_at: float, due_at: float) -> None:
        self.key = key
        self.members: list[BatchMember] = []
        self.n_inputs = 0
        self.n_tokens = 0
        self.opened_at = opened_at
        self.due_at = due_at

    def inputs(self) -> list[Any]:
        """Every member's inputs, concatenated in member order."""
        out: list[Any] = []
        for member in self.members:
            out.extend(member.inputs)
        return out

    def offsets(self) -> list[tuple[int, int]]:
        """``(start, count)`` of each member's inputs within :meth:`inputs`."""
        out = []
        start = 0
        for member in self.members:
            out.append((start, member.n_inputs))
            start += member.n_inputs
        return out

    def _append(self, member: BatchMember) -> None:
        self.members.append(member)
        self.n_inputs += member.n_inputs
        self.n_tokens += member.n_tokens
        member._batch = self

    def _discard(self, member: BatchMember) -> None:
        self.members.remove(member)
        self.n_inputs -= member.n_inputs
        self.n_tokens -= member.n_tokens
        member._batch = None

    def __repr__(self) -> str:  # the key is left out: it names an API key
        return (
            f"Batch(members={len(self.members)}, n_inputs={self.n_inputs}, "
            f"n_tokens={self.n_tokens}, opened_at={self.opened_at}, due_at={self.due_at})"
        )


# ---------------------------------------------------------------- the assembler


class BatchAssembler:
    """Coalesces alike requests into batches; decides, never waits.

    Not thread-safe, and needs no lock: it is used only from the engine's
    event loop, which is the one thread that calls ``add``, ``due``,
    ``remove`` and ``drain``.  ``limits_for(key)`` is called on every ``add``
    and must be cheap (a dict lookup).
    """

    def __init__(
        self,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        batch_timeout: float = DEFAULT_BATCH_TIMEOUT,
        limits_for: Callable[[Hashable], BatchLimits] | None = None,
    ) -> None:
        self._max_batch_size = require_int("max_batch_size", max_batch_size, 1)
        self._batch_timeout = require_number("batch_timeout", batch_timeout)
        self._limits_for = limits_for or _no_limits
        self._open: dict[Hashable, Batch] = {}  # in opening order

    @property
    def max_batch_size(self) -> int:
        return self._max_batch_size

    @max_batch_size.setter
    def max_batch_size(self, value: int) -> None:
        self._max_batch_size = require_int("max_batch_size", value, 1)

    @property
    def batch_timeout(self) -> float:
        return self._batch_timeout

    @batch_timeout.setter
    def batch_timeout(self, value: float) -> None:
        self._batch_timeout = require_number("batch_timeout", value)

    def input_limit(self, key: Hashable) -> int:
        """Inputs per batch for ``key``: ``min(max_batch_size, provider cap)``."""
        return self._input_limit(self._limits_for(key))

    def _input_limit(self, limits: BatchLimits) -> int:
        cap = limits.max_inputs
        return self._max_batch_size if cap is None else min(self._max_batch_size, cap)

    def add(
        self, key: Hashable, item: Any, inputs: list[Any], now: float, due_by: float | None = None
    ) -> tuple[BatchMember, list[Batch]]:
        """Add one caller's request; return its member and the batches ready now.
        ``due_by``: the batch it joins goes no later than that (None: no bound)."""
        member = BatchMember(item, inputs, now)
        limits = self._limits_for(key)
        max_inputs = self._input_limit(limits)
        max_tokens = limits.max_tokens
        if self._goes_alone(member, max_inputs, limits):
            alone = Batch(key, now, now)
            alone._append(member)
            return member, [alone]
        ready = []
        batch = self._open.get(key)
        if batch is not None and _overflows(batch, member, max_inputs, max_tokens):
            ready.append(self._open.pop(key))
            batch = None
        if batch is None:
            batch = self._open[key] = Batch(key, now, now + self._batch_timeout)
        if due_by is not None and due_by < batch.due_at:
            batch.due_at = due_by
        batch._append(member)
        if batch.n_inputs >= max_inputs or (
            max_tokens is not None and batch.n_tokens >= max_tokens
        ):
            ready.append(self._open.pop(key))
        return member, ready

    @staticmethod
    def _goes_alone(member: BatchMember, max_inputs: int, limits: BatchLimits) -> bool:
        if member.n_inputs >= max_inputs:
            return True
        if limits.max_tokens is not None and member.n_tokens >= limits.max_tokens:
            return True
        per_input = limits.max_tokens_per_input
        if per_input is not None and member.n_tokens > per_input:
            return any(estimate_tokens(text) > per_input for text in member.inputs)
        return False

    def due(self, now: float) -> list[Batch]:
        """Remove and return the open batches whose deadline is ``<= now``."""
        ready = [batch for batch in self._open.values() if batch.due_at <= now]
        for batch in ready:
            del self._open[batch.key]
        return ready

    def next_due_at(self) -> float | None:
        """The earliest deadline over open batches, or None when none is open."""
        return min((batch.due_at for batch in self._open.values()), default=None)

    def remove(self, member: BatchMember) -> bool:
        """Take a cancelled caller out of its open batch.

        Returns False when the member is not waiting in an open batch here
        (already sent, already removed).  A batch left empty disappears.
        """
        batch = member._batch
        if batch is None or self._open.get(batch.key) is not batch:
            return False
        batch._discard(member)
        if not batch.members:
            del self._open[batch.key]
        return True

    def drain(self) -> list[Batch]:
        """Remove and return every open batch, oldest first (shutdown, flush)."""
        batches = list(self._open.values())
        self._open.clear()
        return batches

    def pending_members(self) -> int:
        return sum(len(batch.members) for batch in self._open.values())

    def pending_inputs(self) -> int:
        return sum(batch.n_inputs for batch in self._open.values())

    def __len__(self) -> int:
        """Open batches."""
        return len(self._open)

    def __repr__(self) -> str:
        return (
            f"BatchAssembler(max_batch_size={self._max_batch_size}, batch_timeout={self._batch_timeout}, "
            f"open_batches={len(self._open)}, pending_inputs={self.pending_inputs()})"
        )


def _overflows(batch: Batch, member: BatchMember, max_inputs: int, max_tokens: int | None) -> bool:
    if batch.n_inputs + member.n_inputs > max_inputs:
        return True
    return max_tokens is not None and batch.n_tokens + member.n_tokens > max_tokens


# ---------------------------------------------------------------- splitting the answer


def _index_field(item: Any) -> int:
    index: int = item["index"]
    return index


def _dict_with_index(item: Any, position: int) -> Any:
    if isinstance(item, dict) and "index" in item:
        copy = dict(item)
        copy["index"] = position
        return copy
    return item


def split_by_index(
    items: Any,
    counts: Iterable[int],
    index_of: Callable[[Any], int] = _index_field,
    *,
    with_index: Callable[[Any, int], Any] = _dict_with_index,
) -> list[list[Any]]:
    """Each member's own results, in its own order, re-indexed from 0.

    ``items``: the response's per-input results, in any order, each giving
    its position in the batch through ``index_of``.  ``counts``: inputs per
    member, in batch order.  ``with_index(item, position)`` gives the item
    as the member sees it; by default a dict with ``"index"`` is copied with
    the member-local position (the response is not modified).

    Raises :class:`MalformedResponseError`, saying what was expected and what
    came, when an index is unreadable, not an integer, out of range or
    repeated, or when the number of results is not the sum of ``counts``.
    """
    counts = list(counts)
    if any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in counts):
        raise ValueError(f"counts must be integers >= 0, got {counts!r:.200}")
    total = sum(counts)
    if not isinstance(items, (list, tuple)):
        raise _malformed(f"expected a list of {total} results, got {type(items).__name__}")
    if len(items) > total:
        raise _malformed(f"expected {total} results (one per input sent), got {len(items)}")
    by_index = _place(items, total, index_of)
    missing = [i for i, item in enumerate(by_index) if item is _ABSENT]
    if missing:
        raise _malformed(
            f"expected {total} results (one per input sent), got {len(items)}; missing indices {_first(missing)}"
        )
    out = []
    start = 0
    for count in counts:
        out.append([with_index(by_index[start + k], k) for k in range(count)])
        start += count
    return out


_ABSENT = object()


def _place(items: Any, total: int, index_of: Callable[[Any], int]) -> list[Any]:
    """The items laid out by their batch position; gaps hold ``_ABSENT``."""
    by_index: list[Any] = [_ABSENT] * total
    for n, item in enumerate(items):
        index = _read_index(item, n, index_of)
        if not 0 <= index < total:
            raise _malformed(
                f"result #{n} has index {index}, expected 0..{total - 1} ({total} inputs sent)"
            )
        if by_index[index] is not _ABSENT:
            raise _malformed(
                f"index {index} appears twice (result #{n}); expected each of 0..{total - 1} once"
            )
        by_index[index] = item
    return by_index


def _read_index(item: Any, n: int, index_of: Callable[[Any], int]) -> int:
    try:
        index = index_of(item)
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise _malformed(
            f"result #{n} has no readable index ({type(exc).__name__}: {exc})"
        ) from None
    if isinstance(index, bool) or not isinstance(index, int):
        raise _malformed(f"result #{n} has index {index!r:.40}, expected an integer")
    return index


def _malformed(message: str) -> MalformedResponseError:
    return MalformedResponseError(
        f"batched embeddings response does not match the batch: {message}"
    )


def _first(values: list[Any], shown: int = 5) -> str:
    text = ", ".join(str(v) for v in values[:shown])
    return text + (f" and {len(values) - shown} more" if len(values) > shown else "")
