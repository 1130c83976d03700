"""Batch assembly for embeddings: sans-IO, driven by a FakeClock, no sleeping."""

from __future__ import annotations

import ast
import math
import pathlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipfs_accelerate_py.resilience import batching
from ipfs_accelerate_py.resilience.batching import (
    DEFAULT_BATCH_TIMEOUT,
    DEFAULT_MAX_BATCH_SIZE,
    OPENAI_EMBEDDING_LIMITS,
    Batch,
    BatchAssembler,
    BatchLimits,
    batch_key,
    estimate_tokens,
    normalize_inputs,
    split_by_index,
)
from ipfs_accelerate_py.resilience.clock import FakeClock
from ipfs_accelerate_py.resilience.errors import (
    InvalidInputError,
    MalformedResponseError,
    SettingError,
)

EMB = "embeddings"
SMALL = "text-embedding-3-small"


def key(model=SMALL, key_id="k1", **params):
    return batch_key(EMB, model, {"model": model, "input": "ignored", **params}, key_id)


def texts(n, tag="t"):
    return [f"{tag}{i}" for i in range(n)]


def member_items(batch: Batch):
    return [m.item for m in batch.members]


# ---------------------------------------------------------------- keys


def test_batch_key_ignores_input_and_param_order():
    a = batch_key(EMB, SMALL, {"input": "x", "dimensions": 256, "user": "u"}, "k1")
    b = batch_key(EMB, SMALL, {"user": "u", "dimensions": 256, "input": ["y", "z"]}, "k1")
    assert a == b
    assert hash(a) == hash(b)


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(dict(model="text-embedding-3-large"), id="model"),
        pytest.param(dict(dimensions=512), id="dimensions"),
        pytest.param(dict(encoding_format="base64"), id="encoding_format"),
        pytest.param(dict(user="someone-else"), id="user"),
        pytest.param(dict(key_id="k2"), id="api-key"),
    ],
)
def test_unlike_requests_go_to_different_batches(other):
    base = dict(model=SMALL, key_id="k1", dimensions=256, encoding_format="float", user="u")
    asm = BatchAssembler(max_batch_size=10, batch_timeout=0.5)
    asm.add(key(**base), "a", ["a"], now=0.0)
    asm.add(key(**{**base, **other}), "b", ["b"], now=0.0)
    batches = asm.drain()
    assert [member_items(b) for b in batches] == [["a"], ["b"]]


def test_alike_requests_share_a_batch():
    asm = BatchAssembler(max_batch_size=10, batch_timeout=0.5)
    for i, name in enumerate("abc"):
        _, ready = asm.add(key(dimensions=256), name, [name], now=float(i) / 10)
        assert ready == []
    (batch,) = asm.drain()
    assert member_items(batch) == ["a", "b", "c"]
    assert batch.inputs() == ["a", "b", "c"]


def test_batch_key_with_unserialisable_value_is_still_hashable():
    marker = object()
    assert batch_key(EMB, SMALL, {"x": marker}, None) == batch_key(EMB, SMALL, {"x": marker}, None)
    assert batch_key(EMB, SMALL, {"x": marker}, None) != batch_key(
        EMB, SMALL, {"x": object()}, None
    )
    assert batch_key(EMB, SMALL, None, None) == batch_key(EMB, SMALL, {"input": "a"}, None)


# ---------------------------------------------------------------- size and time


def test_defaults():
    asm = BatchAssembler()
    assert (
        (asm.max_batch_size, asm.batch_timeout)
        == (DEFAULT_MAX_BATCH_SIZE, DEFAULT_BATCH_TIMEOUT)
        == (10, 0.5)
    )


def test_filling_to_max_batch_size_is_ready_at_once():
    clock = FakeClock()
    asm = BatchAssembler(max_batch_size=3, batch_timeout=5.0)
    k = key()
    assert asm.add(k, "a", ["a"], clock.now())[1] == []
    assert asm.add(k, "b", ["b1"], clock.now())[1] == []
    _, ready = asm.add(k, "c", ["c"], clock.now())
    assert [member_items(b) for b in ready] == [["a", "b", "c"]]
    assert ready[0].n_inputs == 3
    assert asm.pending_members() == 0 and asm.next_due_at() is None
    # the next request opens a new batch
    asm.add(k, "d", ["d"], clock.now())
    assert asm.pending_members() == 1


