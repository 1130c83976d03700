"""The redaction rule does not depend on the order of the secrets, nor on the
hash seed: every character of every occurrence of every secret is masked,
overlapping occurrences included (hypothesis over random keys)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ipfs_accelerate_py.resilience.redact import redact

ROOT = Path(__file__).resolve().parents[2]
FILLER = " .:,;()\n"
HASH_SEEDS = ("0", "1", "2", "3", "17", "4242")

# keys from a two-letter alphabet overlap one another all the time; real keys rarely do
overlapping_keys = st.text(alphabet="ab", min_size=8, max_size=36)
real_keys = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-",
    min_size=20,
    max_size=60,
)


@st.composite
def tied_keys(draw):
    """Keys of one length: their order is left to the set they are in, unless the rule fixes it."""
    size = draw(st.integers(8, 12))
    return st.text(alphabet="ab", min_size=size, max_size=size)


@st.composite
def cases(draw):
    """``(text, secrets)``: a text made of the secrets and filler only."""
    keys = draw(st.one_of(st.just(overlapping_keys), st.just(real_keys), tied_keys()))
    secrets = draw(st.lists(keys, min_size=1, max_size=4, unique=True))
    parts = draw(
        st.lists(
            st.one_of(st.sampled_from(secrets), st.text(alphabet=FILLER, max_size=3)), max_size=8
        )
    )
    return "".join(parts), secrets


def shown(text: str, secrets: list) -> set:
    """The characters of the output that could belong to a secret (none should)."""
    return set(text) - set(FILLER) - {"*"}


@settings(max_examples=300)
@given(cases(), st.randoms(use_true_random=False))
def test_every_character_of_every_occurrence_is_masked_in_any_order(case, rnd):
    text, secrets = case
    masked = redact(text, secrets)
    assert shown(masked, secrets) == set(), (text, secrets, masked)
    shuffled = list(secrets)
    rnd.shuffle(shuffled)
    assert redact(text, shuffled) == masked
    assert redact(text, set(secrets)) == masked


SCRIPT = """
import json, sys
from ipfs_accelerate_py.resilience.redact import redact
print(json.dumps([redact(text, set(secrets)) for text, secrets in json.load(sys.stdin)]))
"""


@settings(max_examples=5, deadline=None)
@given(st.lists(cases(), min_size=20, max_size=40))
def test_the_result_is_the_same_whatever_the_hash_seed(batch):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    outputs = {}
    for seed in HASH_SEEDS:
        proc = subprocess.run(
            [sys.executable, "-c", SCRIPT],
            input=json.dumps(batch),
            env={**env, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        outputs[seed] = json.loads(proc.stdout)
    for (text, secrets), masked in zip(batch, outputs["0"], strict=True):
        assert shown(masked, secrets) == set(), (text, secrets, masked)
    assert all(out == outputs["0"] for out in outputs.values())
