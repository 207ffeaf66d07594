"""Time values given by users, turned into int64 nanoseconds (UTC): one parser for the package."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import numpy as np

from ntlab.exceptions import ConfigError

__all__ = ["UNIT_NS", "duration_ns", "utc_ns"]

UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
    "w": 604_800_000_000_000,
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FRACTION = re.compile(r"\.(\d+)")
_DURATION_PART = re.compile(r"(\d+)(ns|us|µs|ms|mo|s|m|h|d|w|q|y|i)")
_CALENDAR_UNITS = ("mo", "q", "y")


def duration_ns(value: str | timedelta | int, *, name: str) -> int:
    """Positive nanoseconds of a fixed Polars duration string (``"1m"``, ``"1h30m"``), a
    ``timedelta`` or an int of nanoseconds; ``name`` is the argument named in errors."""
    if isinstance(value, str):
        parts = _DURATION_PART.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            msg = (
                f"{name}={value!r} is not a duration; use a Polars duration string such as "
                f"'500ms', '5s', '1m', '1h30m' or '1d' (units ns, us, ms, s, m, h, d, w)"
            )
            raise ConfigError(msg)
        for _, unit in parts:
            if unit in _CALENDAR_UNITS:
                msg = (
                    f"{name}={value!r} uses the calendar unit {unit!r}, whose length varies; "
                    f"give a fixed duration (ns, us, ms, s, m, h, d, w), e.g. '30d'"
                )
                raise ConfigError(msg)
            if unit == "i":
                msg = f"{name}={value!r} counts rows ('i'), not time"
                raise ConfigError(msg)
        ns = sum(int(number) * UNIT_NS[unit] for number, unit in parts)
    elif isinstance(value, timedelta):
        ns = (value.days * 86_400 + value.seconds) * 1_000_000_000 + value.microseconds * 1_000
    elif isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
        ns = int(value)
    else:
        msg = (
            f"{name}={value!r} is not a duration; use a duration string ('1m', '5s', '1h'), "
            f"a datetime.timedelta or an int of nanoseconds"
        )
        raise ConfigError(msg)
    if ns <= 0:
        msg = f"{name}={value!r} must be a positive duration, e.g. '1m'"
        raise ConfigError(msg)
    return ns


def utc_ns(value: datetime | date | str, *, name: str) -> int:
    """Nanoseconds since the epoch of a datetime, date or ISO string (naive means UTC).

    ISO strings may carry up to 9 fractional digits of a second.
    """
    extra_ns = 0
    if isinstance(value, str):
        text = value.strip()
        match = _FRACTION.search(text)
        if match and len(match.group(1)) > 6:
            digits = match.group(1)
            if len(digits) > 9:
                msg = f"{name}={value!r} has more than 9 fractional digits; ns is the finest unit"
                raise ConfigError(msg)
            extra_ns = int(digits[6:].ljust(3, "0"))
            text = text[: match.start(1) + 6] + text[match.end(1) :]
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            msg = f"{name}={value!r} is not an ISO date or datetime; use e.g. '2024-01-31T12:00'"
            raise ConfigError(msg) from None
    if isinstance(value, datetime):
        extra_ns += int(getattr(value, "nanosecond", 0))  # pandas.Timestamp
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        micros = (aware - _EPOCH) // timedelta(microseconds=1)
        return micros * 1000 + extra_ns
    if isinstance(value, date):
        return (value - _EPOCH.date()).days * UNIT_NS["d"]
    msg = f"{name} must be a datetime, date or ISO string, got {value!r}"
    raise ConfigError(msg)