def test_a_members_due_by_bounds_a_huge_batch_timeout():
    clock = FakeClock(start=1000.0)
    asm = BatchAssembler(max_batch_size=10, batch_timeout=1e300)
    k = key()
    asm.add(k, "no deadline", ["a"], clock.now())
    assert asm.next_due_at() == 1000.0 + 1e300
    clock.advance(1.0)
    asm.add(k, "in a hurry", ["b"], clock.now(), due_by=1003.0)  # pulls the whole batch earlier
    asm.add(k, "less so", ["c"], clock.now(), due_by=1009.0)  # a later bound moves nothing
    assert asm.next_due_at() == 1003.0
    clock.advance(1.9999)
    assert asm.due(clock.now()) == []
    clock.advance(0.0001)
    assert [member_items(b) for b in asm.due(clock.now())] == [
        ["no deadline", "in a hurry", "less so"]
    ]
    asm.add(k, "d", ["d"], clock.now(), due_by=clock.now() - 1.0)  # already late: due at once
    assert len(asm.due(clock.now())) == 1


def test_batch_is_due_exactly_at_opened_at_plus_timeout_not_before():
    clock = FakeClock(start=1000.0)
    asm = BatchAssembler(max_batch_size=10, batch_timeout=0.5)
    k = key()
    asm.add(k, "first", ["a"], clock.now())
    clock.advance(0.25)
    asm.add(k, "second", ["b"], clock.now())  # a later member does not move the deadline
    assert asm.next_due_at() == 1000.5
    clock.advance(0.2499)
    assert asm.due(clock.now()) == []
    clock.advance(0.0001)
    assert clock.now() == pytest.approx(1000.5)
    (batch,) = asm.due(1000.5)
    assert member_items(batch) == ["first", "second"]
    assert batch.opened_at == 1000.0
    assert asm.due(1000.5) == [] and asm.next_due_at() is None


def test_next_due_at_is_the_earliest_deadline():
    asm = BatchAssembler(max_batch_size=10, batch_timeout=1.0)
    assert asm.next_due_at() is None
    asm.add(key(dimensions=1), "a", ["a"], now=5.0)
    asm.add(key(dimensions=2), "b", ["b"], now=3.0)
    asm.add(key(dimensions=3), "c", ["c"], now=4.0)
    assert asm.next_due_at() == 4.0
    assert [member_items(b) for b in asm.due(4.5)] == [["b"]]
    assert asm.next_due_at() == 5.0
    assert [member_items(b) for b in asm.due(100.0)] == [["a"], ["c"]]
    assert asm.next_due_at() is None


def test_multi_input_member_stays_whole_and_closes_the_open_batch():
    asm = BatchAssembler(max_batch_size=5, batch_timeout=1.0)
    k = key()
    asm.add(k, "a", texts(3, "a"), now=0.0)
    _, ready = asm.add(k, "b", texts(3, "b"), now=0.1)
    assert [member_items(b) for b in ready] == [["a"]]
    assert ready[0].inputs() == texts(3, "a")
    # b starts the new batch, with its own deadline
    assert asm.pending_inputs() == 3 and asm.next_due_at() == pytest.approx(1.1)
    _, ready = asm.add(k, "c", texts(2, "c"), now=0.2)
    assert [member_items(b) for b in ready] == [["b", "c"]]
    assert ready[0].inputs() == texts(3, "b") + texts(2, "c")
    assert ready[0].offsets() == [(0, 3), (3, 2)]


def test_member_at_or_over_the_limit_goes_alone_and_leaves_the_open_batch():
    asm = BatchAssembler(max_batch_size=4, batch_timeout=1.0)
    k = key()
    asm.add(k, "small", ["s"], now=0.0)
    for name, n in (("exact", 4), ("huge", 9)):
        _, ready = asm.add(k, name, texts(n), now=0.1)
        assert [member_items(b) for b in ready] == [[name]]
        assert ready[0].inputs() == texts(n)  # whole, never split
    assert asm.pending_members() == 1 and asm.next_due_at() == 1.0


