"""Checking the recorder's options as the spec's WebIDL would: types, then ranges."""

from __future__ import annotations

import math

#: The shortest timeslice honoured (ms), the spec's "minimum time slice imposed by the UA".
MIN_TIMESLICE_MS = 10


def unsigned(name: str, value: object) -> int | None:
    """An ``unsigned long`` option, or None.

    Raises:
        TypeError: not an int (bools are refused).
        ValueError: outside 0 .. 2**32 - 1.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not 0 <= value < 2**32:
        raise ValueError(f"{name} must be an unsigned 32-bit value, not {value}")
    return value


def milliseconds(name: str, value: object) -> float | None:
    """A duration in milliseconds, or None.

    Raises:
        TypeError: not a number.
        ValueError: not finite, or negative.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of milliseconds")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and not negative")
    return float(value)


def timeslice_seconds(timeslice: object) -> float | None:
    """``start()``'s timeslice (ms of media per chunk) in seconds, at least
    ``MIN_TIMESLICE_MS``; None for one chunk at the end.

    Raises:
        TypeError: not a number (or NaN).
        ValueError: negative.
    """
    if timeslice is None:
        return None
    if isinstance(timeslice, bool) or not isinstance(timeslice, int | float) or math.isnan(timeslice):
        raise TypeError("timeslice must be a number of milliseconds")
    if timeslice < 0:
        raise ValueError("timeslice must not be negative")
    return max(MIN_TIMESLICE_MS, min(timeslice, 2**32 - 1)) / 1000
