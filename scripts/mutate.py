#!/usr/bin/env python
"""Mutation testing for ``ipfs_accelerate_py/resilience``: do the unit tests pin behaviour?

A small AST mutator of our own (no dependency; mutmut 3 would copy the tree into ``mutants/``,
trampoline every function and run the whole suite for its stats first, which is too heavy for
this 2-core machine and these policy modules). For each module it makes mutants of five kinds:

* operators: ``<``/``<=``, ``>``/``>=``, ``==``/``!=``, ``is``/``is not``, ``in``/``not in``
  swapped; ``+``/``-``, ``*``/``/``, ``//``→``/``, ``%``→``//``, ``**``→``*`` (also in ``+=``
  and friends); ``and``/``or`` swapped; ``not`` dropped;
* constants: numbers ±1, ``True``/``False`` swapped, strings (and f-strings) emptied;
* deleted statements: a statement of a function body replaced by ``pass``;
* return values: ``return X`` becomes ``return None``.

Docstrings (and other bare strings), annotations, ``__all__``, imports, ``if TYPE_CHECKING:``
blocks and private module-level labels (``_TRIP = "trip"``: any other distinct text would do)
are not mutated.
A module with more mutants than ``--max-mutants`` is sampled with a fixed seed (``--seed``), so a
run is reproducible. Each mutant runs only that module's unit tests (``tests/unit/test_<stem>*.py``,
see ``TESTS``) with ``-x`` in a forked child whose import of the module compiles the mutated
tree (nothing is written to disk); a child that outlives ``--timeout`` is killed and counts as
killed. The run is sequential (one core) and stops starting mutants after ``--time-cap`` seconds.

    python scripts/mutate.py                                  # every resilience module
    python scripts/mutate.py --module resilience/retry.py     # one module
    python scripts/mutate.py --module resilience/keys --list  # the mutants, without running

Exit status: 0 when every module reached ``--min-score`` (default 0: report only), else 1.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import random
import select
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, ModuleType

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "ipfs_accelerate_py"
TARGET_DIR = ROOT / PACKAGE / "resilience"
UNIT_TESTS = ROOT / "tests" / "unit"

# Test files per module stem when ``tests/unit/test_<stem>*.py`` is not the whole answer.
TESTS: dict[str, tuple[str, ...]] = {
    "clock": ("test_clock*.py",),
}

# Surviving mutants that are truly equivalent (no input can tell them apart): id -> why.
ALLOWLIST: dict[str, str] = {
    # _goes_alone's last `return False`: its one caller tests truthiness, None is as false
    "resilience/batching.py:365:8:return>None": "None and False are both 'not alone'",
    "resilience/batching.py:365:8:stmt>pass": "falling off the end returns None: as false",
    # `due_by < batch.due_at` vs `<=`: when equal, assigning due_by changes nothing
    "resilience/batching.py:347:34:op0:Lt>LtE": "equal deadlines: the same value assigned",
    # n_tokens == per_input means no input is over per_input: the any() that follows is False
    "resilience/batching.py:363:37:op0:Gt>GtE": "at the cap exactly, no input can be over it",
    # get_header's exact-name lookup is a fast path: the case-blind loop after it finds the same
    "resilience/errors.py:356:4:stmt>pass": "the loop that follows finds the same value",
    "resilience/errors.py:357:8:stmt>pass": "the loop that follows finds the same value",
    # a Retry-After number refused (negative, NaN, infinite): the date parser refuses it too
    "resilience/errors.py:401:8:stmt>pass": "parsedate_to_datetime raises on any such number",
    # redact() without marks: a fast path, _redact would give back the same objects anyway
    "resilience/redact.py:68:4:stmt>pass": "with no marks nothing is masked: the same object",
    "resilience/redact.py:69:8:stmt>pass": "with no marks nothing is masked: the same object",
    # public_url without "://": the authority is then empty, and the next test returns url
    "resilience/redact.py:145:4:stmt>pass": "no '@' in an empty authority: url returned",
    "resilience/redact.py:146:8:stmt>pass": "no '@' in an empty authority: url returned",
    # zip(strict=...) over a list and the sequence it was built from: lengths always agree
    "resilience/redact.py:82:92:False>True": "the two sides have the same length by construction",
    "resilience/redact.py:87:59:False>True": "the two sides have the same length by construction",
    # breaker: _zero_counters' half-open success count; every transition zeroes it before
    # HALF_OPEN (its only reader) begins
    "resilience/breaker.py:284:8:stmt>pass": "zeroed again by the transition into HALF_OPEN",
    "resilience/breaker.py:284:36:0+1": "zeroed again by the transition into HALF_OPEN",
    "resilience/breaker.py:284:36:0-1": "zeroed again by the transition into HALF_OPEN",
    # breaker.state()'s lock-free CLOSED path: the locked path answers the same
    "resilience/breaker.py:320:8:stmt>pass": "the locked path gives the same state",
    "resilience/breaker.py:321:12:stmt>pass": "the locked path gives the same state",
    # _is_stale's closing `return False`: callers test truthiness
    "resilience/breaker.py:501:8:return>None": "None is as false as False",
    "resilience/breaker.py:501:8:stmt>pass": "None is as false as False",
    # permit numbers are opaque: starting one higher changes no comparison between them
    "resilience/breaker.py:271:23:0+1": "permits only compare with each other",
    "resilience/breaker.py:272:28:1-1": "permits start at 1: none is below 1 or 0",
    # default durations of -1 s: never slow (slow_call_duration is > 0), as 0 s is not
    "resilience/breaker.py:352:55:0.0-1": "a negative duration is never slow, nor is 0",
    "resilience/breaker.py:378:55:0.0-1": "a negative duration is never slow, nor is 0",
    "resilience/breaker.py:387:59:0.0-1": "a negative duration is never slow, nor is 0",
    # an ignored outcome's duration is not read
    "resilience/breaker.py:384:51:0.0+1": "ignored outcomes record no duration",
    "resilience/breaker.py:384:51:0.0-1": "ignored outcomes record no duration",
    # _locked's and on_success's early returns when no transition happened: going on hands
    # an empty list of events to _notify, which then calls nothing
    "resilience/breaker.py:416:16:stmt>pass": "_notify over no events is a no-op",
    "resilience/breaker.py:368:20:stmt>pass": "_notify over no events is a no-op",
    # _OutcomeWindow.newest_until, the edge of on_success's quick path: any time at or
    # below the true edge is right (a success past it takes the full path, which does the
    # same); these keep it so (2**-49, 2**-51 still cover three roundings; 0 * width and
    # following <= 1 only shut the path, a negative edge too)
    # the CLOSED fast paths and the quick path: switched off, the full path answers the same
    "resilience/breaker.py:268:23:True>False": "CLOSED calls take the full path, same answer",
    "resilience/breaker.py:327:12:stmt>pass": "the locked _acquire issues the same permit",
    "resilience/breaker.py:562:12:stmt>pass": "a shut quick path counts successes in full",
    "resilience/breaker.py:213:17:False>True": "a prune claimed only shuts the quick path",
    # _last_now is read only by a reset() that leaves OPEN or HALF_OPEN, after it was set
    "resilience/breaker.py:277:8:stmt>pass": "never read before leaving CLOSED sets it",
    "resilience/breaker.py:364:16:stmt>pass": "never read before leaving CLOSED sets it",
    "resilience/breaker.py:571:12:return>None": "None is as false as False",
    "resilience/breaker.py:204:11:op0:LtE>Lt": "an edge of 0.0 for bucket -1 is below the true one",
    "resilience/breaker.py:204:24:0+1": "only shuts the quick path for bucket 0",
    "resilience/breaker.py:204:24:0-1": "an edge of 0.0 for bucket -1 is below the true one",
    "resilience/breaker.py:207:42:1.0-1": "a negative edge only shuts the quick path",
    "resilience/breaker.py:207:54:50+1": "1 - 2**-51 is still below the true edge",
    "resilience/breaker.py:207:54:50-1": "1 - 2**-49 is still below the true edge",
    # priority_queue.ensure_room's lock-free pass: the locked check after it decides the same
    "resilience/priority_queue.py:212:8:stmt>pass": "the locked check decides the same",
    "resilience/priority_queue.py:213:12:stmt>pass": "the locked check decides the same",
    # requeue's `del now` only marks the argument unused
    "resilience/priority_queue.py:242:8:stmt>pass": "deleting an unused local changes nothing",
    # having waited exactly 0 s: the aged level is the entry's own either way
    "resilience/priority_queue.py:368:11:op0:LtE>Lt": "0 // aging lowers no level",
    # w // a and int(w / a) (w > 0) differ only when the quotient is 3 or more: HIGH either way
    "resilience/priority_queue.py:370:55:FloorDiv>Div": "they differ only from 3 levels up",
    # provider_message: bytes.decode(errors="replace") cannot raise (the branch is no cover)
    "resilience/errors.py:457:12:stmt>pass": "unreachable: decode with 'replace' never fails",
    # a wait in [100, 101) s prints the same with :.0f and :.3g
    "resilience/errors.py:148:64:100+1": "f'{w:.0f}' == f'{w:.3g}' for 100 <= w < 101",
    # Outcome's fast path: when every figure is None or a count >= 0 it returns early; the
    # full validation after it accepts exactly the same outcomes, only slower
    "resilience/keys/options.py:72:4:return>None": "the full validation decides the same",
    "resilience/keys/options.py:72:4:stmt>pass": "the full validation decides the same",
    "resilience/keys/options.py:72:11:Or>And": "the full validation decides the same",
    "resilience/keys/options.py:72:52:op0:GtE>Gt": "the full validation decides the same",
    "resilience/keys/options.py:72:61:0+1": "the full validation decides the same",
    "resilience/keys/options.py:101:8:stmt>pass": "the full validation decides the same",
    "resilience/keys/options.py:107:12:stmt>pass": "the full validation decides the same",
    # a plain key's fast path (calm_from): at now == calm_from, or without the fast path, the
    # full check that follows gives the same answer; a rest's latest end set to an equal value
    "resilience/keys/pool.py:273:19:op0:GtE>Gt": "at now == calm_from the full check agrees",
    "resilience/keys/pool.py:273:16:stmt>pass": "the full check leases a calm key the same",
    # _COUNTED less one excluded name keeps an extra counter at 0, which _tallies overrides
    "resilience/keys/state.py:75:38:str>''": "the snapshot's requests come from the attribute",
    "resilience/keys/state.py:75:50:str>''": "the snapshot's successes are derived",
    "resilience/keys/state.py:75:63:str>''": "the snapshot's tokens_in come from the attribute",
    "resilience/keys/state.py:75:76:str>''": "the snapshot's tokens_out come from the attribute",
    "resilience/keys/state.py:187:11:op0:GtE>Gt": "at now == calm_from the full check agrees",
    "resilience/keys/state.py:187:8:stmt>pass": "the full check gives a calm key the same",
    "resilience/keys/state.py:188:12:stmt>pass": "the full check gives a calm key the same",
    "resilience/keys/cooldowns.py:69:11:op0:Gt>GtE": "equal ends: the same value assigned",
    # the breaker compares a call's duration only with a slow_call_duration > 0: -1 is as 0
    "resilience/keys/pool.py:408:44:0.0-1": "a duration below 0 is never slow, as 0 is not",
    "resilience/keys/pool.py:410:44:0.0-1": "a duration below 0 is never slow, as 0 is not",
    "resilience/keys/pool.py:437:46:0.0-1": "a duration below 0 is never slow, as 0 is not",
    # _rest's assert is for the type checker: only an asked rest can be refused
    "resilience/keys/pool.py:171:12:stmt>pass": "refused implies asked: the assert never fires",
    # choose()'s fast check of tokens; require_int after it decides the same, slower
    "resilience/keys/pool.py:268:50:0+1": "0 takes the slow path, which accepts it too",
    "resilience/keys/pool.py:269:42:0+1": "reached only for values that are refused anyway",
    # add()'s default start of -1: a full bucket refilled is still full
    "resilience/keys/pool.py:177:48:0.0-1": "a bucket full at -1 is full at 0",
    "resilience/keys/pool.py:103:21:0.0-1": "a bucket full at -1 is full at 0",
    # the breaker refusing a permit ready_at saw free, under the same lock: unreachable
    "resilience/keys/pool.py:289:12:stmt>pass": "unreachable (pragma: no cover)",
    "resilience/keys/pool.py:292:16:stmt>pass": "unreachable (pragma: no cover)",
    "resilience/keys/pool.py:293:20:fstr>''": "unreachable (pragma: no cover)",
    # KeyState.ready_at's fast path: with no model, or no pair cooling, the lookup is -inf
    "resilience/keys/state.py:199:11:And>Or": "models.get(model, -inf) is -inf either way",
    # readiness(): when `at` ends equal to now the answer is Readiness(now, key, None, busy)
    # whichever branch builds it (no reason can hold a key until now)
    "resilience/keys/state.py:219:32:op0:Gt>GtE": "at == now: the reason is dropped below",
    "resilience/keys/state.py:240:15:op0:Gt>GtE": "at == now: both branches give the same",
    # RoundRobin starts below every seq (seqs count from 0): -2 is as good as -1
    "resilience/keys/strategies.py:38:26:1+1": "any start below 0 picks the first key first",
    # [0] and [-1] of a one-element list
    "resilience/keys/strategies.py:61:30:0-1": "one candidate: first is last",
    "resilience/keys/strategies.py:79:79:0-1": "rng.choices draws one: first is last",
    # windows: reset_at is set by every update that sets remaining, its only reader's guard
    "resilience/keys/windows.py:101:8:stmt>pass": "read only after an update has set it",
    # refilling when now == updated adds (now - updated) * rate == 0
    "resilience/keys/windows.py:33:11:op0:Gt>GtE": "a refill over 0 s adds nothing",
    # short == slack exactly: a float equality that no level reaches (checked: the
    # subtraction never lands on the product)
    "resilience/keys/windows.py:44:11:op0:LtE>Lt": "no float level makes short == slack",
    # _hint_number's `return None` in its except, and the name it gives the swallowed error
    "resilience/keys/windows.py:87:8:stmt>pass": "falling off the end returns None",
    "resilience/keys/windows.py:85:30:str>''": "the SettingError naming it is swallowed",
    # max(self.limit or -1.0, remaining): remaining is a hint number, never below 0
    "resilience/keys/windows.py:113:47:0.0-1": "remaining >= 0 wins over -1 as over 0",
    # stats: the top bucket's index is the same for 3600 s and 3601 s
    "resilience/stats.py:53:24:3600.0+1": "ceil(log(MAX/MIN)/log g) is unchanged",
    # _rate of 0 s per token: never asked (only streams with time and tokens are measured)
    "resilience/stats.py:350:38:op0:Gt>GtE": "seconds per token is always > 0",
    # record_attempt's latency is accepted for listeners and not read
    "resilience/stats.py:646:25:0.0+1": "the parameter is deleted unread",
    "resilience/stats.py:650:8:stmt>pass": "the parameter is not read either way",
    # a value above HISTOGRAM_MIN_SECONDS has index >= 1 already: max(index, 0) is the same
    "resilience/stats.py:74:26:1-1": "ceil of a positive log is >= 1",
    # RequestRecord's fast path: 0 takes the full check, which accepts it too
    "resilience/stats.py:304:47:op0:GtE>Gt": "the full validation decides the same",
    "resilience/stats.py:304:64:0+1": "the full validation decides the same",
    "resilience/stats.py:305:48:op0:GtE>Gt": "the full validation decides the same",
    "resilience/stats.py:306:49:op0:GtE>Gt": "the full validation decides the same",
    "resilience/stats.py:306:68:0+1": "the full validation decides the same",
    # a percentile's rank: p > 0 and count > 0, so the ceiling is >= 1 already
    "resilience/stats.py:226:19:1-1": "ceil of a positive share of a count >= 1 is >= 1",
    # distribution's width: high - low + 1 >= 1, so the ceiling is >= 1 already
    "resilience/stats.py:248:56:1-1": "ceil of a positive ratio is >= 1",
    # zip of the percentiles asked and their values: always the same length
    "resilience/stats.py:270:84:False>True": "both sides have one item per percentile",
}

_CMP_SWAP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
_BIN_SWAP: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
}
_BOOL_SWAP: dict[type[ast.boolop], type[ast.boolop]] = {ast.And: ast.Or, ast.Or: ast.And}
_DELETABLE = (
    ast.Expr,
    ast.Assign,
    ast.AugAssign,
    ast.AnnAssign,
    ast.Return,
    ast.Raise,
    ast.If,
    ast.For,
    ast.While,
    ast.With,
    ast.Try,
    ast.Assert,
    ast.Delete,
)


@dataclass(frozen=True)
class Mutant:
    """One change to one node: ``index`` is the node's place in :func:`_nodes`' order."""

    id: str
    index: int
    kind: str
    line: int
    description: str


@dataclass
class Score:
    module: str
    total: int = 0
    killed: int = 0
    timeouts: int = 0
    allowed: int = 0
    made: int = 0
    survivors: list[Mutant] = field(default_factory=list)
    complete: bool = True

    @property
    def percent(self) -> float:
        return 100.0 * self.killed / self.total if self.total else 100.0


def _skipped_nodes(tree: ast.Module) -> set[int]:
    """ids of nodes never mutated: docstrings, annotations, imports, ``__all__``, TYPE_CHECKING."""
    skip: set[int] = set()

    def mark(node: ast.AST | None) -> None:
        if node is not None:
            skip.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            mark(body[0])
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            mark(node)  # an attribute's docstring, or any other bare string: no effect
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and node.value.value is Ellipsis
        ):
            mark(node)  # a protocol's `...` body
        if isinstance(node, ast.arg):
            mark(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            mark(node.returns)
            if any(ast.unparse(d).endswith("overload") for d in node.decorator_list):
                mark(node)  # a typing overload: never called
            last = node.body[-1]
            if isinstance(last, ast.Return) and (
                last.value is None
                or isinstance(last.value, ast.Constant)
                and last.value.value is None
            ):
                skip.add(id(last))  # deleting a closing `return None` changes nothing
        elif isinstance(node, ast.AnnAssign):
            mark(node.annotation)
        elif (
            isinstance(node, ast.Import | ast.ImportFrom)
            or isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
            or isinstance(node, ast.If)
            and "TYPE_CHECKING" in ast.unparse(node.test)
        ):
            mark(node)
        elif (
            isinstance(node, ast.Assign)
            and node.col_offset == 0
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id.startswith("_")
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            mark(node)  # a private label (_TRIP = "trip"): any other distinct text is equivalent
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"TypeVar", "NewType"}
        ):
            mark(node)  # typing machinery
        if isinstance(node, ast.Subscript):
            if _looks_like_type(node):  # a type expression such as dict[str, int] in a cast
                mark(node.slice)
        elif isinstance(node, ast.JoinedStr):
            # the pieces of an f-string: the f-string as a whole is one "emptied" mutant
            for value in node.values:
                if isinstance(value, ast.Constant):
                    skip.add(id(value))
                elif isinstance(value, ast.FormattedValue):
                    mark(value.format_spec)
    return skip


def _looks_like_type(node: ast.Subscript) -> bool:
    return isinstance(node.value, ast.Name) and node.value.id in {
        "dict",
        "list",
        "tuple",
        "set",
        "frozenset",
        "type",
        "Callable",
        "Mapping",
        "Sequence",
        "Iterable",
        "Iterator",
        "Optional",
        "Union",
        "Literal",
    }


def _nodes(tree: ast.Module) -> list[ast.AST]:
    return list(ast.walk(tree))


def _function_bodies(tree: ast.Module) -> set[int]:
    """ids of statements directly or indirectly inside a function body."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for stmt in node.body:
                inside.update(id(n) for n in ast.walk(stmt) if isinstance(n, ast.stmt))
    return inside