def test_token_limit_closes_a_batch():
    limits = BatchLimits(max_tokens=10)
    asm = BatchAssembler(max_batch_size=100, batch_timeout=1.0, limits_for=lambda _k: limits)
    k = key()
    asm.add(k, "a", ["x" * 12], now=0.0)  # 4 tokens
    assert asm.add(k, "b", ["y" * 12], now=0.0)[1] == []  # 8 tokens
    _, ready = asm.add(k, "c", ["z" * 9], now=0.0)  # 3 more would make 11
    assert [member_items(b) for b in ready] == [["a", "b"]]
    assert ready[0].n_tokens == 8
    _, ready = asm.add(k, "d", ["w" * 21], now=0.0)  # 3 + 7 = 10: meets the cap exactly
    assert [member_items(b) for b in ready] == [["c", "d"]]
    _, ready = asm.add(k, "e", ["v" * 40], now=0.0)  # 14 tokens alone
    assert [member_items(b) for b in ready] == [["e"]]


@pytest.mark.parametrize(("max_batch_size", "effective"), [(10, 10), (2048, 2048), (5000, 2048)])
def test_provider_cap_is_min_of_setting_and_model_cap(max_batch_size, effective):
    asm = BatchAssembler(
        max_batch_size=max_batch_size, limits_for=lambda _k: OPENAI_EMBEDDING_LIMITS
    )
    k = key()
    assert asm.input_limit(k) == effective
    assert asm.add(k, "a", texts(effective - 1), now=0.0)[1] == []
    _, ready = asm.add(k, "b", ["last"], now=0.0)
    assert len(ready) == 1 and ready[0].n_inputs == effective


def test_limits_depend_on_the_key():
    caps = {SMALL: BatchLimits(max_inputs=2), "other": BatchLimits()}
    asm = BatchAssembler(max_batch_size=5, limits_for=lambda k: caps[k[1]])
    assert asm.add(key(), "a", ["a"], 0.0)[1] == []
    assert len(asm.add(key(), "b", ["b"], 0.0)[1]) == 1
    assert asm.add(key("other"), "c", texts(4), 0.0)[1] == []


def test_overlong_input_is_sent_on_its_own():
    asm = BatchAssembler(max_batch_size=10, limits_for=lambda _k: OPENAI_EMBEDDING_LIMITS)
    k = key()
    asm.add(k, "a", ["short"], now=0.0)
    long_text = "x" * (3 * 8192 + 1)  # estimated 8193 tokens
    _, ready = asm.add(k, "long", ["fine", long_text], now=0.0)
    assert [member_items(b) for b in ready] == [["long"]]
    assert asm.add(k, "b", ["x" * (3 * 8192)], now=0.0)[1] == []  # 8192 is allowed
    assert [member_items(b) for b in asm.drain()] == [["a", "b"]]


# ---------------------------------------------------------------- cancel, drain, counts


def test_remove_takes_a_member_out_of_its_open_batch():
    asm = BatchAssembler(max_batch_size=3, batch_timeout=1.0)
    k = key()
    a, _ = asm.add(k, "a", texts(2, "a"), now=0.0)
    b, ready = asm.add(k, "b", ["b"], now=0.0)
    assert len(ready) == 1  # a (2) + b (1) reached 3 inputs: sent, nothing left to remove
    assert asm.remove(a) is False and asm.remove(b) is False

    a, _ = asm.add(k, "a", ["a"], now=1.0)
    b, _ = asm.add(k, "b", ["b"], now=1.0)
    assert asm.remove(a) is True
    assert asm.remove(a) is False
    assert (asm.pending_members(), asm.pending_inputs()) == (1, 1)
    # the freed room is usable: two more inputs fit before the limit
    assert asm.add(k, "c", texts(2), now=1.1)[1][0].members[0] is b


def test_emptied_batch_disappears():
    asm = BatchAssembler(batch_timeout=1.0)
    a, _ = asm.add(key(), "a", ["a"], now=0.0)
    assert asm.remove(a) is True
    assert asm.next_due_at() is None and len(asm) == 0
    assert asm.due(10.0) == [] and asm.drain() == []


def test_remove_after_the_batch_left_is_refused():
    asm = BatchAssembler(batch_timeout=1.0)
    a, _ = asm.add(key(), "a", ["a"], now=0.0)
    (batch,) = asm.due(1.0)
    assert asm.remove(a) is False
    assert member_items(batch) == ["a"]
    asm.add(key(), "b", ["b"], now=2.0)  # a new batch for the same key
    assert asm.remove(a) is False and asm.pending_members() == 1


