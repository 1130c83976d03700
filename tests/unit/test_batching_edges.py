"""Batching at its edges: a member over the token cap, the batch key's canonical form, the
result splitter's inputs and messages.  Sans-IO, fake times, no sleeping."""

from __future__ import annotations

import json

import pytest

from ipfs_accelerate_py.resilience.batching import (
    BatchAssembler,
    BatchLimits,
    BatchMember,
    batch_key,
    estimate_tokens,
    split_by_index,
)
from ipfs_accelerate_py.resilience.errors import (
    InvalidInputError,
    MalformedResponseError,
    SettingError,
)


def test_a_member_at_the_token_cap_goes_alone_and_the_open_batch_keeps_waiting():
    limits = BatchLimits(max_tokens=10)
    asm = BatchAssembler(max_batch_size=100, batch_timeout=1.0, limits_for=lambda _k: limits)
    k = batch_key("embeddings", "m", {"model": "m"}, "k1")
    asm.add(k, "small", ["abc"], now=0.0)  # 1 token, opens a batch due at 1.0
    _, ready = asm.add(k, "full", ["x" * 30], now=0.5)  # exactly 10 tokens: the cap
    assert [[m.item for m in b.members] for b in ready] == [["full"]]
    assert asm.pending_members() == 1 and asm.next_due_at() == 1.0  # "small" was not flushed


def test_an_input_exactly_at_the_per_input_cap_does_not_go_alone():
    limits = BatchLimits(max_tokens_per_input=2, max_tokens=100)
    asm = BatchAssembler(max_batch_size=10, batch_timeout=1.0, limits_for=lambda _k: limits)
    k = batch_key("embeddings", "m", {"model": "m"}, None)
    assert asm.add(k, "a", ["abcdef"], now=0.0)[1] == []  # 2 tokens: at the cap, batched
    _, ready = asm.add(k, "b", ["abcdefg"], now=0.0)  # 3 tokens: over it, sent on its own
    assert [[m.item for m in b.members] for b in ready] == [["b"]]
    assert asm.pending_members() == 1


def test_a_per_input_cap_of_one_token_is_valid():
    assert BatchLimits(max_tokens_per_input=1).max_tokens_per_input == 1
    with pytest.raises(SettingError, match="max_tokens_per_input"):
        BatchLimits(max_tokens_per_input=0)


def test_the_batch_key_carries_the_parameters_as_canonical_compact_json():
    key = batch_key("embeddings", "m", {"input": "x", "user": "é", "dimensions": 8}, "k1")
    assert key == ("embeddings", "m", '{"dimensions":8,"user":"é"}', "k1")
    assert json.loads(key[2]) == {"dimensions": 8, "user": "é"}


def test_member_repr_shows_its_size_and_time_not_its_inputs():
    member = BatchMember("item", ["secret-looking text"], added_at=2.5)
    assert repr(member) == "BatchMember(n_inputs=1, n_tokens=7, added_at=2.5)"


def test_estimate_tokens_names_the_type_it_refuses():
    with pytest.raises(InvalidInputError) as info:
        estimate_tokens(3.5)
    assert str(info.value) == "an embeddings input must be a string or a token array, got float"


def test_split_by_index_takes_counts_from_any_iterable():
    data = [{"index": 1, "v": "b"}, {"index": 0, "v": "a"}, {"index": 2, "v": "c"}]
    parts = split_by_index(data, iter([2, 1]))
    assert [[d["v"] for d in part] for part in parts] == [["a", "b"], ["c"]]


def test_split_by_index_leaves_items_without_an_index_field_as_they_are():
    data = [{"i": 1, "v": "b"}, {"i": 0, "v": "a"}]
    parts = split_by_index(data, [1, 1], index_of=lambda d: d["i"])
    assert parts == [[{"i": 0, "v": "a"}], [{"i": 1, "v": "b"}]]
    assert all("index" not in d for part in parts for d in part)


@pytest.mark.parametrize(
    ("missing", "shown"),
    [
        (5, "missing indices 0, 1, 2, 3, 4"),
        (6, "missing indices 0, 1, 2, 3, 4 and 1 more"),
        (8, "missing indices 0, 1, 2, 3, 4 and 3 more"),
    ],
)
def test_split_by_index_names_the_first_five_missing_indices(missing, shown):
    data = [{"index": i} for i in range(missing, 10)]
    with pytest.raises(MalformedResponseError) as info:
        split_by_index(data, [10])
    assert str(info.value).endswith(shown)