def _variants(node: ast.AST, in_function: bool) -> Iterator[tuple[str, str]]:
    """(kind, short description) of each mutation of ``node``, in a fixed order."""
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            swap = _CMP_SWAP.get(type(op))
            if swap is not None:
                yield "compare", f"op{i}:{type(op).__name__}>{swap.__name__}"
    elif isinstance(node, ast.BinOp | ast.AugAssign):
        swap_bin = _BIN_SWAP.get(type(node.op))
        if swap_bin is not None:
            yield "arithmetic", f"{type(node.op).__name__}>{swap_bin.__name__}"
    elif isinstance(node, ast.BoolOp):
        yield "boolean", f"{type(node.op).__name__}>{_BOOL_SWAP[type(node.op)].__name__}"
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield "boolean", "not>"
    elif isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool):
            yield "constant", f"{value}>{not value}"
        elif isinstance(value, int | float):
            yield "constant", f"{value!r}+1"
            yield "constant", f"{value!r}-1"
        elif isinstance(value, str) and value:
            yield "constant", "str>''"
    elif isinstance(node, ast.JoinedStr):
        yield "constant", "fstr>''"
    if isinstance(node, ast.Return) and node.value is not None:
        is_none = isinstance(node.value, ast.Constant) and node.value.value is None
        if not is_none:
            yield "return", "return>None"
    if in_function and isinstance(node, _DELETABLE):
        yield "delete", "stmt>pass"


