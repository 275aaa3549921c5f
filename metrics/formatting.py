"""Numbers as people read them: significant digits, thousands separators, units, ages.

Shared by the reports and the dashboard, so a value reads the same everywhere.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta


def _strip_zeros(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_number(value: float | None, digits: int = 4, *, signed: bool = False) -> str:
    """``value`` to ``digits`` significant digits, without float noise: thousands separators
    from 1,000 (``2,068,000,000``), an exponent only below 1e-4 or from 1e12 in magnitude
    (``1.5e-7``); ``—`` for None, NaN and infinities."""
    if value is None or not math.isfinite(value):
        return "—"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else "+" if signed else ""
    mantissa, exponent_text = f"{abs(value):.{digits - 1}e}".split("e")
    exponent = int(exponent_text)  # of the value once rounded (9999.7 -> 1.000e+04)
    if exponent < -4 or exponent >= 12:
        return f"{sign}{_strip_zeros(mantissa)}e{exponent}"
    if exponent >= digits - 1:  # an integer: the digits kept, then zeros
        return f"{sign}{int(mantissa.replace('.', '')) * 10 ** (exponent - digits + 1):,}"
    return sign + _strip_zeros(f"{abs(value):,.{digits - 1 - exponent}f}")


def format_quantity(value: float | None, unit: str, digits: int = 4) -> str:
    """A value with its unit (``6.012 mmag``, ``2,068,000,000 B``; a dimensionless one bare)."""
    number = format_number(value, digits)
    return f"{number} {unit}" if unit and number != "—" else number


def format_age(moment: datetime, now: datetime) -> str:
    """How long ago ``moment`` was, in the largest whole unit (``3 h ago``, ``12 d ago``)."""
    if moment.tzinfo is None:  # naive times are UTC here (SQLite returns them so)
        moment = moment.replace(tzinfo=UTC)
    seconds = (now - moment) / timedelta(seconds=1)
    if seconds < 0:
        return "in the future"
    for size, unit in (
        (86400 * 365, "y"),
        (86400 * 30, "mo"),
        (86400, "d"),
        (3600, "h"),
        (60, "min"),
    ):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


def format_utc(moment: datetime) -> str:
    """A time in UTC to the minute (``2026-12-03 05:27 UTC``)."""
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.strftime("%Y-%m-%d %H:%M UTC")