def test_drain_returns_every_open_batch_and_counts():
    asm = BatchAssembler(max_batch_size=10)
    asm.add(key(dimensions=1), "a", texts(2), now=0.0)
    asm.add(key(dimensions=2), "b", texts(3), now=0.0)
    asm.add(key(dimensions=1), "c", texts(1), now=0.0)
    assert (asm.pending_members(), asm.pending_inputs(), len(asm)) == (3, 6, 2)
    assert [member_items(b) for b in asm.drain()] == [["a", "c"], ["b"]]
    assert (asm.pending_members(), asm.pending_inputs(), len(asm)) == (0, 0, 0)


def test_reprs_do_not_show_the_key():
    asm = BatchAssembler()
    member, _ = asm.add(key(key_id="sk-secret-fingerprint"), "a", ["a"], now=0.0)
    (batch,) = asm.drain()
    for obj in (asm, member, batch):
        assert "sk-secret" not in repr(obj)
    assert "n_inputs=1" in repr(batch)


# ---------------------------------------------------------------- settings


def test_new_max_batch_size_applies_to_the_next_add():
    asm = BatchAssembler(max_batch_size=10, batch_timeout=1.0)
    k = key()
    asm.add(k, "a", texts(4), now=0.0)
    asm.max_batch_size = 5
    _, ready = asm.add(k, "b", texts(2), now=0.0)  # 4 + 2 > 5
    assert [member_items(b) for b in ready] == [["a"]]
    _, ready = asm.add(k, "c", texts(3), now=0.0)  # 2 + 3 == 5
    assert [member_items(b) for b in ready] == [["b", "c"]]


def test_new_batch_timeout_applies_to_batches_opened_after():
    asm = BatchAssembler(max_batch_size=10, batch_timeout=1.0)
    asm.add(key(dimensions=1), "old", ["a"], now=0.0)
    asm.batch_timeout = 0.1
    asm.add(key(dimensions=2), "new", ["b"], now=0.0)
    assert asm.next_due_at() == 0.1
    assert [member_items(b) for b in asm.due(0.1)] == [["new"]]
    assert [member_items(b) for b in asm.due(1.0)] == [["old"]]


BAD_SETTINGS = [
    ("max_batch_size", 0),
    ("max_batch_size", -1),
    ("max_batch_size", 2.5),
    ("max_batch_size", "10"),
    ("max_batch_size", True),
    ("max_batch_size", None),
    ("batch_timeout", -0.1),
    ("batch_timeout", math.nan),
    ("batch_timeout", math.inf),
    ("batch_timeout", "0.5"),
    ("batch_timeout", True),
    ("batch_timeout", None),
]


@pytest.mark.parametrize(("name", "value"), BAD_SETTINGS)
def test_invalid_settings_are_refused_naming_the_setting(name, value):
    asm = BatchAssembler(max_batch_size=7, batch_timeout=0.3)
    with pytest.raises(SettingError) as info:
        setattr(asm, name, value)
    assert info.value.setting == name and repr(name) in str(info.value)
    assert (asm.max_batch_size, asm.batch_timeout) == (7, 0.3)  # unchanged
    with pytest.raises(SettingError, match=name):
        BatchAssembler(**{name: value})


def test_valid_settings_are_taken():
    asm = BatchAssembler()
    asm.max_batch_size = 1
    asm.batch_timeout = 0
    assert (asm.max_batch_size, asm.batch_timeout) == (1, 0.0)
    _, ready = asm.add(key(), "a", ["a"], now=0.0)
    assert len(ready) == 1


@pytest.mark.parametrize("field", ["max_inputs", "max_tokens", "max_tokens_per_input"])
@pytest.mark.parametrize("value", [0, -5, 1.5, "3", True])
def test_batch_limits_validate_themselves(field, value):
    with pytest.raises(SettingError, match=field):
        BatchLimits(**{field: value})


def test_openai_limits():
    assert (OPENAI_EMBEDDING_LIMITS.max_inputs, OPENAI_EMBEDDING_LIMITS.max_tokens) == (
        2048,
        300_000,
    )
    assert OPENAI_EMBEDDING_LIMITS.max_tokens_per_input == 8192


