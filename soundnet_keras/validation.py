"""Argument checks shared by the whole package: one wording for every "must be one of" and "must be positive"."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from .errors import ConfigError


def check_choice(value: object, allowed: Sequence[str], what: str) -> str:
    """``value`` if it is one of the strings ``allowed``, else a :class:`ConfigError` listing them."""
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{what} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def check_positive(value: object, what: str, *, integer: bool = False, allow_none: bool = False) -> Any:
    """``value`` as a positive finite float (or int with ``integer``; None passes with ``allow_none``).

    Booleans, NaN, infinities, zero, negatives and (with ``integer``) fractions raise a :class:`ConfigError` that
    names ``what`` and the value received.
    """
    if value is None and allow_none:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if ok and integer:
        ok = int(value) == value
    if not ok:
        kind = "a positive integer" if integer else "a positive number"
        raise ConfigError(f"{what} must be {kind}{' or None' if allow_none else ''}, got {value!r}")
    return int(value) if integer else float(value)


def check_non_negative(value: object, what: str) -> float:
    """``value`` as a finite float >= 0; booleans, NaN, infinities and negatives raise a :class:`ConfigError` that
    names ``what`` and the value received."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    if not ok:
        raise ConfigError(f"{what} must be a number >= 0, got {value!r}")
    return float(value)
