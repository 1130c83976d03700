"""A job line's priority follows the client's rule (any case, spaces around allowed)."""

from __future__ import annotations

import json

import pytest

from ipfs_accelerate_py.runner.jobs import BadLine, Job, parse_job

CHAT = {"messages": [{"role": "user", "content": "x"}]}


@pytest.mark.parametrize(
    "given, level", [("high", 0), (" High ", 0), ("NORMAL", 1), ("low", 2), (2, 2), (None, 1)]
)
def test_a_line_names_its_priority_as_a_word_or_a_number(given, level):
    line = dict(CHAT, priority=given) if given is not None else CHAT
    job = parse_job(json.dumps(line), 1)
    assert isinstance(job, Job) and job.priority == level and "priority" not in job.params


@pytest.mark.parametrize("given", ["urgent", 5, True])
def test_a_bad_priority_is_a_bad_line_saying_what_to_use(given):
    bad = parse_job(json.dumps(dict(CHAT, priority=given)), 3)
    assert isinstance(bad, BadLine) and bad.line == 3 and "use high, normal or low" in bad.reason
