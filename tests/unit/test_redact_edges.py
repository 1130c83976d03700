"""Redaction at its edges: where fragment masking starts, a mask that completes another
secret, URLs without a scheme or credentials."""

from __future__ import annotations

from ipfs_accelerate_py.resilience.redact import (
    MIN_FRAGMENT_SECRET_CHARS,
    public_url,
    redact,
)

TWENTY = "sk-0123456789abcdefg"  # exactly MIN_FRAGMENT_SECRET_CHARS characters
NINETEEN = TWENTY[:-1]


def test_fragments_are_masked_from_twenty_characters_on():
    assert len(TWENTY) == MIN_FRAGMENT_SECRET_CHARS == 20
    assert redact("Incorrect key sk-01234567... given", [TWENTY]) == "Incorrect key ***... given"
    assert redact("ends with ...9abcdefg here", [TWENTY]) == "ends with ...*** here"
    # one character shorter: a made-up key, whose fragments are ordinary words
    assert redact("Incorrect key sk-01234567... given", [NINETEEN]) == (
        "Incorrect key sk-01234567... given"
    )


def test_a_mask_that_completes_a_secret_holding_the_mask_is_masked_whole():
    long_key = "sk-proj-abcdefghijklmnop"
    odd_key = "***!zzzzzzzz"  # a secret that itself holds the mask
    text = "key sk-proj-abcd!zzzzzzzz end"
    assert redact(text, [long_key, odd_key]) == "key *** end"
    assert redact(text, [odd_key, long_key]) == "key *** end"


def test_public_url_keeps_a_url_without_scheme_or_credentials():
    assert public_url("localhost:8000/v1") == "localhost:8000/v1"
    assert public_url("http://host:1/v1") == "http://host:1/v1"
    assert public_url("http://user:pw@host:1/v1") == "http://***@host:1/v1"
