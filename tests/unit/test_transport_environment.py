"""Which proxy a URL goes through, from the proxy variables as
``urllib.request.getproxies_environment()`` reads them; and the TLS
context that trusts what ``SSL_CERT_FILE`` names."""

from __future__ import annotations

import pytest

from ipfs_accelerate_py.transport.environment import ProxyTable, verified_ssl_context

PROXY = "http://user:pw@proxy.internal:3128"


@pytest.mark.parametrize(
    "proxies, url, expected",
    [
        ({}, "http://api.example.com/v1/chat", None),
        ({"http": PROXY}, "http://api.example.com/v1/chat", PROXY),
        (
            {"http": PROXY},
            "http://127.0.0.1:8000/v1",
            PROXY,
        ),  # loopback is not exempt unless NO_PROXY says so
        ({"http": PROXY}, "https://api.example.com/v1", None),  # HTTP_PROXY is for http URLs
        ({"https": PROXY}, "https://api.example.com/v1", PROXY),
        ({"http": PROXY, "no": "example.com"}, "http://api.example.com/v1", None),
        ({"http": PROXY, "no": ".example.com"}, "http://api.example.com/v1", None),
        ({"http": PROXY, "no": "example.org"}, "http://api.example.com/v1", PROXY),
        ({"http": PROXY, "no": "127.0.0.1:8000"}, "http://127.0.0.1:8000/v1", None),
        ({"http": PROXY, "no": "127.0.0.1:9000"}, "http://127.0.0.1:8000/v1", PROXY),
        ({"http": PROXY, "no": "*"}, "http://anything/v1", None),
        ({"all": "socks5://x:1080"}, "http://api.example.com/v1", None),  # ALL_PROXY is not read
        ({"http": PROXY}, "http://api.example.com", PROXY),  # no path
    ],
)
def test_proxy_for(proxies, url, expected):
    table = ProxyTable(proxies)
    assert table.proxy_for(url) == expected
    assert table.proxy_for(url) == expected  # the second answer comes from the table


def test_without_proxies_the_table_is_empty_and_false():
    assert not ProxyTable({"no": "example.com"})
    assert ProxyTable({"http": PROXY})


def test_the_table_by_origin_stays_bounded():
    table = ProxyTable({"http": PROXY})
    for port in range(1000):
        table.proxy_for(f"http://host:{port}/x")
    assert len(table._by_origin) <= 256


def test_from_environment_reads_lower_case_over_upper_case(monkeypatch):
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://upper:1")
    monkeypatch.setenv("http_proxy", "http://lower:1")
    assert ProxyTable.from_environment().proxy_for("http://h/x") == "http://lower:1"


def test_one_tls_context_for_each_setting_of_ssl_cert_file(monkeypatch, tmp_path):
    trustme = pytest.importorskip("trustme")
    ca_file = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    context = verified_ssl_context()
    assert verified_ssl_context() is context
    [ca] = context.get_ca_certs()  # the test CA alone, in place of the system's bundle
    assert "trustme" in str(ca["subject"])
    monkeypatch.delenv("SSL_CERT_FILE")
    assert verified_ssl_context() is not context
