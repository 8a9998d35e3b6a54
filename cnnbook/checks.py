"""Argument checks shared by the cnnbook modules, so every bad input gets the same kind of message.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["check_int", "check_positive_real"]


def check_int(name: str, value, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an ``int``, or ``ValueError`` naming the argument and its valid range.

    Booleans, floats (even ``8.0``) and strings are rejected: a size or a count is a whole number.
    """
    valid = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(
            f"{name} must be an integer {valid}, got {value!r} of type {type(value).__name__}"
        )
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be an integer {valid}, got {value}")
    return int(value)


def check_positive_real(name: str, value, hint: str = "") -> float:
    """``value`` as a ``float`` > 0, or ``ValueError`` naming the argument (and ``hint``, e.g.
    ``"the paper uses 16"``). Booleans, strings, NaN and infinity are rejected."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or value <= 0):
        detail = f" ({hint})" if hint else ""
        raise ValueError(f"{name} must be a positive number{detail}, got {value!r}")
    return float(value)