def _apply(
    node: ast.AST, description: str, parents: dict[int, tuple[ast.AST, str, int | None]]
) -> None:
    """Change ``node`` in place (or in its parent) as ``description`` says."""
    if description.startswith("op") and isinstance(node, ast.Compare):
        index, change = description[2:].split(":", 1)
        node.ops[int(index)] = _CMP_SWAP[type(node.ops[int(index)])]()
    elif isinstance(node, ast.BinOp | ast.AugAssign) and ">" in description:
        node.op = _BIN_SWAP[type(node.op)]()
    elif isinstance(node, ast.BoolOp):
        node.op = _BOOL_SWAP[type(node.op)]()
    elif description == "not>":
        assert isinstance(node, ast.UnaryOp)
        _replace(node, node.operand, parents)
    elif isinstance(node, ast.Constant) and description in {"True>False", "False>True"}:
        node.value = not node.value
    elif isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        node.value = node.value + (1 if description.endswith("+1") else -1)
    elif description in {"str>''", "fstr>''"}:
        _replace(node, ast.Constant(value=""), parents)
    elif description == "return>None":
        assert isinstance(node, ast.Return)
        node.value = ast.Constant(value=None)
    elif description == "stmt>pass":
        _replace(node, ast.Pass(), parents)
    else:  # pragma: no cover - a variant without an application is a bug here
        raise AssertionError(description)


