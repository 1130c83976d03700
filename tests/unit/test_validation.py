"""Numeric setting checks: what is accepted, what is refused, and the message."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipfs_accelerate_py.resilience import validation
from ipfs_accelerate_py.resilience.errors import SettingError
from ipfs_accelerate_py.resilience.validation import require_int, require_number

from ..helpers import absolute_imports

# ---------------------------------------------------------------- require_int


@pytest.mark.parametrize(
    "value, minimum, maximum, optional",
    [
        (1, 1, None, False),
        (0, 0, None, False),
        (10**30, 1, None, False),
        (5, 1, 5, False),
        (None, 1, None, True),
        (3, 1, None, True),
    ],
)
def test_require_int_accepts(value, minimum, maximum, optional):
    assert require_int("n", value, minimum, maximum, optional=optional) == value


@pytest.mark.parametrize(
    "value, minimum, maximum, optional, expected",
    [
        (0, 1, None, False, "a whole number >= 1"),
        (-1, 0, None, False, "a whole number >= 0"),
        (6, 1, 5, False, "a whole number >= 1 and <= 5"),
        (1.0, 1, None, False, "a whole number >= 1"),
        (True, 0, None, False, "a whole number >= 0"),
        ("3", 1, None, False, "a whole number >= 1"),
        (None, 1, None, False, "a whole number >= 1"),
        (0, 1, None, True, "a whole number >= 1 or None"),
        (2.5, 1, 9, True, "a whole number >= 1 and <= 9 or None"),
    ],
)
def test_require_int_refuses_naming_the_setting(value, minimum, maximum, optional, expected):
    with pytest.raises(SettingError) as info:
        require_int("queue_size", value, minimum, maximum, optional=optional)
    assert info.value.setting == "queue_size" and info.value.value == value
    assert (
        str(info.value) == f"invalid value {value!r} for setting 'queue_size': expected {expected}"
    )


# ---------------------------------------------------------------- require_number


@pytest.mark.parametrize(
    "value, kwargs, result",
    [
        (0, {}, 0.0),
        (0.25, {}, 0.25),
        (3, {"minimum": 1.0}, 3.0),
        (1.0, {"minimum": 1.0}, 1.0),
        (100, {"exclusive": True, "maximum": 100.0}, 100.0),
        (1e-9, {"exclusive": True}, 1e-9),
        (None, {"optional": True}, None),
        (-5.5, {"minimum": -10.0}, -5.5),
    ],
)
def test_require_number_accepts(value, kwargs, result):
    got = require_number("x", value, **kwargs)
    assert got == result
    assert got is None or type(got) is float


@pytest.mark.parametrize(
    "value, kwargs, expected",
    [
        (-0.1, {}, "a number >= 0"),
        (0, {"exclusive": True}, "a number > 0"),
        (
            0.0,
            {"exclusive": True, "maximum": 100.0, "optional": True},
            "a number > 0 and <= 100 or None",
        ),
        (100.5, {"exclusive": True, "maximum": 100.0}, "a number > 0 and <= 100"),
        (0.5, {"minimum": 1.0}, "a number >= 1"),
        (1.5, {"maximum": 1.0}, "a number >= 0 and <= 1"),
        (math.nan, {}, "a number >= 0"),
        (math.inf, {}, "a number >= 0"),
        (-math.inf, {"minimum": -1e300}, "a number >= -1e+300"),
        (10**400, {}, "a number >= 0"),
        (True, {}, "a number >= 0"),
        (False, {}, "a number >= 0"),
        ("0.5", {}, "a number >= 0"),
        (None, {}, "a number >= 0"),
        ([1], {"optional": True}, "a number >= 0 or None"),
    ],
)
def test_require_number_refuses_naming_the_setting(value, kwargs, expected):
    with pytest.raises(SettingError) as info:
        require_number("batch_timeout", value, **kwargs)
    assert info.value.setting == "batch_timeout" and info.value.value is value
    assert str(info.value).endswith(f"for setting 'batch_timeout': expected {expected}")


@given(
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6),
    st.booleans(),
)
def test_require_number_matches_its_bounds(value, minimum, exclusive):
    inside = value > minimum if exclusive else value >= minimum
    if inside:
        assert require_number("x", value, minimum=minimum, exclusive=exclusive) == value
    else:
        with pytest.raises(SettingError):
            require_number("x", value, minimum=minimum, exclusive=exclusive)


@given(st.integers(min_value=-1000, max_value=1000), st.integers(min_value=-10, max_value=10))
def test_require_int_and_require_number_agree_on_ints(value, minimum):
    try:
        as_int = require_int("x", value, minimum)
    except SettingError:
        as_int = None
    try:
        as_number = require_number("x", value, minimum=float(minimum))
    except SettingError:
        as_number = None
    assert (as_int is None) == (as_number is None)
    assert as_number is None or as_number == float(as_int)


def test_module_is_pure():
    imported = absolute_imports(validation)
    assert imported <= {"__future__", "math", "typing"}
