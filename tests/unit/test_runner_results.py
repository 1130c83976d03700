"""The results file: a line counts only once it is all written; a failed
write leaves whole lines only and refuses the rest; what is read back is
read a bounded line at a time, and only from regular files."""

from __future__ import annotations

import errno
import io
import json
import os

import pytest

from ipfs_accelerate_py.runner import results
from ipfs_accelerate_py.runner.results import Outcomes, ResultLog, ResultWriteError, _lines


def record(i: int) -> dict:
    return {"id": f"q{i}", "line": i, "status": "ok", "result": {"text": "x" * 50}}


def test_a_write_that_fails_half_way_leaves_whole_lines_and_refuses_the_rest(tmp_path, monkeypatch):
    path = tmp_path / "out.jsonl"
    real_write = os.write
    calls = {"n": 0}

    def failing_write(
        fd, data
    ):  # the third line: half of it goes out (a short write), then the disk is full
        calls["n"] += 1
        if calls["n"] == 3:
            return real_write(fd, bytes(data[: len(data) // 2]))
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(results.os, "write", failing_write)
    log = ResultLog(str(path)).open()
    log.write(record(1))
    log.write(record(2))
    with pytest.raises(ResultWriteError, match="No space left on device"):
        log.write(record(3))
    with pytest.raises(ResultWriteError):
        log.write(record(4))  # refused at once: nothing after a failure
    log.close()
    assert log.written == 2
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == [
        "q1",
        "q2",
    ]  # no torn third line


def test_an_overlong_line_is_skipped_in_bounded_pieces():
    source = io.BytesIO(
        b'{"id": "a", "status": "ok"}\n' + b"z" * 5000 + b"\n" + b'{"id": "b", "status": "ok"}\n'
    )
    assert list(_lines(source, cap=1024)) == [
        b'{"id": "a", "status": "ok"}\n',
        b"{}",
        b'{"id": "b", "status": "ok"}\n',
    ]


def test_only_regular_files_are_read_back():
    outcomes = Outcomes.read(
        "/dev/zero"
    )  # an endless device: not read at all (before, a MemoryError)
    assert len(outcomes) == 0


def test_the_file_is_synced_every_n_lines(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(results.os, "fsync", lambda fd: synced.append(fd))
    with ResultLog(str(tmp_path / "out.jsonl"), fsync_every=2) as log:
        for i in range(5):
            log.write(record(i))
        assert len(synced) == 2  # after lines 2 and 4
    assert len(synced) == 3  # and at close