def _replace(
    node: ast.AST, new: ast.AST, parents: dict[int, tuple[ast.AST, str, int | None]]
) -> None:
    parent, attr, index = parents[id(node)]
    ast.copy_location(new, node)
    if index is None:
        setattr(parent, attr, new)
    else:
        getattr(parent, attr)[index] = new


def _parents(tree: ast.AST) -> dict[int, tuple[ast.AST, str, int | None]]:
    parents: dict[int, tuple[ast.AST, str, int | None]] = {}
    for parent in ast.walk(tree):
        for attr, value in ast.iter_fields(parent):
            if isinstance(value, list):
                for i, child in enumerate(value):
                    if isinstance(child, ast.AST):
                        parents[id(child)] = (parent, attr, i)
            elif isinstance(value, ast.AST):
                parents[id(value)] = (parent, attr, None)
    return parents


def mutants_of(path: Path) -> list[Mutant]:
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _skipped_nodes(tree)
    in_function = _function_bodies(tree)
    rel = path.relative_to(ROOT / PACKAGE).as_posix()
    result: list[Mutant] = []
    seen: dict[str, int] = {}
    for index, node in enumerate(_nodes(tree)):
        if id(node) in skip:
            continue
        for kind, description in _variants(node, id(node) in in_function):
            line = getattr(node, "lineno", 0)
            base = f"{rel}:{line}:{getattr(node, 'col_offset', 0)}:{description}"
            seen[base] = seen.get(base, 0) + 1
            ident = base if seen[base] == 1 else f"{base}#{seen[base]}"
            result.append(Mutant(ident, index, kind, line, description))
    return result


