"""The package's public surface: its exports, its typed settings, ``Priority``,
what a type checker sees, and what importing it costs."""

from __future__ import annotations

import asyncio
import json
import pathlib
import subprocess
import sys
import textwrap

import pytest
import tomllib

import ipfs_accelerate_py
from ipfs_accelerate_py.api_backends import BACKENDS, BaseApiBackend, openai_api
from ipfs_accelerate_py.api_backends.settings_access import ClientSetting
from ipfs_accelerate_py.engine.settings import SETTINGS, Settings
from ipfs_accelerate_py.resilience import batching, breaker, errors, prices, priority_queue, retry
from ipfs_accelerate_py.transport.base import HttpResponse

from ..helpers import QUICK_RETRIES, ClientFactory, stream_answer

ROOT = pathlib.Path(__file__).resolve().parents[2]
SECRET = "sk-test-SECRET-0123456789abcdef"
MESSAGES = [{"role": "user", "content": "hi"}]


def answer(request):
    return HttpResponse(
        200, {}, json.dumps({"choices": [{"message": {"role": "assistant", "content": "ok"}}]})
    )


make_client = ClientFactory(
    openai_api,
    "openai_api_base",
    "openai_api_key",
    QUICK_RETRIES,
    base_url="http://test.invalid/v1",
    key=SECRET,
).in_memory


# ------------------------------------------------------------------ exports


def test_the_top_level_package_exports_backends_priority_and_errors():
    from ipfs_accelerate_py import ApiError, Priority, RateLimitError
    from ipfs_accelerate_py import openai_api as top

    assert top is openai_api
    assert Priority.HIGH == 0 and RateLimitError.__mro__[1] is ApiError
    exported = set(ipfs_accelerate_py.__all__)
    for cls in BACKENDS.values():
        assert cls.__name__ in exported
        assert getattr(ipfs_accelerate_py, cls.__name__) is cls
    error_classes = {
        name
        for name in errors.__all__
        if isinstance(getattr(errors, name), type)
        and issubclass(getattr(errors, name), errors.ApiError)
    }
    assert error_classes <= exported
    for name in ipfs_accelerate_py.__all__:
        assert getattr(ipfs_accelerate_py, name) is not None, name
    assert ipfs_accelerate_py.__version__ == "0.1.0"
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        ipfs_accelerate_py.not_a_name  # noqa: B018


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    script = code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_importing_the_package_loads_nothing_but_itself():
    loaded = _modules_after("import ipfs_accelerate_py")
    ours = {m for m in loaded if m.startswith("ipfs_accelerate_py")}
    assert ours == {
        "ipfs_accelerate_py",
        "ipfs_accelerate_py._version",
    }  # the version is read at import
    assert not {"aiohttp", "yaml", "rich", "boto3"} & loaded


def test_importing_the_public_names_loads_no_optional_extra():
    loaded = _modules_after(
        "from ipfs_accelerate_py import openai_api, s3_kit, Priority, RateLimitError, Settings"
    )
    assert "ipfs_accelerate_py.api_backends.openai_api" in loaded
    heavy = {"boto3", "botocore", "aiohttp", "httpx", "matplotlib", "openai", "litellm", "rich"}
    assert not heavy & {m.split(".")[0] for m in loaded}


