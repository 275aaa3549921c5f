"""Keyset cursors: a page ends at an item's time (µs since the epoch) and id, ``"<µs>.<id>"``.

Lists are ordered by (time, id), newest first; the cursor names the last item of a page so the
next page starts right after it, whatever was inserted meanwhile.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Query

from specwatch.exceptions import InvalidInputError
from specwatch.metrics.jobs import EARLIEST, LATEST
from specwatch.metrics.limits import INT64_MAX

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PATTERN = r"^-?\d{1,19}\.\d{1,19}$"
_CURSOR = re.compile(_PATTERN)
_MIN_US = (EARLIEST - EPOCH) // timedelta(microseconds=1)
_MAX_US = (LATEST - EPOCH) // timedelta(microseconds=1)

Cursor = Annotated[
    str | None,
    Query(
        pattern=_PATTERN,
        max_length=40,
        description="next_cursor of the previous page",
        examples=["1760486280000000.42"],
    ),
]


def encode_cursor(time: datetime, item_id: int) -> str:
    """The cursor after an item at ``time`` (aware) with ``item_id``."""
    return f"{(time - EPOCH) // timedelta(microseconds=1)}.{item_id}"


def decode_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    """``(time, id)`` of a cursor, or None.

    A cursor of the documented form but out of range is a position all the same: one after
    the latest time a store can hold is before every item (the whole list follows), one before
    the earliest is after every item (nothing follows).  Clamped, so no overflow.

    Raises:
        InvalidInputError: not of the form ``<µs>.<id>``.
    """
    if cursor is None:
        return None
    if not _CURSOR.match(cursor):
        raise InvalidInputError(
            f"cursor {cursor[:40]!r} is not a next_cursor of this list",
            location=["query", "cursor"],
        )
    micros_text, id_text = cursor.split(".")
    micros, item_id = int(micros_text), min(int(id_text), INT64_MAX)
    if micros > _MAX_US:
        return LATEST, INT64_MAX
    if micros < _MIN_US:
        return EARLIEST, 0
    return EPOCH + timedelta(microseconds=micros), item_id