def mutated_code(path: Path, mutant: Mutant) -> CodeType:
    tree = ast.parse(path.read_text(), filename=str(path))
    node = _nodes(tree)[mutant.index]
    _apply(node, mutant.description, _parents(tree))
    ast.fix_missing_locations(tree)
    return compile(tree, str(path), "exec")


class _MutantLoader(importlib.abc.Loader):
    def __init__(self, code: CodeType) -> None:
        self.code = code

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        exec(self.code, module.__dict__)


class _MutantFinder(importlib.abc.MetaPathFinder):
    def __init__(self, name: str, path: Path, code: CodeType) -> None:
        self.name, self.path, self.code = name, path, code

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        package = self.path.name == "__init__.py"
        return importlib.util.spec_from_file_location(
            fullname,
            self.path,
            loader=_MutantLoader(self.code),
            submodule_search_locations=[str(self.path.parent)] if package else None,
        )


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def tests_for(path: Path) -> list[str]:
    rel = path.relative_to(TARGET_DIR)
    stem = rel.parts[0] if len(rel.parts) > 1 else path.stem
    patterns = TESTS.get(stem, (f"test_{stem}.py", f"test_{stem}_*.py"))
    found = sorted({str(p) for pattern in patterns for p in UNIT_TESTS.glob(pattern)})
    return found


