"""The one redaction rule for text from outside (server messages and bodies,
command lines) before it reaches an error, a log, a report or a file.

Servers echo the key they were sent ("Incorrect API key provided:
sk-abc12***...wxyz").  What :func:`redact` does with each secret:

* Shorter than :data:`MIN_SECRET_CHARS` (8) characters: it is no secret and
  is left alone.  Local servers (vLLM, Ollama bridges, TGI) take placeholders
  such as ``x``, ``EMPTY``, ``none`` or ``abc``; masking those would turn
  "Model not found" into "Mod*** not found" or "none of" into "*** of".
* 8 characters or more: the whole secret is replaced by :data:`MASK`
  wherever it occurs, even inside a longer word; occurrences of several
  secrets that overlap become one :data:`MASK`, so the result is
  the same whatever order the secrets come in (a set's order follows the
  hash seed).
* :data:`MIN_FRAGMENT_SECRET_CHARS` (20) characters or more, as real API
  keys are: also every *token* (a maximal run of ``[A-Za-z0-9_-]``) that is
  the start of the secret and at least :data:`PREFIX_CHARS` long, or its end
  and at least :data:`SUFFIX_CHARS` long: the fragments servers echo.  A
  fragment inside a longer run of such characters is an ordinary word and is
  kept; so is a word that merely ends a shorter, made-up key ("refused" at
  the end of ``sk-refused``).

Nothing else changes: the server's own words stay readable.  Pure (no I/O),
and cheap when there is nothing to mask: a value with no secret in it is
returned as the same object.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = [
    "MASK",
    "public_url",
    "MIN_FRAGMENT_SECRET_CHARS",
    "MIN_SECRET_CHARS",
    "PREFIX_CHARS",
    "SUFFIX_CHARS",
    "redact",
]

MASK = "***"
MIN_SECRET_CHARS = 8  # shorter "keys" are placeholders, not secrets
PREFIX_CHARS = 8  # a token starting a secret is masked from this length up
SUFFIX_CHARS = 6  # a token ending a secret is masked from this length up
MIN_FRAGMENT_SECRET_CHARS = (
    20  # fragments are masked for secrets this long (a 6-letter end of a short one is a word)
)

_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


def redact(value: Any, secrets: Iterable[str | None]) -> Any:
    """``value`` with ``secrets`` masked by the rule above.

    A ``str`` gives a ``str``; ``bytes`` give ``bytes`` (read as UTF-8, any
    other byte kept as it is); a dict, list or tuple gives one of the same
    kind with its strings (keys too) redacted, recursively; anything else is
    returned unchanged.  When nothing is masked the same object comes back.
    """
    marks = sorted(
        {s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_CHARS},
        key=lambda s: (-len(s), s),
    )
    if not marks:
        return value
    return _redact(value, marks)


def _redact(value: Any, marks: list[str]) -> Any:
    if isinstance(value, str):
        return _text(value, marks)
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode("utf-8", "surrogateescape")
        masked = _text(text, marks)
        return value if masked is text else type(value)(masked.encode("utf-8", "surrogateescape"))
    if isinstance(value, dict):
        items = [(_redact(k, marks), _redact(v, marks)) for k, v in value.items()]
        if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items(), strict=False)):
            return value
        return dict(items)
    if isinstance(value, (list, tuple)):
        parts = [_redact(v, marks) for v in value]
        if all(p is v for p, v in zip(parts, value, strict=False)):
            return value
        return type(value)(parts) if type(value) in (list, tuple) else parts
    return value


def _text(text: str, marks: list[str]) -> str:
    masked = _without_whole(text, marks)
    long = [m for m in marks if len(m) >= MIN_FRAGMENT_SECRET_CHARS]
    if any(m[:PREFIX_CHARS] in masked or m[-SUFFIX_CHARS:] in masked for m in long):
        masked = _TOKEN.sub(lambda token: _token(token.group(), long), masked)
        masked = _without_whole(
            masked, marks
        )  # a mask completes a secret only if the secret holds "***"
    return text if masked == text else masked


def _without_whole(text: str, marks: list[str]) -> str:
    """Every character of every occurrence of every mark, overlapping ones
    included, masked: one ``***`` per run of such characters.  Replacing the
    marks one after the other would depend on their order (two keys that
    overlap in the text: the first replaced breaks the other, whose rest
    shows), and a set's order depends on the hash seed."""
    while True:  # each pass shortens the text (a mark is longer than MASK): it ends
        spans = sorted(_occurrences(text, marks))
        if not spans:
            return text
        out: list[str] = []
        end = 0
        for start, stop in spans:
            if not out or start >= end:  # a span that overlaps the last one extends it
                out += [text[end:start], MASK]
            end = max(end, stop)
        out.append(text[end:])
        text = "".join(out)


def _occurrences(text: str, marks: list[str]) -> Iterator[tuple[int, int]]:
    for mark in marks:
        at = text.find(mark)
        while at >= 0:
            yield at, at + len(mark)
            at = text.find(mark, at + 1)


def _token(token: str, marks: list[str]) -> str:
    for mark in marks:
        if (len(token) >= PREFIX_CHARS and mark.startswith(token)) or (
            len(token) >= SUFFIX_CHARS and mark.endswith(token)
        ):
            return MASK
    return token


def public_url(url: str) -> str:
    """``url`` without the credentials a ``user:password@`` part holds, for
    reprs and reports (the client still sends them)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return url
    return f"{scheme}://{MASK}@{authority.rpartition('@')[2]}{slash}{path}"
