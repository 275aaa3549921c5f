"""Limits on input, checked where it enters, so every backend gives the same answer.

PostgreSQL refuses what SQLite silently stores (a string longer than its column, a NUL
character, an integer beyond the column's range); a parser recurses on deep nesting.  Each
limit here is checked on the way in and refused with a 422 that names the ``location``, before
anything is stored.  The column sizes below are the SQL schema's own (``store/models.py`` uses
these constants), so the check and the column can never disagree.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson
import yaml

from specwatch.exceptions import DefinitionError, InvalidInputError, Location

# Column sizes of the SQL schema, in characters.
PACKAGE_CHARS = 200  # a metric's package (InfluxDB measurement)
NAME_CHARS = 200  # a metric's or a spec's own name
METRIC_CHARS = 400  # "package.metric"
SPEC_CHARS = 600  # "package.metric.spec"
UNIT_CHARS = 64
COMMIT_CHARS = 64  # a git object id (SHA-1 40, SHA-256 64 hex digits)
LABEL_CHARS = 256  # dataset, instrument, filter, branch
CI_CHARS = 200  # ci_name, ci_id (and the series' pipeline tag)
URL_CHARS = 2000  # repository, build_url, pr_url, ci_url
BLOB_ID_CHARS = 200
BLOB_NAME_CHARS = 400
REQUIREMENT_ID_CHARS = 100
IDEMPOTENCY_KEY_CHARS = 200
INT32_MAX = 2**31 - 1  # pull-request numbers, job status (SQL integer)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # ids; any integer inside a JSON document


@dataclass(frozen=True, slots=True)
class DocumentLimits:
    """What a JSON or YAML document may hold (``SPECWATCH_MAX_*`` settings)."""

    max_depth: int = 64
    max_string_chars: int = 1_000_000
    max_yaml_nodes: int = 200_000  # per request, aliases expanded


class YamlBudget:
    """Nodes left to the YAML documents of one request (aliases count what they expand to)."""

    def __init__(self, limits: DocumentLimits) -> None:
        self.limits = limits
        self.left = limits.max_yaml_nodes


def check_yaml(text: str, budget: YamlBudget, where: str) -> None:
    """Refuse YAML that would nest too deep or expand past the budget, before loading it.

    PyYAML's parser is iterative but its composer recurses (thousands of levels cost a
    ``RecursionError`` and seconds of CPU), and an alias is a reference that every later walk
    expands (a few lines of anchors make billions of nodes).  This scan reads the events only.

    Raises:
        InvalidInputError: naming ``where`` (the file).
    """
    max_depth = budget.limits.max_depth
    sizes: dict[str, int] = {}
    # Per open collection: its anchor and the node count when it opened.
    open_: list[tuple[str | None, int]] = []
    total = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.AliasEvent):
                total += sizes.get(str(event.anchor), 1)
            elif isinstance(event, yaml.ScalarEvent):
                total += 1
                if event.anchor:
                    sizes[event.anchor] = 1
            elif isinstance(event, yaml.CollectionStartEvent):
                total += 1
                open_.append((event.anchor, total))
                if len(open_) > max_depth:
                    raise InvalidInputError(
                        f"{where}: YAML nested deeper than {max_depth} levels "
                        "(SPECWATCH_MAX_JSON_DEPTH)",
                        location=["body", "files", where],
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                anchor, start = open_.pop()
                if anchor:
                    sizes[anchor] = total - start + 1
            if total > budget.left:
                raise InvalidInputError(
                    f"{where}: the YAML expands to more than {budget.limits.max_yaml_nodes} "
                    "nodes in this request (SPECWATCH_MAX_YAML_NODES)",
                    location=["body", "files", where],
                )
    except yaml.YAMLError as error:
        if "nesting depth" in str(error):  # libyaml's own limit (about 1,000 levels)
            raise InvalidInputError(
                f"{where}: YAML nested deeper than {max_depth} levels (SPECWATCH_MAX_JSON_DEPTH)",
                location=["body", "files", where],
            ) from None
        # Refused here: the pure-Python loader would recurse on what libyaml could not parse.
        raise DefinitionError(f"{where}: not valid YAML: {error}") from None
    budget.left -= total


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def check_text(value: str, max_chars: int, location: Location, what: str) -> str:
    """``value`` if it fits a column of ``max_chars`` and holds no NUL character.

    Raises:
        InvalidInputError: naming ``what`` and the ``location``.
    """
    if len(value) > max_chars:
        raise InvalidInputError(
            f"{what} has {len(value)} characters; at most {max_chars} are allowed",
            location=location,
        )
    if "\x00" in value:
        raise InvalidInputError(f"{what} contains a NUL character", location=location)
    return value


def _where(location: Location) -> str:
    return ".".join(str(part) for part in location) or "the document"


def check_document(doc: Any, limits: DocumentLimits, root: Location = ("body",)) -> None:
    """Refuse a parsed JSON/YAML document that no store could keep as it is.

    Nesting deeper than ``limits.max_depth``, strings (values and keys) longer than
    ``limits.max_string_chars`` or holding a NUL character, numbers beyond a float's range.
    An integer outside 64 bits is a JSON number like any other: it becomes a float, in place
    (orjson reads literals past 64 bits so; the standard library, used for NaN tokens, would
    keep a Python integer that no store holds).  Iterative, so a hostile document cannot
    exhaust the stack.

    Raises:
        InvalidInputError: with the location of the first offending value.
    """
    max_chars = limits.max_string_chars
    # (container, its path, its depth); a path is only materialised when something is wrong.
    stack: list[tuple[Any, tuple[str | int, ...], int]] = [(doc, tuple(root), 0)]
    while stack:
        node, path, depth = stack.pop()
        if depth > limits.max_depth:
            raise InvalidInputError(
                f"{_where(path)}: nesting is deeper than {limits.max_depth} levels "
                "(SPECWATCH_MAX_JSON_DEPTH)",
                location=path,
            )
        items: Iterator[tuple[str | int, Any]]
        if isinstance(node, Mapping):
            for key in node:
                if isinstance(key, str):
                    if len(key) > max_chars or "\x00" in key:
                        _bad_string(key, (*path, key[:64]), max_chars, "a key")
                elif not isinstance(key, int | float | bool) and key is not None:
                    raise InvalidInputError(
                        f"{_where(path)}: a key of type {type(key).__name__} is not allowed",
                        location=path,
                    )
            items = iter(node.items())
        elif isinstance(node, list | tuple | set | frozenset):  # YAML may give sets
            items = enumerate(node)
        else:
            _check_scalar(node, path, max_chars)
            continue
        for key, value in items:
            kind = type(value)
            if kind is float or kind is bool or value is None:
                continue
            if kind is str:
                if len(value) > max_chars or "\x00" in value:
                    _bad_string(value, (*path, key), max_chars, "a string")
            elif kind is int:
                if not INT64_MIN <= value <= INT64_MAX:
                    if not isinstance(node, dict | list):
                        _bad_int((*path, key))
                    node[key] = _as_float(value, (*path, key))
            else:
                stack.append((value, (*path, key), depth + 1))


def _check_scalar(node: Any, path: tuple[str | int, ...], max_chars: int) -> None:
    if isinstance(node, bool | float | date | bytes) or node is None:
        return  # YAML's timestamps and binaries are scalars too
    if isinstance(node, int):
        if not INT64_MIN <= node <= INT64_MAX:
            _bad_int(path)
    elif isinstance(node, str) and (len(node) > max_chars or "\x00" in node):
        _bad_string(node, path, max_chars, "a string")


def _as_float(value: int, path: tuple[str | int, ...]) -> float:
    """A JSON number past 64 bits, as a float (what orjson makes of it; no store holds more)."""
    try:
        return float(value)
    except OverflowError:
        raise InvalidInputError(
            f"{_where(path)}: a number beyond a 64-bit float's range", location=path
        ) from None


def _bad_int(path: tuple[str | int, ...]) -> None:
    raise InvalidInputError(
        f"{_where(path)}: an integer outside the 64-bit range (-2^63 … 2^63-1)", location=path
    )


def _bad_string(value: str, path: tuple[str | int, ...], max_chars: int, what: str) -> None:
    if "\x00" in value:
        raise InvalidInputError(f"{_where(path)}: {what} contains a NUL character", location=path)
    raise InvalidInputError(
        f"{_where(path)}: {what} of {len(value)} characters; at most {max_chars} "
        "(SPECWATCH_MAX_STRING_CHARS)",
        location=path,
    )


def decode_json(body: bytes, limits: DocumentLimits, *, allow_nan: bool = True) -> Any:
    """A JSON document within ``limits``; bare ``NaN``/``Infinity`` tokens (as lsst.verify
    writes them) allowed unless not ``allow_nan``.

    Raises:
        InvalidInputError: the body is not JSON (message gives the position), or goes past
            a limit (message and location name it).
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        if "depth limit" in str(error):
            raise _too_deep(limits) from None
        if not allow_nan:
            raise InvalidInputError(
                f"the body is not valid JSON: {str(error)[:200]}", location=["body"]
            ) from None
        # orjson rejects NaN tokens (and integers past 64 bits); the standard library reads them
        try:
            document = json.loads(body)
        except RecursionError:
            raise _too_deep(limits) from None
        except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
            raise InvalidInputError(
                f"the body is not valid JSON: {str(error)[:200]}", location=["body"]
            ) from error
    check_document(document, limits)
    return document


def _too_deep(limits: DocumentLimits) -> InvalidInputError:
    return InvalidInputError(
        f"the body nests deeper than {limits.max_depth} levels (SPECWATCH_MAX_JSON_DEPTH)",
        location=["body"],
    )