def run_child(
    name: str,
    path: Path,
    code: CodeType | None,
    tests: list[str],
    timeout: float,
    quiet: bool,
    report_modules: Path | None = None,
) -> tuple[str, float]:
    """Run ``tests`` in a forked child with ``code`` as module ``name``: passed/failed/timeout."""
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            if quiet:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.dup2(devnull, 2)
            if code is not None:
                sys.meta_path.insert(0, _MutantFinder(name, path, code))
            import pytest

            args = ["-x", "-q", "-p", "no:cacheprovider", "--no-header", "-o", "addopts="]
            rc = pytest.main([*args, *tests])
            if report_modules is not None:
                report_modules.write_text("\n".join(sorted(sys.modules)))
            os._exit(int(rc))
        except BaseException:  # noqa: BLE001 - any escape is a failed run
            os._exit(99)
    pidfd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout", time.monotonic() - started
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(pidfd)
    code_ = os.waitstatus_to_exitcode(status)
    return ("passed" if code_ == 0 else "failed"), time.monotonic() - started


def _preload(names: list[str]) -> None:
    """Import in this process the third-party modules the tests use, so each child has them.

    The project's own modules (and the tests) are never preloaded: a child must import the
    mutated module, and every module that imports it, afresh.
    """
    for name in names:
        top = name.partition(".")[0]
        if top in {PACKAGE, "tests", "conftest", "__main__"} or name.startswith("test_"):
            continue
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def select_modules(requested: list[str]) -> list[Path]:
    every = sorted(p for p in TARGET_DIR.rglob("*.py") if "__pycache__" not in p.parts)
    if not requested:
        return every
    chosen: list[Path] = []
    for item in requested:
        want = (ROOT / PACKAGE / item).resolve()
        matched = [
            p for p in every if p == want or want in p.parents or p == want.with_suffix(".py")
        ]
        if not matched:
            raise SystemExit(f"no resilience module matches {item!r}")
        chosen.extend(p for p in matched if p not in chosen)
    return chosen


