"""The simulator's admin endpoint over real HTTP: token, JSON only, same origin only;
and proxy mode never forwards the client's credentials unless told to."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from ipfs_accelerate_py.simulator import ADMIN_TOKEN_ENV, Simulator

from ..helpers import LOOPBACK, WAIT, recording_server

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy


def http(url: str, method: str = "GET", body: bytes = None, headers: dict = None) -> tuple:
    """``(status, parsed JSON body, headers)`` of one request; HTTP errors are answers too."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _OPENER.open(request, timeout=WAIT) as response:
            return response.status, json.loads(response.read() or b"null"), response.headers
    except urllib.error.HTTPError as answer:
        with answer:
            return answer.code, json.loads(answer.read() or b"null"), answer.headers


def token_only(sim: Simulator) -> dict:
    return {"Authorization": f"Bearer {sim.admin_token}"}


OUTAGE = json.dumps({"outage": True}).encode()


def test_reading_the_config_needs_the_token(simulator):
    status, body, headers = http(simulator.admin_url + "/config")
    assert status == 401 and body["error"]["code"] == "invalid_admin_token"
    assert "--admin-token" in body["error"]["message"]
    assert headers["WWW-Authenticate"].startswith("Bearer")
    status, body, _ = http(
        simulator.admin_url + "/counters", headers={"Authorization": "Bearer not-the-token"}
    )
    assert status == 401 and "wrong" in body["error"]["message"]
    status, body, _ = http(simulator.admin_url + "/config", headers=token_only(simulator))
    assert status == 200 and "scenario" in body


def test_a_post_that_is_not_json_is_refused_and_changes_nothing(simulator):
    for kind in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = dict(token_only(simulator), **({"Content-Type": kind} if kind else {}))
        status, body, _ = http(simulator.admin_url + "/config", "POST", OUTAGE, headers)
        assert status == 415 and body["error"]["code"] == "unsupported_media_type", kind
    assert simulator.scenario["outage"] is False


@pytest.mark.parametrize(
    "cross",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:1"},  # another port: another origin
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_a_cross_origin_request_is_refused_even_with_the_token(simulator, cross):
    headers = dict(simulator.admin_headers, **cross)
    status, body, _ = http(simulator.admin_url + "/config", "POST", OUTAGE, headers)
    assert status == 403 and body["error"]["code"] == "cross_origin_refused"
    assert simulator.scenario["outage"] is False


def test_token_json_and_no_foreign_origin_take_effect(simulator):
    status, body, _ = http(simulator.admin_url + "/config", "POST", OUTAGE, simulator.admin_headers)
    assert status == 200 and body["scenario"]["outage"] is True
    assert simulator.scenario["outage"] is True
    status, _, _ = http(
        simulator.base_url + "/chat/completions",
        "POST",
        json.dumps({"model": "m", "messages": []}).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 503
    own = dict(simulator.admin_headers, Origin=simulator.url, **{"Sec-Fetch-Site": "same-origin"})
    status, body, _ = http(simulator.admin_url + "/config", "POST", b'{"outage": false}', own)
    assert status == 200 and body["scenario"]["outage"] is False


def test_the_in_process_controls_need_no_token():
    with Simulator(admin_token="chosen") as sim:
        assert sim.admin_token == "chosen"
        assert sim.configure(latency=0.01)["latency"] == 0.01
        assert sim.script([{"status": 502}]) == 1
        sim.reset()
        assert sim.counters()["requests_total"] == 0
        status, _, _ = http(sim.admin_url + "/counters", headers={"Authorization": "Bearer chosen"})
        assert status == 200
    assert Simulator().admin_token != Simulator().admin_token  # random when not given


CREDENTIALS = {
    "Authorization": "Bearer sk-client-secret",
    "x-api-key": "sk-ant-secret",
    "x-goog-api-key": "AIza-secret",
    "api-key": "azure-secret",
    "Cookie": "s=1",
}


def test_proxy_mode_forwards_credentials_only_when_configured(simulator):
    with recording_server({"ok": True}) as (upstream, seen):
        simulator.configure(upstream=upstream)
        status, body, _ = http(
            simulator.url + "/bucket/key", headers=dict(CREDENTIALS, **{"x-other": "kept"})
        )
        assert (status, body) == (200, {"ok": True})
        headers = seen[-1][2]
        assert headers["x-other"] == "kept"
        assert not {name.lower() for name in CREDENTIALS} & set(headers)
        simulator.configure(forward_credentials=True)
        http(simulator.url + "/bucket/key", headers=CREDENTIALS)
        headers = seen[-1][2]
        assert {name.lower(): value for name, value in CREDENTIALS.items()} == {
            name: headers[name] for name in (n.lower() for n in CREDENTIALS)
        }


def _start(env: dict) -> tuple:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ipfs_accelerate_py", "simulate", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    first, second = proc.stdout.readline(), proc.stdout.readline()
    return proc, first.split()[-1].rsplit("/v1", 1)[0], second


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(WAIT)
    finally:
        proc.stdout.close()


def test_the_command_prints_a_generated_token_and_keeps_a_given_one_quiet():
    env = {k: v for k, v in os.environ.items() if k != ADMIN_TOKEN_ENV}
    proc, root, line = _start(env)
    try:
        assert root.startswith(f"http://{LOOPBACK}:") and line.startswith("admin token: ")
        token = line.split()[2]
        assert http(root + "/_admin/config")[0] == 401
        assert http(root + "/_admin/config", headers={"Authorization": f"Bearer {token}"})[0] == 200
    finally:
        _stop(proc)
    proc, root, line = _start(dict(env, **{ADMIN_TOKEN_ENV: "from-the-environment"}))
    try:
        assert "from-the-environment" not in line and line.startswith("admin token: given")
        ok = http(root + "/_admin/config", headers={"Authorization": "Bearer from-the-environment"})
        assert ok[0] == 200
    finally:
        _stop(proc)
