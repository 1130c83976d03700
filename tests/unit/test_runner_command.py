"""The run command's set-up: the client metadata from flags, config and environment."""

from __future__ import annotations

import pytest

from ipfs_accelerate_py.api_backends import BACKENDS
from ipfs_accelerate_py.runner.command import UsageError, client_metadata, load_config

OPENAI = BACKENDS["openai"]


def test_nothing_configured_means_the_embedded_simulator_with_a_placeholder_key():
    assert client_metadata(OPENAI) == {
        "openai_api_base": "simulator", "openai_api_key": "simulator", "on_circuit_open": "wait", "request_deadline": None,
    }  # fmt: skip


def test_a_run_waits_for_the_circuit_unless_its_settings_say_otherwise():
    assert client_metadata(OPENAI)["on_circuit_open"] == "wait"
    assert (
        client_metadata(OPENAI, settings={"on_circuit_open": "fail"})["on_circuit_open"] == "fail"
    )


def test_a_run_has_no_request_deadline_unless_asked_so_outages_within_max_outage_lose_nothing():
    assert client_metadata(OPENAI)["request_deadline"] is None
    assert client_metadata(OPENAI, settings={"request_deadline": 30.0})["request_deadline"] == 30.0


def test_only_a_named_target_means_the_real_service(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-0123456789abcdef")
    assert (
        client_metadata(OPENAI)["openai_api_base"] == "simulator"
    )  # an exported key alone: still the simulator
    assert "openai_api_base" not in client_metadata(
        OPENAI, named=True
    )  # --api openai: the real service, its env key


def test_several_keys_are_named_and_share_the_per_key_limits():
    metadata = client_metadata(
        OPENAI, base_url="http://127.0.0.1:9/v1", keys=["sk-a", "sk-b"], key_limits={"rpm": 60, "tpm": None},
        settings={"max_retries": 5},
    )  # fmt: skip
    assert metadata["openai_api_base"] == "http://127.0.0.1:9/v1"
    assert metadata["api_keys"] == [
        {"name": "key1", "key": "sk-a", "rpm": 60},
        {"name": "key2", "key": "sk-b", "rpm": 60},
    ]
    assert metadata["max_retries"] == 5


def test_config_keys_come_first_with_their_own_limits():
    metadata = client_metadata(
        OPENAI, config_keys=[{"name": "team", "key": "sk-t", "tpm": 1000}], keys=["sk-x"]
    )
    assert [k["name"] for k in metadata["api_keys"]] == ["team", "key1"]
    assert (
        "openai_api_base" not in metadata
    )  # keys given: the real service unless a base URL says otherwise


def test_a_config_file_is_read_and_unknown_sections_are_refused(tmp_path):
    good = tmp_path / "run.yaml"
    good.write_text(
        "api: groq\nmodel: llama\nkeys:\n  - {name: a, key: k1, rpm: 10}\nsettings: {max_retries: 2}\n"
    )
    assert load_config(str(good)) == {
        "api": "groq",
        "model": "llama",
        "keys": [{"name": "a", "key": "k1", "rpm": 10}],
        "settings": {"max_retries": 2},
    }
    bad = tmp_path / "bad.yaml"
    bad.write_text("api: openai\nretries: 3\n")
    with pytest.raises(UsageError, match="retries"):
        load_config(str(bad))
