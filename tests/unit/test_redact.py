"""The one redaction rule (resilience/redact.py): whole keys and their echoed
fragments go, placeholder "keys" and ordinary words stay."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipfs_accelerate_py.resilience.errors import AuthenticationError, classify_status
from ipfs_accelerate_py.resilience.redact import MASK, MIN_SECRET_CHARS, public_url, redact

LONG = "sk-eRqhqWJYAXeRpzds3mOjAqnJcXKV5NDk0MEgr0VrZz1FB6D0"  # 51 characters, as OpenAI keys are
KEY_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


@pytest.mark.parametrize(
    "text, key, expected",
    [
        # placeholders of local servers are no secret: never masked, as words or inside them
        ("Model not found", "x", "Model not found"),
        ("Incorrect API key provided: x", "x", "Incorrect API key provided: x"),
        (
            "EMPTY is not a valid key; EMPTYING the cache",
            "EMPTY",
            "EMPTY is not a valid key; EMPTYING the cache",
        ),
        ("none of the models match", "none", "none of the models match"),
        ("key abc refused: abcd is unknown", "abc", "key abc refused: abcd is unknown"),
        ("seven7x", "seven7x", "seven7x"),  # 7 characters: still a placeholder
        # a long key goes wherever it is
        (f"Incorrect API key provided: {LONG}.", LONG, f"Incorrect API key provided: {MASK}."),
        (f"Bearer {LONG}", LONG, f"Bearer {MASK}"),
        (f"token={LONG}&x=1", LONG, f"token={MASK}&x=1"),
        (f"prefix{LONG}suffix", LONG, f"prefix{MASK}suffix"),  # even inside a word
        (f"{LONG}{LONG}", LONG, MASK + MASK),
        ("eight8ch is wrong", "eight8ch", f"{MASK} is wrong"),  # 8 characters: a secret
        # and so do the fragments servers echo, as tokens
        (
            f"Incorrect API key provided: {LONG[:8]}...{LONG[-6:]}",
            LONG,
            f"Incorrect API key provided: {MASK}...{MASK}",
        ),
        (f"key {LONG[:8]}**********{LONG[-4:]}", LONG, f"key {MASK}**********{LONG[-4:]}"),
        (
            f"key {LONG[:14]}... refused",
            LONG,
            f"key {MASK}... refused",
        ),  # a longer start is masked too
        (f"ends with {LONG[-10:]}", LONG, f"ends with {MASK}"),
        # fragments inside longer words are other words
        (f"x{LONG[:8]}y and {LONG[-6:]}z", LONG, f"x{LONG[:8]}y and {LONG[-6:]}z"),
        # shorter than the fragment lengths: kept
        (f"{LONG[:7]} and {LONG[-5:]}", LONG, f"{LONG[:7]} and {LONG[-5:]}"),
        ("nothing to see", LONG, "nothing to see"),
        ("", LONG, ""),
    ],
)
def test_the_rule_table(text, key, expected):
    assert redact(text, [key]) == expected


def test_several_secrets_none_and_short_ones_mixed():
    other = "gsk_" + "Q" * 40
    text = f"tried {LONG} then {other}, then x"
    assert redact(text, [None, "", "x", LONG, other]) == f"tried {MASK} then {MASK}, then x"


def test_a_key_inside_another_goes_whole():
    inner = LONG[3:20]
    assert redact(f"<{LONG}>", [inner, LONG]) == f"<{MASK}>"


def test_bodies_are_redacted_recursively_and_keep_their_shape():
    body = {
        "error": {
            "message": f"Incorrect API key provided: {LONG}",
            "type": "invalid_request_error",
            "code": 401,
        },
        "details": [f"key {LONG[:8]}...", ("tuple", LONG), 3.5, None, True],
        LONG: "a key as a key",
    }
    out = redact(body, [LONG])
    assert out == {
        "error": {
            "message": f"Incorrect API key provided: {MASK}",
            "type": "invalid_request_error",
            "code": 401,
        },
        "details": [f"key {MASK}...", ("tuple", MASK), 3.5, None, True],
        MASK: "a key as a key",
    }
    assert body["error"]["message"].endswith(LONG)  # the input is not modified


def test_bytes_stay_bytes_and_odd_bytes_survive():
    raw = b'{"error": "bad key ' + LONG.encode() + b'"}\xff\xfe'
    out = redact(raw, [LONG])
    assert out == b'{"error": "bad key ***"}\xff\xfe'
    assert isinstance(redact(bytearray(raw), [LONG]), bytearray)


@pytest.mark.parametrize("value", ["Model x not found", b"Model x", {"a": ["b", ("c",)]}, 42, None])
def test_nothing_to_mask_gives_back_the_same_object(value):
    assert redact(value, [LONG, "x"]) is value
    assert redact(value, []) is value


def test_an_error_keeps_its_body_redacted_and_its_words():
    body = {
        "error": {
            "message": f"Incorrect API key provided: {LONG}. You can find your API key at https://x"
        }
    }
    error = classify_status(401, {}, body, wall_now=0.0, provider="openai")
    assert error.redact([LONG]) is error
    assert isinstance(error, AuthenticationError)
    assert (
        error.message
        == f"Incorrect API key provided: {MASK}. You can find your API key at https://x"
    )
    assert error.args == (error.message,)
    assert error.body == {"error": {"message": error.message}}
    placeholder = classify_status(
        401, {}, {"error": {"message": "Model x not found"}}, wall_now=0.0
    )
    assert placeholder.redact(["x"]).message == "Model x not found" and placeholder.body is not None


# ------------------------------------------------------------------ properties

texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
long_keys = st.text(alphabet=KEY_CHARS + ".*/+=", min_size=MIN_SECRET_CHARS, max_size=64)


@settings(max_examples=300, deadline=None)
@given(before=texts, key=long_keys, after=texts, times=st.integers(1, 3))
def test_a_long_key_embedded_anywhere_never_survives(before, key, after, times):
    text = before + (key + after) * times
    assert key not in redact(text, [key])
    assert key.encode() not in redact(text.encode("utf-8", "surrogatepass"), [key])


@settings(max_examples=300, deadline=None)
@given(
    words=st.lists(st.text(alphabet=KEY_CHARS, min_size=1, max_size=12), max_size=8),
    key=st.text(alphabet=KEY_CHARS, min_size=1, max_size=MIN_SECRET_CHARS - 1),
    cut=st.integers(0, 12),
)
def test_a_short_key_leaves_the_text_unchanged(words, key, cut):
    text = " ".join(w[:cut] + key + w[cut:] for w in words) + f" key {key}."
    assert redact(text, [key]) == text


def test_a_word_ending_a_short_made_up_key_is_kept():
    assert (
        redact("connection refused to 127.0.0.1:9", ["sk-refused"])
        == "connection refused to 127.0.0.1:9"
    )
    assert redact("key sk-refused is wrong", ["sk-refused"]) == "key *** is wrong"


@pytest.mark.parametrize(
    "url, shown",
    [
        ("http://user:pw-secret@proxy.example:3128/v1", "http://***@proxy.example:3128/v1"),
        ("https://api.openai.com/v1", "https://api.openai.com/v1"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("https://h.example/v1?x=a@b", "https://h.example/v1?x=a@b"),
    ],
)
def test_a_url_is_shown_without_its_credentials(url, shown):
    assert public_url(url) == shown


def test_a_clients_repr_never_shows_credentials_in_its_base_url():
    from ipfs_accelerate_py.api_backends import openai_api

    client = openai_api(
        metadata={
            "openai_api_key": "sk-x",
            "openai_base_url": "http://bob:hunter2-long@127.0.0.1:9/v1",
        }
    )
    try:
        assert "hunter2" not in repr(client) and "127.0.0.1:9/v1" in repr(client)
    finally:
        client.close()


def test_a_clients_repr_names_its_keys_never_their_secrets():
    from ipfs_accelerate_py.api_backends import openai_api

    secret = "sk-team-a-0123456789abcdefghijklmn"
    client = openai_api(
        metadata={
            "openai_base_url": "http://127.0.0.1:9/v1",
            "api_keys": [{"name": "team-a", "key": secret}],
        }
    )
    try:
        assert "key=team-a" in repr(client) and secret not in repr(client)
        client.add_api_key("team-b", secret[::-1])
        assert "keys=team-a,team-b" in repr(client)
    finally:
        client.close()
