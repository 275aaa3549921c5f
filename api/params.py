"""Query parameters shared by routes: instants (``since``/``until``) and their range.

A date-time is what the OpenAPI document says (RFC 3339; without an offset it is UTC, as in
jobs).  One outside what the stores can hold (1677…2262) is clamped to that range: ``since``
the year 1 means "from the start", never an overflow.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Path, Query
from pydantic import AfterValidator, BeforeValidator

from specwatch.metrics.jobs import EARLIEST, LATEST

_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")


def _not_a_number(value: object) -> object:
    """Refuse POSIX seconds, which pydantic would read: the contract says RFC 3339."""
    if isinstance(value, str) and _NUMBER.match(value):
        raise ValueError("expected an RFC 3339 date-time, e.g. 2026-01-31T12:00:00Z")
    return value


def clamp_instant(moment: datetime | None) -> datetime | None:
    """``moment`` in UTC, within the stores' range (an offset near year 1 or 9999 included)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+14:00 is in year 0
        return EARLIEST if moment.year < 2000 else LATEST
    return min(max(utc, EARLIEST), LATEST)


Instant = Annotated[
    datetime | None,
    BeforeValidator(_not_a_number),
    AfterValidator(clamp_instant),
    Query(description="RFC 3339 date-time; without an offset, UTC"),
]


# ``package.metric``: one dot, no control character (a name stored by an older version may
# hold a '/').
METRIC_NAME = r"^[^.\x00-\x1f\x7f]+\.[^.\x00-\x1f\x7f]+$"
MetricName = Annotated[str, Path(pattern=METRIC_NAME, examples=["validate_drp.PA1"])]
