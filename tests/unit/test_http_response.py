"""``HttpResponse.json``: what a server's body decodes to, whatever encoding JSON allows."""

from __future__ import annotations

import pytest

from ipfs_accelerate_py.resilience.errors import MalformedResponseError
from ipfs_accelerate_py.transport.base import HttpResponse

VALUE = {"text": "héllo ☃", "n": [1, 2.5, None, True]}
TEXT = '{"text": "héllo ☃", "n": [1, 2.5, null, true]}'


@pytest.mark.parametrize(
    "body",
    [
        TEXT.encode(),
        b"\xef\xbb\xbf" + TEXT.encode(),  # UTF-8 with a BOM
        TEXT.encode("utf-16"),  # with its BOM
        TEXT.encode("utf-16-le"),  # without: told by the zero bytes
        TEXT.encode("utf-16-be"),
        TEXT.encode("utf-32"),
        TEXT,  # a transport of one's own may hand text
        bytearray(TEXT.encode()),
        b" \r\n\t" + TEXT.encode(),  # whitespace before the value
        TEXT.encode() + b"\n",  # and after it, as most servers end a body
    ],
    ids=[
        "utf-8",
        "utf-8-bom",
        "utf-16",
        "utf-16-le",
        "utf-16-be",
        "utf-32",
        "str",
        "bytearray",
        "leading-space",
        "trailing-newline",
    ],
)
def test_every_encoding_json_allows_decodes(body):
    assert HttpResponse(200, {}, body).json() == VALUE


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"\xff\xfe", b'{"a": 1', b"\xc3(", b"{} {}", b'{"a": 1}x', b"  "],
)
def test_what_is_not_json_is_a_malformed_response_naming_the_body(body):
    with pytest.raises(MalformedResponseError, match="not valid JSON") as caught:
        HttpResponse(502, {}, body).json()
    assert caught.value.status == 502
    assert f"{len(body)} bytes" in str(caught.value)
