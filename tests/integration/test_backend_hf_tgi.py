"""``hf_tgi`` against the simulator's TGI format (``simulator_path=""``) over
real loopback HTTP: TGI's own ``/generate`` and ``/generate_stream``, its
OpenAI chat (the simulator's OpenAI routes under ``/v1``), ``/info``; the
request exactly as sent (a recorder server); TGI's errors with retries and
the breaker as the core decides.
"""

from __future__ import annotations

import functools
import json

import pytest

from ipfs_accelerate_py.api_backends.hf_tgi import hf_tgi
from ipfs_accelerate_py.resilience.errors import (
    AuthenticationError,
    CircuitOpenError,
    InvalidRequestError,
    MalformedResponseError,
    NetworkError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from ipfs_accelerate_py.simulator import DEFAULT_MODELS, estimate_tokens, key_fingerprint

from ..helpers import (
    FAST,
    REPLY_PREFIX,
    ClientFactory,
    client_fixture,
    joined_deltas,
    recording_server,
    reply_text,
)

TOKEN = "hf_integration_token_0123456789"
PROMPT = "What is deep learning?"


make_tgi = ClientFactory(hf_tgi, "hf_tgi_api_base", "hf_api_key", FAST)
client = client_fixture(make_tgi)


# ----------------------------------------------------------------- operations


def test_generate_without_a_key_and_its_details(simulator, client):
    plain = client.generate(PROMPT)
    detailed = client.generate(PROMPT, details=True, max_new_tokens=50)
    stats = client.get_stats()
    assert plain == {"generated_text": REPLY_PREFIX + PROMPT}
    details = detailed["details"]
    assert (
        "".join(t["text"] for t in details["tokens"])
        == detailed["generated_text"]
        == REPLY_PREFIX + PROMPT
    )
    assert details["finish_reason"] == "eos_token" and details["generated_tokens"] == len(
        details["tokens"]
    )
    counted = simulator.counters()
    assert counted["by_path"] == {"/generate": 2} and counted["by_format"] == {"tgi": 2}
    assert counted["by_key"] == {"anonymous": 2}
    assert stats["tokens"]["output"] == details["generated_tokens"]  # only the detailed answer says


def test_max_new_tokens_cuts_the_answer(client):
    result = client.generate(PROMPT, max_new_tokens=2, details=True)
    assert result["generated_text"] == "Simulated reply"
    assert result["details"]["finish_reason"] == "length"


def test_generate_stream_ends_with_the_event_carrying_generated_text(simulator, client):
    events = list(client.generate_stream(PROMPT, details=True))
    stats = client.get_stats()
    assert [e.raw["generated_text"] for e in events[:-1]] == [None] * (len(events) - 1)
    assert (
        "".join(e.text for e in events) == events[-1].raw["generated_text"] == REPLY_PREFIX + PROMPT
    )
    assert [e.raw["index"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1].raw["details"]["input_length"] == estimate_tokens(PROMPT)
    assert [e.finish_reason for e in events[:-1]] == [None] * (len(events) - 1)
    assert events[-1].finish_reason == "stop"  # TGI's "eos_token"
    assert events[-1].usage == {
        "input_tokens": estimate_tokens(PROMPT),
        "output_tokens": len(events),
    }
    counted = simulator.counters()
    assert counted["streams"] == {"started": 1, "finished": 1}
    assert (stats["tokens"]["input"], stats["tokens"]["output"]) == (
        counted["tokens"]["prompt"],
        counted["tokens"]["completion"],
    )


def test_chat_goes_to_tgi_s_openai_route_with_the_model_tgi(simulator, client):
    reply = client.chat(None, [{"role": "user", "content": "hello"}])
    chunks = list(client.chat("tgi", [{"role": "user", "content": "again"}], stream=True))
    assert reply_text(reply) == REPLY_PREFIX + "hello" and reply["model"] == "tgi"
    assert joined_deltas(chunks) == REPLY_PREFIX + "again"
    counted = simulator.counters()
    assert counted["by_path"] == {"/v1/chat/completions": 2}
    assert counted["by_model"] == {"tgi": 2}
    assert client.get_stats()["models"]["tgi"]["requests"] == 2


def test_info_and_list_models(client):
    info = client.info()
    assert info["model_id"] == DEFAULT_MODELS[0]
    assert info["max_total_tokens"] > info["max_input_tokens"] > 0
    assert client.list_models() == [
        {"id": DEFAULT_MODELS[0], "object": "model", "owned_by": "text-generation-inference"}
    ]


def test_a_token_is_sent_as_bearer_and_counted_by_fingerprint(simulator):
    simulator.configure(valid_keys=[TOKEN])
    with make_tgi(simulator.url, key=TOKEN) as backend:
        backend.generate("x")
    assert simulator.counters()["by_key"] == {key_fingerprint(TOKEN): 1}


# ----------------------------------------------------------------- the request as sent


def tgi_answer(method: str, path: str, body: bytes) -> dict:
    return {"model_id": "m"} if method == "GET" else {"generated_text": "ok"}


recording = functools.partial(recording_server, tgi_answer)


def test_request_as_sent():
    with recording() as (url, seen), make_tgi(url, key=TOKEN) as backend:
        backend.generate(PROMPT, max_new_tokens=5, request_id="req-9")
        backend.info()
    (method, path, headers, body), (get_method, get_path, get_headers, get_body) = seen
    assert (method, path) == ("POST", "/generate")
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert (
        headers["content-type"] == "application/json" and headers["x-client-request-id"] == "req-9"
    )
    assert json.loads(body) == {"inputs": PROMPT, "parameters": {"max_new_tokens": 5}}
    assert (get_method, get_path, get_body) == ("GET", "/info", b"")
    assert get_headers["authorization"] == f"Bearer {TOKEN}"


# ----------------------------------------------------------------- errors


def test_a_wrong_token_is_a_401_not_retried(simulator):
    simulator.configure(valid_keys=[TOKEN])
    with make_tgi(simulator.url, key="hf_wrong", max_retries=3) as backend:
        with pytest.raises(AuthenticationError, match="Invalid credentials"):
            backend.generate("x")
    assert simulator.counters()["requests_total"] == 1


def test_an_unknown_route_is_a_404(simulator, client):
    with pytest.raises(NotFoundError):
        client.make_request("generate_everything", {"inputs": "x"})
    assert simulator.counters()["requests_total"] == 1


def test_tgi_validation_is_a_422_with_its_message_not_retried(simulator, client):
    with pytest.raises(
        InvalidRequestError, match="`temperature` must be strictly positive"
    ) as info:
        client.generate("x", temperature=0)
    assert info.value.status == 422
    assert simulator.counters()["by_status"] == {"422": 1}


def test_model_overloaded_429_is_retried_after_the_window(simulator):
    simulator.configure(rate_limits={"rpm": 1}, rate_window=0.2)
    with (
        make_tgi(simulator.url, max_retries=0) as strict,
        pytest.raises(RateLimitError, match="Model is overloaded") as info,
    ):
        strict.generate("first")
        strict.generate("second")
    assert info.value.retry_after is not None and info.value.retry_after <= 0.2
    with make_tgi(simulator.url, max_retries=3) as patient:
        assert patient.generate("third")["generated_text"] == REPLY_PREFIX + "third"
        assert patient.get_stats()["total_retries"] >= 1
    assert patient.circuit_state == "CLOSED"


@pytest.mark.parametrize(
    "entry",
    [
        {
            "status": 424,
            "body": {
                "error": "Request failed during generation: Server error: CUDA OOM",
                "error_type": "generation",
            },
        },
        {
            "status": 500,
            "body": {"error": "Incomplete generation", "error_type": "incomplete_generation"},
        },
        {"status": 503},
    ],
)
def test_server_failures_are_retried(simulator, entry):
    simulator.script([entry, {"status": 200}], path="/generate")
    with make_tgi(simulator.url, max_retries=2) as backend:
        assert backend.generate("later")["generated_text"] == REPLY_PREFIX + "later"
        assert backend.get_stats()["total_retries"] == 1
    assert simulator.counters()["by_status"] == {str(entry["status"]): 1, "200": 1}


def test_a_malformed_body_is_retried(simulator, client):
    simulator.configure(malformed_next=1)
    assert client.generate("fine")["generated_text"] == REPLY_PREFIX + "fine"
    assert simulator.counters()["faults"]["malformed"] == 1


def test_a_malformed_answer_every_time_is_a_malformed_response_error(simulator):
    simulator.configure(malformed_rate=1.0)
    with make_tgi(simulator.url, max_retries=1) as backend, pytest.raises(MalformedResponseError):
        backend.generate("x")


def test_outage_opens_the_breaker_then_fails_fast(simulator):
    simulator.configure(outage=True)
    with make_tgi(simulator.url, max_retries=0, failure_threshold=2, reset_timeout=60) as backend:
        for _ in range(2):
            with pytest.raises(ServerError):
                backend.generate("x")
        with pytest.raises(CircuitOpenError):
            backend.generate("x")
        assert backend.circuit_state == "OPEN"
    assert simulator.counters()["requests_total"] == 2


def test_a_native_stream_cut_before_its_last_event_is_a_network_error(simulator, client):
    simulator.configure(stream_cut_after=2)
    stream = client.generate(PROMPT, stream=True)
    assert next(stream).text == "Simulated"
    assert next(stream).raw["generated_text"] is None
    with pytest.raises(NetworkError, match="after 2 chunks") as info:
        next(stream)
    assert info.value.partial_text == stream.text and info.value.partial_text.startswith(
        "Simulated"
    )
    assert simulator.counters()["faults"]["stream_cut"] == 1


def test_a_malformed_stream_event_is_an_error(simulator, client):
    simulator.configure(stream_malformed_after=1)
    with pytest.raises(MalformedResponseError):
        list(client.generate_stream(PROMPT))