# ---------------------------------------------------------------- inputs


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("hello", ["hello"]),
        (["a", "b"], ["a", "b"]),
        (("a",), ["a"]),
        ([1, 2, 3], [[1, 2, 3]]),
        ([[1, 2], [3]], [[1, 2], [3]]),
        (["a", [1]], ["a", [1]]),
    ],
)
def test_normalize_inputs(value, expected):
    assert normalize_inputs(value) == expected


def test_normalize_inputs_returns_a_new_list():
    original = ["a", "b"]
    result = normalize_inputs(original)
    original.append("c")
    assert result == ["a", "b"]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "an empty string"),
        ([], "an empty list"),
        (None, "NoneType"),
        (42, "int"),
        ({"text": "a"}, "dict"),
        (["a", ""], "an empty string at position 1"),
        (["a", 3.5], "float at position 1"),
        (["a", None], "NoneType at position 1"),
        ([[1, 2], []], "an empty list at position 1"),
        ([[1, "x"]], "a list that is not a token array at position 0"),
        ([True, False], "bool at position 0"),
    ],
)
def test_normalize_inputs_refuses_with_what_is_expected(value, says):
    with pytest.raises(InvalidInputError) as info:
        normalize_inputs(value)
    message = str(info.value)
    assert says in message
    assert "non-empty string" in message and "token arrays" in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("abc", 1),
        ("abcd", 2),
        ("x" * 300, 100),
        ("é", 1),
        ("日本語", 3),
        ([5, 6, 7, 8], 4),
        ("", 0),
    ],
)
def test_estimate_tokens(text, tokens):
    assert estimate_tokens(text) == tokens


def test_estimate_tokens_refuses_other_types():
    with pytest.raises(InvalidInputError):
        estimate_tokens(3.0)


def test_add_refuses_an_empty_member():
    with pytest.raises(InvalidInputError):
        BatchAssembler().add(key(), "a", [], now=0.0)


# ---------------------------------------------------------------- splitting


def fake_response(inputs, rng):
    data = [
        {"object": "embedding", "index": i, "embedding": [float(i)], "text": t}
        for i, t in enumerate(inputs)
    ]
    rng.shuffle(data)
    return data


def test_split_by_index_shuffled_and_reindexed():
    inputs = ["a0", "a1", "b0", "c0", "c1", "c2"]
    data = fake_response(inputs, random.Random(7))
    snapshot = [dict(d) for d in data]
    parts = split_by_index(data, [2, 1, 3])
    assert [[d["text"] for d in part] for part in parts] == [
        ["a0", "a1"],
        ["b0"],
        ["c0", "c1", "c2"],
    ]
    assert [[d["index"] for d in part] for part in parts] == [[0, 1], [0], [0, 1, 2]]
    assert parts[2][1]["embedding"] == [4.0]  # the batch's index 4, now c's index 1
    assert data == snapshot  # the response itself is not modified


def test_split_by_index_with_accessors_for_other_shapes():
    items = [("b", 1), ("a", 0), ("c", 2)]
    parts = split_by_index(items, [1, 2], index_of=lambda t: t[1])
    assert parts == [[("a", 0)], [("b", 1), ("c", 2)]]
    parts = split_by_index(
        items, [1, 2], index_of=lambda t: t[1], with_index=lambda t, i: (t[0], i)
    )
    assert parts == [[("a", 0)], [("b", 0), ("c", 1)]]


def test_split_by_index_empty():
    assert split_by_index([], []) == []


def idx(*indices):
    return [{"index": i} for i in indices]


@pytest.mark.parametrize(
    ("items", "counts", "says"),
    [
        pytest.param(idx(0, 2), [1, 2], "missing indices 1", id="missing"),
        pytest.param(
            idx(0, 1, 2, 3), [1, 2], "expected 3 results (one per input sent), got 4", id="too-many"
        ),
        pytest.param(idx(0, 1, 1), [1, 2], "index 1 appears twice", id="duplicate"),
        pytest.param(idx(0, 1, 3), [1, 2], "has index 3, expected 0..2", id="out-of-range"),
        pytest.param(idx(0, -1, 2), [1, 2], "has index -1", id="negative"),
        pytest.param(idx(0, "1", 2), [1, 2], "expected an integer", id="not-an-int"),
        pytest.param(idx(0, True, 2), [1, 2], "expected an integer", id="bool"),
        pytest.param(
            [{"index": 0}, {"embedding": []}, {"index": 2}],
            [1, 2],
            "no readable index",
            id="no-index",
        ),
        pytest.param(
            [{"index": 0}, None, {"index": 2}], [1, 2], "no readable index", id="not-a-dict"
        ),
        pytest.param(None, [1, 2], "expected a list of 3 results, got NoneType", id="not-a-list"),
        pytest.param(idx(0, 1), [1], "expected 1 results", id="total-vs-counts"),
    ],
)
def test_split_by_index_mismatch_raises_malformed(items, counts, says):
    with pytest.raises(MalformedResponseError) as info:
        split_by_index(items, counts)
    assert says in str(info.value)
    assert info.value.retryable


