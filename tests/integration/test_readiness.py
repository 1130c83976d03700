"""Readiness is not failure: a probe answered "not ready" (KServe/OVMS
``/v2/models/{m}[/versions/{v}]/ready`` and ``/v2/health/{ready,live}``,
TGI/TEI ``/health``) is an answer.  The caller gets ``False``; the server
sees one request (no retry); the breaker counts nothing, so probing a loading
model never opens the circuit.  Over real loopback HTTP to a small aiohttp
server that counts what it was asked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from aiohttp import web

from ipfs_accelerate_py.api_backends import hf_tei, hf_tgi, ovms
from ipfs_accelerate_py.resilience.errors import ServerError

from ..helpers import FAST, ClientFactory, aiohttp_server

make_ovms = ClientFactory(ovms, "ovms_api_base", "ovms_api_key", FAST)
make_tgi = ClientFactory(hf_tgi, "hf_tgi_api_base", "hf_api_key", FAST)
make_tei = ClientFactory(hf_tei, "hf_tei_api_base", "hf_api_key", FAST)

THRESHOLD = 2
"""failure_threshold in these tests: THRESHOLD + 1 probes would open a circuit that counted them."""


@contextlib.contextmanager
def answering(status: int, body: dict) -> Iterator[tuple[str, list]]:
    """A server answering every request ``status`` with ``body``: ``(url, [(method, path), ...])``."""
    seen: list = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.method, request.path))
        return web.json_response(body, status=status)

    with aiohttp_server(handler) as url:
        yield url, seen


def breaker_untouched(client) -> None:
    report = client.generate_report()
    assert client.circuit_state == "CLOSED"
    assert report["circuit_breaker"]["consecutive_failures"] == 0
    assert report["circuit_breaker"]["window"]["failures"] == 0
    assert report["summary"]["failed_requests"] == 0 and report["summary"]["total_retries"] == 0


@pytest.mark.parametrize(
    "status, body",
    [
        (503, {"error": "Model with requested version is not loaded yet"}),  # OVMS, a model loading
        (404, {"error": "Model with requested name is not found"}),  # OVMS, unknown model
        (400, {"error": "Request for unknown model: 'm' is not ready"}),  # Triton's KServe v2
    ],
)
def test_model_not_ready_is_one_request_no_retry_no_breaker_failure(status, body):
    with (
        answering(status, body) as (url, seen),
        make_ovms(url, failure_threshold=THRESHOLD, max_retries=3) as client,
    ):
        answers = [client.model_ready("m") for _ in range(THRESHOLD + 1)]
        answers.append(client.model_ready("m", version=2))
        breaker_untouched(client)
    assert answers == [False] * (THRESHOLD + 2)
    assert seen == [("GET", "/v2/models/m/ready")] * (THRESHOLD + 1) + [
        ("GET", "/v2/models/m/versions/2/ready")
    ]


def test_a_ready_model_is_true_and_the_answer_keeps_its_status():
    with answering(200, {}) as (url, seen), make_ovms(url) as client:
        assert client.model_ready("m") is True
        assert client.make_request("v2/models/m/ready") == {"ready": True, "status": 200}
    assert seen == [("GET", "/v2/models/m/ready")] * 2


@pytest.mark.parametrize("path, probe", [("v2/health/ready", "ready"), ("v2/health/live", "live")])
def test_server_health_probes_answer_alike(path, probe):
    with (
        answering(503, {"error": "not ready"}) as (url, seen),
        make_ovms(url, failure_threshold=THRESHOLD) as client,
    ):
        answers = [client.make_request(path) for _ in range(THRESHOLD + 1)]
        breaker_untouched(client)
    assert answers == [{probe: False, "status": 503}] * (THRESHOLD + 1)
    assert seen == [("GET", f"/{path}")] * (THRESHOLD + 1)


@pytest.mark.parametrize("make", [make_tgi, make_tei], ids=["hf_tgi", "hf_tei"])
def test_hugging_face_health_503_is_not_ready(make):
    body = {"error": "unhealthy", "error_type": "healthcheck"}
    with answering(503, body) as (url, seen), make(url, failure_threshold=THRESHOLD) as client:
        answers = [client.make_request("health") for _ in range(THRESHOLD + 1)]
        breaker_untouched(client)
    assert answers == [{"ready": False, "status": 503}] * (THRESHOLD + 1)
    assert seen == [("GET", "/health")] * (THRESHOLD + 1)


@pytest.mark.parametrize("make", [make_tgi, make_tei], ids=["hf_tgi", "hf_tei"])
def test_hugging_face_health_200_with_its_empty_body_is_ready(make):
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=200)  # TGI and TEI answer /health with no body

    with aiohttp_server(handler) as url, make(url) as client:
        assert client.make_request("health") == {"ready": True, "status": 200}


def test_a_server_failure_on_a_probe_is_still_a_failure():
    """Only "not ready" is an answer: a 500 is retried and counted, as anywhere."""
    with (
        answering(500, {"error": "Internal server error"}) as (url, seen),
        make_ovms(url, failure_threshold=THRESHOLD, max_retries=1) as client,
    ):
        with pytest.raises(ServerError):
            client.model_ready("m")
        assert client.generate_report()["circuit_breaker"]["consecutive_failures"] == 2
    assert len(seen) == 2


async def test_not_ready_from_an_async_caller():
    with (
        answering(503, {"error": "loading"}) as (url, seen),
        make_ovms(url, failure_threshold=THRESHOLD) as client,
    ):
        answers = [await client.amake_request("v2/models/m/ready") for _ in range(THRESHOLD + 1)]
        breaker_untouched(client)
    assert answers == [{"ready": False, "status": 503}] * (THRESHOLD + 1)
    assert len(seen) == THRESHOLD + 1
