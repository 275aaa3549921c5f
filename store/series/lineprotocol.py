"""The one InfluxDB line protocol encoder (layout in ``base.py``).

One line per ``SeriesPoint``::

    validate_drp,dataset=HSC\\ RC2,filter=r AM1.nan=true,PA1=12.5,job_id=42i 1732530000123456789

Escaping follows the line protocol reference: measurement names escape comma and space; tag
keys, tag values and field keys escape comma, equals sign and space; string field values escape
double quote and backslash.  Timestamps are integer nanoseconds.  Floats are written with
``repr`` (shortest exact form, always with ``.`` or an exponent) so they read back bit for bit.

InfluxDB 1.x cannot store every string as a name: a newline ends the line, a leading ``#`` makes
it a comment, and it never unescapes ``\\\\``, so a backslash at the end of a name or before
``\\ , = "`` or a space cannot be written exactly.  Such names are rejected with
``InvalidInputError`` (call ``validate_point`` at ingest to refuse them early) rather than
stored altered.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Iterator, Sequence
from functools import lru_cache

from specwatch.exceptions import InvalidInputError, Location

from .base import NAN_SUFFIX, SeriesPoint

# InfluxDB's valid time range (models.MinNanoTime / MaxNanoTime).
MIN_TIME_NS = -9_223_372_036_854_775_806
MAX_TIME_NS = 9_223_372_036_854_775_806
# Field keys the layout uses itself; a metric may not take them.
JOB_ID_FIELD = "job_id"
COMMIT_FIELD = "commit"
_RESERVED_KEYS = frozenset({"time", JOB_ID_FIELD, COMMIT_FIELD})

_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ "})
_KEY_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_STRING_ESCAPES = str.maketrans({'"': '\\"', "\\": "\\\\"})
# What InfluxDB 1.x cannot store exactly in a name (see the module docstring).
_UNWRITABLE_NAME = re.compile(r'[\n\r]|\\(?:[\\,= "]|$)')


def escape_measurement(name: str) -> str:
    """Escape a measurement name (comma, space)."""
    return name.translate(_MEASUREMENT_ESCAPES)


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key (comma, equals sign, space)."""
    return text.translate(_KEY_ESCAPES)


def format_string(value: str) -> str:
    """A string field value: double-quoted, with ``"`` and ``\\`` escaped."""
    return '"' + value.translate(_STRING_ESCAPES) + '"'


def format_float(value: float) -> str:
    """A finite float in its shortest exact form (``1.0``, ``1e-300``), never an integer."""
    return repr(float(value))


def is_storable_name(text: str) -> bool:
    """Whether InfluxDB can store ``text`` exactly as a name (see ``check_name``)."""
    return bool(text) and not _UNWRITABLE_NAME.search(text)


def check_name(text: str, location: Location) -> None:
    """Raise ``InvalidInputError`` unless InfluxDB can store ``text`` exactly as a name."""
    if not text:
        raise InvalidInputError("empty name in a time-series point", location=location)
    if _UNWRITABLE_NAME.search(text):
        raise InvalidInputError(
            f"{text!r} cannot be stored in InfluxDB: no newlines, and no backslash at the end "
            "or before a backslash, comma, equals sign, quote or space",
            location=location,
        )


@lru_cache(maxsize=4096)
def _measurement(package: str) -> str:
    check_name(package, ["package"])
    if package.startswith("#"):
        raise InvalidInputError("a package name cannot start with '#'", location=["package"])
    return escape_measurement(package)


@lru_cache(maxsize=65536)
def _tag(key: str, value: str) -> str:
    """``,key=value`` for a set tag, checked and escaped (names repeat: cached)."""
    check_name(key, ["tags"])
    if key == "time":
        raise InvalidInputError("'time' cannot be a tag key", location=["tags", key])
    check_name(value, ["tags", key])
    return f",{escape_key(key)}={escape_key(value)}"


@lru_cache(maxsize=65536)
def _field_keys(metric: str) -> tuple[str, str]:
    """The escaped field keys of a metric's value and of its NaN marker, checked."""
    check_name(metric, ["values"])
    if metric in _RESERVED_KEYS or metric.endswith(NAN_SUFFIX):
        raise InvalidInputError(
            f"metric name {metric!r} is reserved in the time-series layout",
            location=["values", metric],
        )
    return escape_key(metric), escape_key(metric + NAN_SUFFIX)


def _check_numbers(point: SeriesPoint) -> tuple[int, int]:
    time_ns = operator.index(point.time_ns)
    if not MIN_TIME_NS <= time_ns <= MAX_TIME_NS:
        raise InvalidInputError(f"time {time_ns} ns is out of range", location=["time_ns"])
    return operator.index(point.job_id), time_ns


def validate_point(point: SeriesPoint) -> None:
    """Raise ``InvalidInputError`` for a point InfluxDB could not store as given."""
    _measurement(point.package)
    _check_numbers(point)
    for key, value in point.tags.items():
        if value:
            _tag(key, value)
        else:
            check_name(key, ["tags"])
    for metric in point.values:
        _field_keys(metric)


def encode_point(point: SeriesPoint) -> str:
    """One line (with its ``\\n``) for one point; see ``validate_point`` for the errors."""
    job_id, time_ns = _check_numbers(point)
    parts = [_measurement(point.package)]
    for key, tag in sorted(point.tags.items()):
        if tag:  # InfluxDB rejects empty tag values: an unset tag is left out
            parts.append(_tag(key, tag))
        else:
            check_name(key, ["tags"])
    parts.append(" ")
    values = point.values
    for metric in sorted(values):
        value = float(values[metric])
        key, nan_key = _field_keys(metric)
        if math.isfinite(value):
            parts.append(f"{key}={value!r},")
        else:
            parts.append(f"{nan_key}=true,")
    if point.commit is not None:
        parts.append(f"{COMMIT_FIELD}={format_string(point.commit)},")
    # job_id comes last and is always there, so the field set is never empty.
    parts.append(f"{JOB_ID_FIELD}={job_id}i {time_ns}\n")
    return "".join(parts)


def encode_points(points: Sequence[SeriesPoint]) -> bytes:
    """Line protocol for ``points``, UTF-8, one line each, in order."""
    return "".join(encode_point(point) for point in points).encode()


def encode_batches(
    points: Sequence[SeriesPoint], *, max_points: int = 5000, max_bytes: int = 5_000_000
) -> Iterator[bytes]:
    """Line protocol bodies of at most ``max_points`` lines and about ``max_bytes`` each.

    Every point is encoded (and validated) before the first body is yielded, so a bad point
    fails the whole write instead of half of it.  A single line longer than ``max_bytes`` is
    sent alone.
    """
    lines = [encode_point(point).encode() for point in points]
    start = 0
    while start < len(lines):
        end, size = start, 0
        while end < len(lines) and end - start < max_points:
            if end > start and size + len(lines[end]) > max_bytes:
                break
            size += len(lines[end])
            end += 1
        yield b"".join(lines[start:end])
        start = end
