"""``opea`` against the simulator's OpenAI format (``simulator_path="/v1"``)
over real loopback HTTP: the microservice's chat path, no key unless one is
set, streams, errors with retries as the core decides, and the operations
the microservice lacks refused before anything is sent.  The OpenAI tests
cover the core in depth; this file checks the OPEA binding of it.
"""

from __future__ import annotations

import pytest

from ipfs_accelerate_py.api_backends.opea import opea
from ipfs_accelerate_py.providers.openai_compatible import OPEA
from ipfs_accelerate_py.resilience.errors import (
    AuthenticationError,
    InvalidInputError,
    RateLimitError,
)
from ipfs_accelerate_py.simulator import key_fingerprint

from ..helpers import (
    FAST,
    REPLY_PREFIX,
    ClientFactory,
    client_fixture,
    joined_deltas,
    messages,
    reply_text,
)

MODEL = OPEA.default_chat_model
KEY = "opea-gateway-token-0123456789"


make_opea = ClientFactory(opea, "opea_api_base", "opea_api_key", FAST)
client = client_fixture(make_opea)


def test_chat_without_a_key_on_the_microservices_path(simulator, client):
    assert (
        reply_text(client.chat(MODEL, messages("What is OPEA?"))) == REPLY_PREFIX + "What is OPEA?"
    )
    counted = simulator.counters()
    assert counted["by_path"] == {"/v1/chat/completions": 1}
    assert counted["by_key"] == {key_fingerprint(None): 1}


def test_authorization_only_when_a_key_is_set(recorder):
    base_url, seen = recorder
    with make_opea(base_url) as anonymous, make_opea(base_url, key=KEY) as keyed:
        anonymous.chat(MODEL, messages("a"))
        keyed.chat(MODEL, messages("b"))
    (method, path, plain, body), (_, _, with_key, _) = seen
    assert (method, path) == ("POST", "/v1/chat/completions")
    assert "authorization" not in {k.lower() for k in plain}
    assert {k.lower(): v for k, v in with_key.items()}["authorization"] == f"Bearer {KEY}"
    assert (
        body == b'{"model":"Intel/neural-chat-7b-v3-3","messages":[{"role":"user","content":"a"}]}'
    )


def test_stream(simulator, client):
    with client.chat(MODEL, messages("stream from opea"), stream=True) as stream:
        chunks = list(stream)
    assert joined_deltas(chunks) == REPLY_PREFIX + "stream from opea"
    assert simulator.counters()["streams"] == {"started": 1, "finished": 1}


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.list_models(),
        lambda c: c.embeddings("bge", "x"),
        lambda c: c.completions(MODEL, "x"),
    ],
    ids=["models", "embeddings", "completions"],
)
def test_operations_the_microservice_lacks_never_reach_it(simulator, client, call):
    with pytest.raises(InvalidInputError, match="the opea backend has no"):
        call(client)
    assert simulator.counters()["requests_total"] == 0


@pytest.mark.parametrize("key", [None, "wrong-token"], ids=["no key", "wrong key"])
def test_401_when_the_gateway_wants_another_key(simulator, key):
    simulator.configure(valid_keys=[KEY])
    with make_opea(simulator.url + OPEA.simulator_path, key=key, max_retries=3) as backend:
        with pytest.raises(AuthenticationError) as caught:
            backend.chat(MODEL, messages("x"))
    assert caught.value.status == 401
    assert simulator.counters()["requests_total"] == 1


def test_the_servers_rate_limit_is_survived_and_5xx_retried(simulator):
    simulator.configure(rate_limits={"rpm": 1}, rate_window=0.2, fail_next=1)
    with make_opea(simulator.url + OPEA.simulator_path, max_retries=6) as backend:
        replies = [reply_text(backend.chat(MODEL, messages(f"q{i}"))) for i in range(2)]
    assert replies == [REPLY_PREFIX + "q0", REPLY_PREFIX + "q1"]
    counted = simulator.counters()
    assert counted["rate_limited"] >= 1 and counted["faults"]["error"] == 1
    assert counted["by_status"]["200"] == 2


def test_429_without_retries_carries_the_servers_wait(simulator):
    simulator.configure(rate_limits={"rpm": 1}, rate_window=30.0)
    with make_opea(simulator.url + OPEA.simulator_path, max_retries=0) as backend:
        backend.chat(MODEL, messages("first"))
        with pytest.raises(RateLimitError) as caught:
            backend.chat(MODEL, messages("second"))
    assert 29.0 < caught.value.retry_after <= 30.0
