"""The admin guard as a table: headers in, refusal status (or None) out; no sockets."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from ipfs_accelerate_py.simulator.admin_guard import admin_refusal

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json; charset=utf-8"}


@pytest.mark.parametrize(
    "method, headers, status",
    [
        ("GET", {}, 401),
        ("GET", {"Authorization": "Bearer nope"}, 401),
        ("GET", {"Authorization": TOKEN}, 401),  # no scheme
        ("GET", AUTH, None),
        ("POST", AUTH, 415),
        ("POST", {**AUTH, "Content-Type": "text/plain"}, 415),
        ("POST", {**AUTH, **JSON}, None),
        ("POST", {**JSON, "Origin": "http://evil.example"}, 403),  # 403 before 401
        ("POST", {**AUTH, **JSON, "Origin": "http://localhost:8000"}, None),
        ("POST", {**AUTH, **JSON, "Origin": "http://[::1]:8000"}, None),
        ("POST", {**AUTH, **JSON, "Origin": "http://localhost:8001"}, 403),
        ("POST", {**AUTH, **JSON, "Origin": "https://localhost:8000"}, 403),
        ("POST", {**AUTH, **JSON, "Origin": "http://localhost:notaport"}, 403),
        ("POST", {**AUTH, **JSON, "Sec-Fetch-Site": "same-origin"}, None),
        ("POST", {**AUTH, **JSON, "Sec-Fetch-Site": "none"}, None),
        ("POST", {**AUTH, **JSON, "Sec-Fetch-Site": "cross-site"}, 403),
    ],
)
def test_refusals(method, headers, status):
    refusal = admin_refusal(
        method, CIMultiDict(headers), TOKEN, local_host="127.0.0.1", local_port=8000
    )
    assert (refusal.status if refusal else None) == status
