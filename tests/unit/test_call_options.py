"""Per-call options as a value: checked, merged over a view's defaults,
hashable, secrets kept out of the repr; and how a request is built with
extra headers and query (pure functions, no I/O)."""

from __future__ import annotations

import pytest

from ipfs_accelerate_py.engine.call_options import DEFAULT_OPTIONS, CallOptions
from ipfs_accelerate_py.providers.base import with_headers, with_query
from ipfs_accelerate_py.providers.openai import OPENAI, OpenAIWire
from ipfs_accelerate_py.resilience.errors import InvalidInputError


def test_no_options_is_the_shared_default():
    assert CallOptions.of() is DEFAULT_OPTIONS
    assert CallOptions.of(extra_headers={}, extra_query={}) is DEFAULT_OPTIONS


def test_values_are_normalised_and_hashable():
    options = CallOptions.of(5, 0, {"X-Trace": "1"}, {"tags": ["a", "b"], "n": 2})
    assert options == CallOptions(5.0, 0, (("X-Trace", "1"),), (("tags", ("a", "b")), ("n", 2)))
    assert hash(options) == hash(
        CallOptions.of(5.0, 0, {"X-Trace": "1"}, {"tags": ("a", "b"), "n": 2})
    )


def test_a_call_wins_over_a_views_defaults_and_headers_merge_by_name_in_any_case():
    view = CallOptions.of(
        timeout=5,
        max_retries=0,
        extra_headers={"X-Trace": "view", "X-View": "v"},
        extra_query={"a": "1"},
    )
    call = CallOptions.of(max_retries=2, extra_headers={"x-trace": "call"}, extra_query={"b": "2"})
    merged = call.over(view)
    assert (merged.timeout, merged.max_retries) == (5.0, 2)
    assert dict(merged.extra_headers) == {"X-View": "v", "x-trace": "call"}
    assert dict(merged.extra_query) == {"a": "1", "b": "2"}
    assert DEFAULT_OPTIONS.over(view) is view and call.over(DEFAULT_OPTIONS) is call


def test_the_repr_names_headers_and_query_but_never_shows_their_values():
    options = CallOptions.of(3, None, {"Authorization": "Bearer sk-secret"}, {"key": "AIza-secret"})
    text = repr(options)
    assert "Authorization" in text and "key" in text and "timeout=3" in text
    assert "secret" not in text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0},
        {"timeout": float("inf")},
        {"timeout": float("nan")},
        {"timeout": "1"},
        {"timeout": False},
        {"max_retries": -1},
        {"max_retries": 2.0},
        {"max_retries": True},
        {"extra_headers": [("A", "1")]},
        {"extra_headers": {1: "x"}},
        {"extra_headers": {"A": b"1"}},
        {"extra_headers": {"A": "1\n2"}},
        {"extra_headers": {"A:B": "1"}},
        {"extra_headers": {"": "1"}},
        {"extra_query": "a=1"},
        {"extra_query": {"a": {"b": 1}}},
        {"extra_query": {"a": [None]}},
        {"extra_query": {"": "1"}},
    ],
)
def test_bad_values_are_refused_with_the_argument_named(kwargs):
    (name,) = kwargs
    with pytest.raises(InvalidInputError, match=name):
        CallOptions.of(**kwargs)


def test_a_bad_header_value_is_not_echoed():
    with pytest.raises(InvalidInputError) as refused:
        CallOptions.of(extra_headers={"Authorization": "Bearer sk-secret\r\nX: 1"})
    assert "secret" not in str(refused.value)


def test_extra_headers_replace_by_name_in_any_case_and_none_removes():
    headers = {"Authorization": "Bearer k", "Accept": "application/json"}
    assert with_headers(
        headers, (("authorization", "Bearer other"), ("Accept", None), ("X-Trace", "1"))
    ) == {
        "authorization": "Bearer other",
        "X-Trace": "1",
    }
    assert headers == {
        "Authorization": "Bearer k",
        "Accept": "application/json",
    }  # not changed in place


def test_extra_query_is_added_replacing_a_parameter_of_the_same_name():
    url = with_query(
        "https://h/v1/x?api-version=old&keep=1",
        (("api-version", "new"), ("tag", ("a", "b")), ("flag", True)),
    )
    assert url == "https://h/v1/x?keep=1&api-version=new&tag=a&tag=b&flag=true"


def test_build_request_puts_extras_in_headers_and_url_and_never_in_the_body():
    wire = OpenAIWire(OPENAI)
    request = wire.build_request(
        "chat/completions",
        {"model": "m", "messages": []},
        api_key="sk-k",
        base_url="https://api.example/v1",
        timeout=5.0,
        extra_headers=(("X-Trace", "1"),),
        extra_query=(("api-version", "x"),),
    )
    assert request.url == "https://api.example/v1/chat/completions?api-version=x"
    assert request.headers["X-Trace"] == "1" and request.headers["Authorization"] == "Bearer sk-k"
    assert request.body == b'{"model":"m","messages":[]}'
