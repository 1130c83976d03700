"""IdSet: a set of ids in a few bytes each."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ipfs_accelerate_py.runner.idset import IdSet


def test_add_says_whether_an_id_is_new_and_membership_follows():
    ids = IdSet()
    assert ids.add("a") and ids.add("b") and not ids.add("a")
    assert "a" in ids and "b" in ids and "c" not in ids and 1 not in ids
    assert len(ids) == 2


def test_it_grows_and_keeps_every_id():
    ids = IdSet()
    for i in range(50_000):
        assert ids.add(f"id-{i}")
    assert len(ids) == 50_000
    assert all(f"id-{i}" in ids for i in range(0, 50_000, 97))
    assert "id-50000" not in ids


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(max_size=20), max_size=300))
def test_it_behaves_as_a_set_of_strings(values):
    ids, model = IdSet(), set()
    for value in values:
        assert ids.add(value) == (value not in model)
        model.add(value)
    assert len(ids) == len(model)
    assert all(value in ids for value in model)


def test_a_set_sized_for_what_is_coming_never_grows():
    ids = IdSet(expected=3000)
    slots = len(ids._slots)
    for i in range(3000):
        ids.add(str(i))
    assert len(ids._slots) == slots >= 6000
