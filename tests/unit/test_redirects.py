"""The redirect rule, pure: which hop follows, and what it is sent."""

from __future__ import annotations

import pytest

from ipfs_accelerate_py.transport.base import HttpRequest
from ipfs_accelerate_py.transport.redirects import next_hop, origin

BASE = "http://api.example:8000/v1/chat"
HEADERS = {
    "Authorization": "Bearer k",
    "x-api-key": "k",
    "X-Mine": "t",
    "Content-Type": "application/json",
    "Accept": "*/*",
}


def request(method: str = "POST") -> HttpRequest:
    return HttpRequest(
        method,
        BASE,
        dict(HEADERS),
        b"{}" if method == "POST" else None,
        secret_headers=frozenset({"x-mine"}),
    )


@pytest.mark.parametrize(
    "location, same",
    [
        ("/v1/chat/", True),
        ("http://API.example:8000/x", True),
        ("http://api.example:8001/x", False),  # another port
        ("http://other.example:8000/x", False),  # another host
        ("https://api.example:8000/x", False),  # another scheme
        ("//other.example/x", False),
    ],
)
def test_credentials_stay_with_their_origin(location, same):
    hop = next_hop(request(), 307, location)
    assert hop is not None and hop.method == "POST" and hop.body == b"{}"
    kept = {"authorization", "x-api-key", "x-mine"} & {k.lower() for k in hop.headers}
    assert kept == ({"authorization", "x-api-key", "x-mine"} if same else set())
    assert hop.headers["Accept"] == "*/*"


def test_a_chain_that_comes_back_does_not_get_them_back():
    away = next_hop(request(), 307, "http://other.example/x")
    back = next_hop(away, 307, BASE)
    assert "Authorization" not in back.headers and "X-Mine" not in back.headers


@pytest.mark.parametrize(
    "status, method, after",
    [
        (301, "POST", "GET"),
        (302, "POST", "GET"),
        (303, "POST", "GET"),
        (307, "POST", "POST"),
        (308, "POST", "POST"),
        (301, "GET", "GET"),
        (303, "HEAD", "HEAD"),
    ],
)
def test_the_method_changes_as_browsers_change_it(status, method, after):
    hop = next_hop(request(method), status, "/next")
    assert hop.method == after
    if after == "GET":
        assert hop.body is None and "Content-Type" not in hop.headers


@pytest.mark.parametrize(
    "status, location",
    [(200, "/x"), (304, "/x"), (307, None), (307, ""), (302, "ftp://h/x"), (302, "javascript:x")],
)
def test_what_is_not_followed(status, location):
    assert next_hop(request(), status, location) is None


def test_origin_makes_the_port_explicit():
    assert origin("https://H.example/x") == ("https", "h.example", 443)
    assert origin("http://h:80/") == origin("http://h/")
