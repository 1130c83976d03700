"""One pass over a job file before a run (and after it): is every line a
job, how many are there, what would be sent, and where does the job stand.

Before the run the command refuses a file with a bad line (not JSON, not a
job, an id used twice) in one line naming the first of them, its number and
a snippet, unless ``--skip-bad-lines`` says to run the rest; the dry run
prints what the pass counted; after the run the same pass, given what the
results file holds, says how many of the file's jobs are ok, failed or not
run yet (the report's job totals, across every run of the file).

Memory stays flat: one line at a time, ids kept as digests (:class:`.idset.IdSet`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from .idset import IdSet
from .jobs import BadLine, Job, parse_job
from .results import Outcomes

__all__ = ["BadLineInfo", "Scan", "scan_jobs"]

FIRST_BAD_KEPT = 5  # bad lines named in the error (all are counted)
SNIPPET_CHARS = 60
CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text and BPE tokenizers


@dataclass(frozen=True)
class BadLineInfo:
    line: int
    reason: str
    snippet: str

    def describe(self) -> str:
        return f"line {self.line}: {self.reason} (the line starts {self.snippet})"


@dataclass
class Scan:
    """What one pass over the file found."""

    lines: int = 0  # non-blank lines
    jobs: int = 0  # valid lines with an id not seen before
    bad: int = 0
    first_bad: list[BadLineInfo] = field(default_factory=list)
    by_model: Counter[tuple[str, str | None]] = field(
        default_factory=Counter
    )  # (type, model) -> jobs to send
    chars: int = 0  # of the content (messages, input, prompt) of the jobs to send
    to_send: int = 0  # jobs not done by an earlier run
    ok: int = 0  # jobs with an ok result in the results file
    failed: int = 0  # jobs whose results are failures only

    @property
    def not_run(self) -> int:
        """Jobs of the file with no result yet (never sent, or interrupted);
        ``lines`` = ``ok`` + ``failed`` + ``not_run`` + ``bad``."""
        return self.jobs - self.ok - self.failed

    @property
    def estimated_tokens(self) -> int:
        return -(-self.chars // CHARS_PER_TOKEN)

    def problem(self) -> str | None:
        """The one line that says what is wrong with the file, or None."""
        if self.lines == 0:
            return "has no job lines (it is empty or blank); write one JSON job per line"
        if self.bad == 0:
            return None
        first = self.first_bad[0].describe()
        more = self.bad - 1
        others = (
            ""
            if more == 0
            else f"; {more} more bad line{'s' if more > 1 else ''} ("
            + ", ".join(str(b.line) for b in self.first_bad[1:])
            + (", ..." if more >= len(self.first_bad) else "")
            + ")"
        )
        return f"{first}{others}; fix the file, or pass --skip-bad-lines to run the other lines"


def scan_jobs(
    path: str,
    *,
    check: Callable[[Job], tuple[str, str | None]] = lambda job: (job.model or "", None),
    outcomes: Outcomes | None = None,
    retry_failed: bool = False,
    input_format: str = "auto",
) -> Scan:
    """Read the whole file once (see the module docstring).  ``outcomes``:
    what the results file holds, to count jobs done and still to send;
    ``input_format``: as :func:`.jobs.parse_job` takes it; ``check`` gives
    a job's model and what makes it impossible to send (None: nothing), so
    a line the backend would refuse is a bad line before anything is sent."""
    scan = Scan()
    seen = IdSet()
    outcomes = outcomes if outcomes is not None else Outcomes()
    with open(path, "rb") as source:
        for number, raw in enumerate(source, start=1):
            if not raw.strip():
                continue
            scan.lines += 1
            item = parse_job(raw, number, input_format)
            if isinstance(item, BadLine):
                _bad(scan, item.line, item.reason, raw)
                continue
            if not seen.add(item.id):
                _bad(scan, number, f"id {item.id!r} already used on an earlier line", raw)
                continue
            model, problem = check(item)
            if problem is not None:
                _bad(scan, number, problem, raw)
                continue
            scan.jobs += 1
            if item.id in outcomes.ok:
                scan.ok += 1
            elif item.id in outcomes.failed:
                scan.failed += 1
            if outcomes.done(item.id, retry_failed):
                continue
            scan.to_send += 1
            scan.by_model[(item.type, model)] += 1
            scan.chars += _chars(item.content)
    return scan


def _bad(scan: Scan, line: int, reason: str, raw: bytes) -> None:
    scan.bad += 1
    if len(scan.first_bad) < FIRST_BAD_KEPT:
        scan.first_bad.append(BadLineInfo(line, reason, snippet(raw)))


def snippet(raw: bytes) -> str:
    """The start of a line, quoted, every unprintable character escaped: safe
    on any terminal whatever bytes the file holds."""
    text = raw.strip().decode("utf-8", "replace")
    cut = text[:SNIPPET_CHARS]
    return json.dumps(cut, ensure_ascii=True) + ("..." if len(text) > SNIPPET_CHARS else "")


def _chars(content: object) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(_chars(item) for item in content)
    if isinstance(content, dict):
        return sum(_chars(value) for name, value in content.items() if name in ("content", "text"))
    return 0
