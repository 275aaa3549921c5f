"""Metric names from other tools' benchmark names, the same way for every importer.

A metric is ``package.metric``: one dot, and (the name being a segment of its URL) no '/'.
A benchmark's own name becomes the metric part by these rules, in order:

- a decimal point between two digits becomes ``p`` (``1.5`` → ``1p5``: still reads as a number);
- every other ``.``, ``/`` and ``\\`` becomes ``:``
  (``TimeSuite.time_keys`` → ``TimeSuite:time_keys``);
- runs of whitespace become ``_``; control and format characters are dropped;
- a part longer than 200 characters (the store's column) keeps its first 191 and ends with
  ``~`` and 8 hex digits of the original name's SHA-256, so that it stays unique and stable.

A package given by the user (``--package``) must already be a name: no ``.``, ``/``, space or
control character.  A package derived from a file (a module, an executable) keeps letters,
digits, ``_`` and ``-``; anything else becomes ``_``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from specwatch.collectors.errors import BadInputError

PART_CHARS = 200  # the store's column for a package, and for a metric's own name
_DECIMAL_POINT = re.compile(r"(?<=\d)\.(?=\d)")
_SEPARATOR = re.compile(r"[./\\]")
_SPACE = re.compile(r"\s+")
_NOT_PACKAGE = re.compile(r"[^A-Za-z0-9_-]+")
_HASH_DIGITS = 8


def _printable(text: str) -> str:
    return "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")


def metric_part(name: str) -> str:
    """The metric part (after ``package.``) for a benchmark named ``name``.

    Raises:
        BadInputError: nothing is left of ``name``.
    """
    part = _DECIMAL_POINT.sub("p", name.strip())
    part = _printable(_SPACE.sub("_", _SEPARATOR.sub(":", part)))
    if not part:
        raise BadInputError(f"benchmark name {name!r} leaves no metric name")
    if len(part) > PART_CHARS:
        digest = hashlib.sha256(name.encode()).hexdigest()[:_HASH_DIGITS]
        part = f"{part[: PART_CHARS - _HASH_DIGITS - 1]}~{digest}"
    return part


def derived_package(text: str, fallback: str) -> str:
    """A package name made from ``text`` (a module, an executable), else ``fallback``."""
    package = _NOT_PACKAGE.sub("_", text).strip("_")[:PART_CHARS]
    return package or fallback


def checked_name(text: str, option: str) -> str:
    """``text``, given by the user as ``option``, if it can be a package or a metric's name.

    Raises:
        BadInputError: it is empty, too long, or holds '.', '/', whitespace or a control
            character.
    """
    if (
        not text
        or len(text) > PART_CHARS
        or _printable(text) != text
        or any(ch in text for ch in "./\\")
        or _SPACE.search(text)
    ):
        raise BadInputError(
            f"{option} {text!r}: give a name of at most {PART_CHARS} characters without "
            "'.', '/', '\\', whitespace or control characters"
        )
    return text
