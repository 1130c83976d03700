"""The JSON body a request is sent with (``providers.base.json_body``)."""

from __future__ import annotations

import pytest

from ipfs_accelerate_py.providers.base import json_body
from ipfs_accelerate_py.resilience.errors import InvalidInputError


@pytest.mark.parametrize(
    ("data", "body"),
    [
        ({"a": [1, 2.5, None, True], "é": "☃"}, b'{"a":[1,2.5,null,true],"\\u00e9":"\\u2603"}'),
        ("text", b'"text"'),
        ([], b"[]"),
    ],
)
def test_a_body_is_compact_ascii_json(data, body):
    assert json_body(data, "openai") == body


def test_a_circular_body_is_refused_and_the_next_one_still_encodes():
    data: dict[str, object] = {}
    data["self"] = data
    with pytest.raises(InvalidInputError, match="cannot be sent as JSON.*[Cc]ircular"):
        json_body({"outer": data}, "openai")
    shared = {"x": 1}
    assert json_body({"a": shared, "b": shared}, "openai") == b'{"a":{"x":1},"b":{"x":1}}'