def test_py_typed_is_shipped_as_package_data():
    assert (ROOT / "ipfs_accelerate_py" / "py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["ipfs_accelerate_py"]


# ------------------------------------------------------------------ Priority


def test_priority_is_the_queues_own_levels():
    from ipfs_accelerate_py import Priority

    assert [Priority.HIGH, Priority.NORMAL, Priority.LOW] == [
        priority_queue.PRIORITY_HIGH,
        priority_queue.PRIORITY_NORMAL,
        priority_queue.PRIORITY_LOW,
    ]
    assert BaseApiBackend.PRIORITY_HIGH is priority_queue.PRIORITY_HIGH
    assert BaseApiBackend.PRIORITY_LOW is priority_queue.PRIORITY_LOW


def test_queue_methods_take_priority_members_beside_numbers_and_words():
    from ipfs_accelerate_py import Priority

    sent = []

    def counted(request):
        sent.append(request)
        return answer(request)

    client, _ = make_client(counted)
    with client:
        view = client.with_options(priority=Priority.LOW)
        assert "priority=low" in repr(view)
        future = client.queue_with_priority(
            {"endpoint": "chat/completions", "data": {"model": "m", "messages": MESSAGES}},
            Priority.HIGH,
        )
        assert future.result(timeout=10)["choices"][0]["message"]["content"] == "ok"
        for priority in (Priority.NORMAL, 1, "normal"):
            assert client.chat("m", MESSAGES, priority=priority)["choices"]
    assert len(sent) == 4


# ------------------------------------------------------------------ settings


def test_every_setting_is_a_typed_attribute_of_the_client():
    for field in SETTINGS:
        attribute = getattr(BaseApiBackend, field.name)
        assert isinstance(attribute, ClientSetting), field.name
        assert attribute.field is field


def test_client_attributes_read_and_write_the_one_settings_object():
    client, _ = make_client(answer, max_retries=2)
    with client:
        assert isinstance(client.settings, Settings)
        assert client.max_retries == client.settings.max_retries == 2
        client.max_retries = 5
        assert client.settings.max_retries == 5
        client.settings.failure_threshold = 7
        assert client.failure_threshold == 7
        client.request_deadline = None
        assert client.settings.as_dict()["request_deadline"] is None
        with pytest.raises(errors.SettingError, match="'max_concurrent_requests'") as refused:
            client.max_concurrent_requests = 0
        assert refused.value.setting == "max_concurrent_requests"
        assert client.max_concurrent_requests == 5  # unchanged
        view = client.with_options(timeout=3)
        assert (view.timeout, client.timeout) == (3.0, 60.0)
        assert view.settings is client.settings


def test_defaults_are_the_policies_own_constants():
    owned = {
        "max_retries": retry.DEFAULT_MAX_RETRIES,
        "backoff_factor": retry.DEFAULT_BACKOFF_FACTOR,
        "initial_retry_delay": retry.DEFAULT_INITIAL_DELAY,
        "max_retry_delay": retry.DEFAULT_MAX_DELAY,
        "retry_jitter": retry.DEFAULT_JITTER,
        "max_retry_after": retry.DEFAULT_MAX_RETRY_AFTER,
        "failure_threshold": breaker.DEFAULT_FAILURE_THRESHOLD,
        "reset_timeout": breaker.DEFAULT_RESET_TIMEOUT,
        "half_open_max_requests": breaker.DEFAULT_HALF_OPEN_MAX_REQUESTS,
        "breaker_window": breaker.DEFAULT_WINDOW_SECONDS,
        "breaker_minimum_calls": breaker.DEFAULT_MINIMUM_CALLS,
        "queue_size": priority_queue.DEFAULT_QUEUE_SIZE,
        "max_batch_size": batching.DEFAULT_MAX_BATCH_SIZE,
        "batch_timeout": batching.DEFAULT_BATCH_TIMEOUT,
        "prices": prices.DEFAULT_PRICES,
    }
    for name, constant in owned.items():
        assert getattr(Settings, name).default is constant, name
    settings = Settings(environ={})
    assert {field.name: getattr(settings, field.name) for field in SETTINGS} == {
        field.name: field.default for field in SETTINGS
    }


# ---------------------------------------------- track_request_result's errors


@pytest.mark.parametrize(
    "cls",
    [
        getattr(errors, name)
        for name in errors.__all__
        if isinstance(getattr(errors, name), type)
        and issubclass(getattr(errors, name), errors.ApiError)
        and getattr(errors, name) is not errors.ApiError
    ],
    ids=lambda cls: cls.__name__,
)
def test_an_external_error_counts_against_the_circuit_as_the_engine_counts_it(cls):
    client, _ = make_client(answer, failure_threshold=1)
    with client:
        client.track_request_result(False, cls.__name__)
        assert client.circuit_state == ("OPEN" if cls.breaker_failure else "CLOSED")


def test_an_unknown_or_generic_error_type_counts_against_the_circuit():
    for error_type in ("ConnectionError", None, "error"):
        client, _ = make_client(answer, failure_threshold=1)
        with client:
            client.track_request_result(False, error_type)
            assert client.circuit_state == "OPEN", error_type


# ------------------------------------------------------------------ typing


SNIPPET = """
from ipfs_accelerate_py import openai_api, Priority

client = openai_api(metadata={"openai_api_key": "sk-x"})
messages = [{"role": "user", "content": "hi"}]
reveal_type(client.chat("m", messages))
reveal_type(client.chat("m", messages, stream=False))
reveal_type(client.chat(model="m", messages=messages, stream=True, priority=Priority.HIGH))
reveal_type(client.completions("m", "once", stream=True))
for chunk in client.chat("m", messages, stream=True):
    reveal_type(chunk)
reveal_type(client.max_retries)
reveal_type(client.request_deadline)
reveal_type(client.with_options(timeout=5))
reveal_type(client.embeddings("m", ["a", "b"], timeout=5))
reveal_type(client.make_request("models"))
client.embeddings("m", "a", timeout="soon")  # the one error: a per-call option's type


async def main(flag: bool) -> None:
    reveal_type(await client.aembeddings("m", "a"))
    reveal_type(await client.achat("m", messages))
    reveal_type(await client.achat("m", messages, stream=True))
    reveal_type(await client.achat("m", messages, stream=flag))
"""

EXPECTED = [
    "dict[str, Any]",
    "dict[str, Any]",
    "ipfs_accelerate_py.engine.stream.ChunkStream",
    "ipfs_accelerate_py.engine.stream.ChunkStream",
    "ipfs_accelerate_py.engine.stream.StreamChunk",
    "int",
    "float | None",
    "ipfs_accelerate_py.api_backends.openai_api.openai_api",
    "dict[str, Any]",
    "Any",
    "dict[str, Any]",
    "dict[str, Any]",
    "ipfs_accelerate_py.engine.stream.ChunkStream",
    "dict[str, Any] | ipfs_accelerate_py.engine.stream.ChunkStream",
]


def test_a_type_checker_sees_a_stream_for_stream_true_and_a_response_otherwise(tmp_path):
    from mypy import api  # in the test extra: a missing mypy fails here, it does not skip

    snippet = tmp_path / "snippet.py"
    snippet.write_text(textwrap.dedent(SNIPPET))
    stdout, stderr, status = api.run(
        [
            "--strict",
            "--no-error-summary",
            "--python-version=3.10",
            f"--cache-dir={tmp_path / 'cache'}",
            "--config-file=",
            "--follow-imports=silent",  # as for an installed package: its own errors are not the user's
            str(snippet),
        ]
    )
    revealed = [
        line.split('Revealed type is "', 1)[1].rstrip('"')
        for line in stdout.splitlines()
        if "Revealed type is" in line
    ]
    others = [line for line in stdout.splitlines() if "Revealed type is" not in line]
    assert revealed == EXPECTED, stdout
    assert len(others) == 1, stdout
    assert ':17: error: Argument "timeout" has incompatible type "str"' in others[0], stdout


def test_achat_with_stream_true_gives_a_stream_read_with_async_for():
    def streamed(request):
        return stream_answer(
            [b'data: {"choices":[{"delta":{"content":"o"}}]}', b"", b"data: [DONE]", b""]
        )

    client, _ = make_client(streamed)

    async def main():
        stream = await client.achat("m", MESSAGES, stream=True)
        return [chunk async for chunk in stream], stream

    with client:
        chunks, stream = asyncio.run(main())
    assert stream.text == "o" and len(chunks) == 1


def test_hf_tgi_sends_its_one_model_when_chat_or_achat_names_none():
    from ipfs_accelerate_py.api_backends import hf_tgi

    sent = []

    def record(request):
        sent.append(request.json()["model"])
        return answer(request)

    client, _ = ClientFactory(
        hf_tgi, "hf_tgi_api_base", "hf_api_key", QUICK_RETRIES, base_url="http://tgi.invalid"
    ).in_memory(record, key=None)
    with client:
        client.chat(None, MESSAGES)
        asyncio.run(client.achat(messages=MESSAGES))
        client.chat(model="other", messages=MESSAGES)
    assert sent == ["tgi", "tgi", "other"]
