"""Validation defaults: None is refused unless a setting is optional."""

from __future__ import annotations

import pytest

from ipfs_accelerate_py.resilience.errors import SettingError
from ipfs_accelerate_py.resilience.validation import require_int, require_number


def test_none_is_refused_unless_optional():
    with pytest.raises(SettingError, match="expected a whole number >= 1$"):
        require_int("retries", None, 1)
    with pytest.raises(SettingError, match="expected a number >= 0$"):
        require_number("delay", None)
    assert require_int("retries", None, 1, optional=True) is None
    assert require_number("delay", None, optional=True) is None