def score_module(
    path: Path,
    args: argparse.Namespace,
    deadline: float,
    log: Callable[[str], None],
) -> Score | None:
    rel = path.relative_to(ROOT / PACKAGE).as_posix()
    every = mutants_of(path)
    tests = tests_for(path)
    if not every:
        return None
    if not tests:
        log(f"{rel}: no unit tests found, skipped")
        return None
    sample = every
    if len(every) > args.max_mutants:
        sample = sorted(
            random.Random(args.seed).sample(every, args.max_mutants), key=lambda m: m.index
        )
    score = Score(rel, made=len(every))
    if args.list:
        for m in sample:
            log(f"  {m.id}  [{m.kind}]")
        score.total = len(sample)
        return score
    name = module_name(path)
    report = Path(tempfile.mkstemp(prefix="mutate-modules-")[1])
    try:
        outcome, _ = run_child(name, path, None, tests, args.timeout * 10, not args.verbose, report)
        if outcome != "passed":
            raise SystemExit(f"{rel}: the unmutated tests do not pass ({outcome}); fix them first")
        _preload(report.read_text().split())
    finally:
        report.unlink()
    _, baseline = run_child(name, path, None, tests, args.timeout * 10, True)
    timeout = max(args.timeout, 3 * baseline)
    for mutant in sample:
        if time.monotonic() > deadline:
            score.complete = False
            break
        outcome, _ = run_child(name, path, mutated_code(path, mutant), tests, timeout, True)
        if mutant.id in ALLOWLIST and outcome == "passed":
            score.allowed += 1
            continue
        score.total += 1
        if outcome == "passed":
            score.survivors.append(mutant)
        else:
            score.killed += 1
            score.timeouts += outcome == "timeout"
    return score


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", action="append", default=[], help="e.g. resilience/retry.py")
    parser.add_argument("--max-mutants", type=int, default=150, help="sample size per module")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--timeout", type=float, default=10.0, help="least seconds per mutant")
    parser.add_argument("--time-cap", type=float, default=1800.0, help="seconds for the whole run")
    parser.add_argument("--min-score", type=float, default=0.0, help="fail below this percent")
    parser.add_argument("--list", action="store_true", help="list the sampled mutants only")
    parser.add_argument("--verbose", action="store_true", help="show the baseline test run")
    args = parser.parse_args(argv)

    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    deadline = time.monotonic() + args.time_cap
    with contextlib.suppress(ImportError):
        import pytest  # noqa: F401 - loaded once here, shared by every forked child

    def log(line: str) -> None:
        print(line, flush=True)

    scores: list[Score] = []
    for path in select_modules(args.module):
        started = time.monotonic()
        score = score_module(path, args, deadline, log)
        if score is None:
            continue
        scores.append(score)
        if args.list:
            log(f"{score.module}: {score.total} of {score.made} mutants sampled")
            continue
        partial = "" if score.complete else "  (time cap reached: partial)"
        log(
            f"{score.module:32} {score.killed:4}/{score.total:<4} {score.percent:5.1f}%"
            f"  timeouts {score.timeouts}, allowlisted {score.allowed}, of {score.made} made"
            f"  [{time.monotonic() - started:.0f}s]{partial}"
        )
        lines = path.read_text().splitlines()
        for m in score.survivors:
            log(f"    survived {m.id}  | {lines[m.line - 1].strip()[:70]}")
    if args.list:
        return 0
    failing = [s for s in scores if s.percent < args.min_score or not s.complete]
    return 1 if failing and args.min_score > 0 else 0


if __name__ == "__main__":
    sys.exit(main())