def test_split_by_index_refuses_bad_counts():
    with pytest.raises(ValueError, match="counts"):
        split_by_index(idx(0), [-1, 2])


# ---------------------------------------------------------------- sans-IO


def test_module_is_sans_io():
    tree = ast.parse(pathlib.Path(batching.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"time", "asyncio", "socket", "aiohttp", "httpx", "threading"}


def test_all_is_sorted_and_complete():
    assert batching.__all__ == sorted(batching.__all__)
    for name in batching.__all__:
        assert hasattr(batching, name)


# ---------------------------------------------------------------- property


ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "add", "add", "due", "remove"]),
        st.integers(0, 2),  # which key
        st.lists(st.integers(1, 40), min_size=1, max_size=7),  # input lengths of one member
        st.floats(0.0, 0.4, allow_nan=False),  # time step
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(
    ops=ops,
    max_batch_size=st.integers(1, 12),
    cap=st.one_of(st.none(), st.integers(1, 12)),
    max_tokens=st.one_of(st.none(), st.integers(1, 60)),
    timeout=st.sampled_from([0.0, 0.25, 0.5, 1.0]),
    rng=st.randoms(use_true_random=False),
)
def test_property_every_member_in_exactly_one_well_formed_batch(
    ops, max_batch_size, cap, max_tokens, timeout, rng
):
    limits = BatchLimits(max_inputs=cap, max_tokens=max_tokens)
    asm = BatchAssembler(
        max_batch_size=max_batch_size, batch_timeout=timeout, limits_for=lambda _k: limits
    )
    input_limit = max_batch_size if cap is None else min(max_batch_size, cap)
    keys = [key(dimensions=d) for d in range(3)]
    clock = FakeClock(start=0.0)
    members, removed, sent = {}, set(), []

    def collect(batches, how):
        sent.extend((b, how, clock.now()) for b in batches)

    for n, (op, which, lengths, step) in enumerate(ops):
        clock.advance(step)
        if op == "add":
            inputs = [f"m{n}-{i}:" + "x" * size for i, size in enumerate(lengths)]
            member, ready = asm.add(keys[which], n, inputs, clock.now())
            members[n] = (member, keys[which])
            collect(ready, "ready")
        elif op == "due":
            collect(asm.due(clock.now()), "due")
            assert asm.next_due_at() is None or asm.next_due_at() > clock.now()
        elif members:
            victim = rng.choice(sorted(members))
            if asm.remove(members[victim][0]):
                removed.add(victim)
    collect(asm.drain(), "drain")

    seen = [m.item for batch, _, _ in sent for m in batch.members]
    assert sorted(seen) == sorted(set(members) - removed)  # exactly once, cancelled ones never
    assert asm.pending_members() == 0 and asm.next_due_at() is None
    for batch, how, at in sent:
        items = member_items(batch)
        assert batch.members and items == sorted(items)  # arrival order within a batch
        assert {members[i][1] for i in items} == {batch.key}  # only alike requests
        assert batch.inputs() == [t for m in batch.members for t in members[m.item][0].inputs]
        assert batch.n_inputs == len(batch.inputs())
        assert batch.n_tokens == sum(estimate_tokens(t) for t in batch.inputs())
        if len(batch.members) > 1:
            assert batch.n_inputs <= input_limit
            assert max_tokens is None or batch.n_tokens <= max_tokens
        if how == "due":
            assert at >= batch.opened_at + timeout
        # split a shuffled fake response back: each member gets its own inputs
        parts = split_by_index(
            fake_response(batch.inputs(), rng), [m.n_inputs for m in batch.members]
        )
        for member, part in zip(batch.members, parts, strict=True):
            assert [d["text"] for d in part] == member.inputs
            assert [d["index"] for d in part] == list(range(member.n_inputs))
