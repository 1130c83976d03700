"""Checks for numeric settings: one rule, one message, everywhere.

Every options object and policy setter checks its numbers here, so a
setting is refused the same way whichever module holds it: with a
:class:`~ipfs_accelerate_py.resilience.errors.SettingError` that names the
setting, shows the value and says what was expected, the text generated
from the bounds (``"a whole number >= 1"``, ``"a number > 0 and <= 100 or
None"``).

The checks are strict about types: ``True``/``False`` are never numbers,
a whole number must be an ``int`` (``1.0`` is refused), and a number is an
``int`` or a ``float`` that is finite (NaN and infinities are refused).
Turning text (environment variables) into numbers is the caller's job;
these functions never parse strings.

Pure functions: no I/O, no clock, no state.
"""

from __future__ import annotations

import math
from typing import Any, Literal, overload

from .errors import SettingError

__all__ = ["require_int", "require_number"]


def _bounds_text(
    kind: str, minimum: str, exclusive: bool, maximum: str | None, optional: bool
) -> str:
    text = f"{kind} {'>' if exclusive else '>='} {minimum}"
    if maximum is not None:
        text += f" and <= {maximum}"
    return text + (" or None" if optional else "")


@overload
def require_int(
    name: str,
    value: Any,
    minimum: int,
    maximum: int | None = None,
    *,
    optional: Literal[False] = False,
) -> int: ...


@overload
def require_int(
    name: str, value: Any, minimum: int, maximum: int | None = None, *, optional: bool
) -> int | None: ...


def require_int(
    name: str, value: Any, minimum: int, maximum: int | None = None, *, optional: bool = False
) -> int | None:
    """``value`` if it is an ``int`` (not a bool) in ``[minimum, maximum]``.

    ``maximum=None``: no upper bound.  ``optional=True``: ``None`` is
    accepted and returned.  Otherwise raises ``SettingError(name, value,
    "a whole number >= minimum[ and <= maximum][ or None]")``.
    """
    if value is None and optional:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        maximum_text = None if maximum is None else str(maximum)
        raise SettingError(
            name, value, _bounds_text("a whole number", str(minimum), False, maximum_text, optional)
        )
    return value


@overload
def require_number(
    name: str,
    value: Any,
    *,
    minimum: float = 0.0,
    exclusive: bool = False,
    maximum: float | None = None,
    optional: Literal[False] = False,
) -> float: ...


@overload
def require_number(
    name: str,
    value: Any,
    *,
    minimum: float = 0.0,
    exclusive: bool = False,
    maximum: float | None = None,
    optional: bool,
) -> float | None: ...


def require_number(
    name: str,
    value: Any,
    *,
    minimum: float = 0.0,
    exclusive: bool = False,
    maximum: float | None = None,
    optional: bool = False,
) -> float | None:
    """``value`` as a ``float`` if it is a finite number within the bounds.

    The lower bound is ``value >= minimum``, or ``value > minimum`` when
    ``exclusive``; the upper bound, when ``maximum`` is given, is ``value <=
    maximum``.  ``int`` values are accepted (and returned as ``float``);
    bools, NaN, infinities and ints too large for a float are refused.
    ``optional=True``: ``None`` is accepted and returned.  Otherwise raises
    ``SettingError(name, value, "a number >|>= minimum[ and <= maximum][ or
    None]")``.
    """
    if value is None and optional:
        return None
    number = _finite_float(value)
    if (
        number is None
        or number < minimum
        or (exclusive and number == minimum)
        or (maximum is not None and number > maximum)
    ):
        maximum_text = None if maximum is None else f"{maximum:g}"
        raise SettingError(
            name, value, _bounds_text("a number", f"{minimum:g}", exclusive, maximum_text, optional)
        )
    return number


def _finite_float(value: Any) -> float | None:
    """``value`` as a finite float, or None if it is not a finite int/float (or is a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range
        return None
    return number if math.isfinite(number) else None
