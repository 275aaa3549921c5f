"""The concepts of Specwatch, compatible with lsst.verify.

Frozen, I/O-free value objects. Names follow lsst.verify: a metric is ``package.name``
(``validate_drp.PA1``), a specification ``package.metric.spec``
(``validate_drp.PA1.design_gri``).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple

from specwatch.exceptions import DefinitionError, InvalidInputError

from .limits import METRIC_CHARS, NAME_CHARS, PACKAGE_CHARS, SPEC_CHARS, UNIT_CHARS, check_text


class Level(enum.StrEnum):
    """Specification level of LPM-17: stretch is stricter than design, design than minimum."""

    MINIMUM = "minimum"
    DESIGN = "design"
    STRETCH = "stretch"

    @property
    def rank(self) -> int:
        """1 for minimum, 2 for design, 3 for stretch."""
        return _LEVEL_RANK[self]


_LEVEL_RANK = {Level.MINIMUM: 1, Level.DESIGN: 2, Level.STRETCH: 3}


class Direction(enum.StrEnum):
    """Which way a metric improves."""

    LOWER = "lower"  # smaller is better (errors, wall time, memory)
    HIGHER = "higher"  # larger is better (completeness, throughput)
    NONE = "none"  # any change matters, neither way is better


OPERATORS = ("<", "<=", ">", ">=", "==", "!=")


@dataclass(frozen=True, slots=True)
class Reference:
    """Where a metric is defined (document handle, URL, page)."""

    doc: str | None = None
    url: str | None = None
    page: int | str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in (("doc", self.doc), ("url", self.url), ("page", self.page)) if v}


def split_metric_name(full_name: str) -> tuple[str, str]:
    """Split ``package.metric`` into its two parts.

    Raises:
        DefinitionError: the name has no package or no metric part.
    """
    package, sep, name = full_name.partition(".")
    if not sep or not package or not name or "." in name:
        raise DefinitionError(f"metric name {full_name!r} is not of the form 'package.metric'")
    return package, name


@dataclass(frozen=True, slots=True)
class Metric:
    """A quantity that is measured: ``package.name`` in ``unit`` (astropy string, "" = 1)."""

    package: str
    name: str
    unit: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()
    reference: Reference = field(default_factory=Reference)
    direction: Direction = Direction.LOWER
    floor_abs: float = 0.0  # changes smaller than this (in ``unit``) are not regressions
    floor_pct: float = 0.0  # … nor those smaller than this percentage of the level

    def __post_init__(self) -> None:
        _check_names(
            f"metric {self.full_name[:100]!r}",
            (("package", self.package, PACKAGE_CHARS), ("name", self.name, NAME_CHARS)),
            self.full_name,
            METRIC_CHARS,
            self.unit,
        )

    @property
    def full_name(self) -> str:
        return f"{self.package}.{self.name}"


def _check_names(
    what: str,
    parts: tuple[tuple[str, str, int], ...],
    full_name: str,
    full_chars: int,
    unit: str,
) -> None:
    """Names and unit that fit the store's columns (``DefinitionError`` otherwise)."""
    try:
        for part, value, max_chars in parts:
            check_text(value, max_chars, [part], f"{what}: its {part}")
        check_text(full_name, full_chars, ["name"], f"{what}: its full name")
        check_text(unit, UNIT_CHARS, ["unit"], f"{what}: its unit")
    except InvalidInputError as error:
        raise DefinitionError(error.message) from None


@dataclass(frozen=True, slots=True)
class Specification:
    """A threshold on a metric, for the jobs whose metadata match ``metadata_query``."""

    package: str
    metric: str  # short metric name within the package
    name: str  # short spec name (may hold dots, e.g. ``hsc_design_g``)
    threshold: float
    unit: str
    operator: str
    metadata_query: Mapping[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    level: Level | None = None
    requirements: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        _check_names(
            f"specification {self.full_name[:100]!r}",
            (
                ("package", self.package, PACKAGE_CHARS),
                ("metric", self.metric, NAME_CHARS),
                ("name", self.name, NAME_CHARS),
            ),
            self.full_name,
            SPEC_CHARS,
            self.unit,
        )
        if self.operator not in OPERATORS:
            raise DefinitionError(
                f"specification {self.full_name!r}: operator {self.operator!r} is not one of "
                + ", ".join(OPERATORS)
            )
        if not isinstance(self.threshold, int | float) or math.isnan(self.threshold):
            raise DefinitionError(
                f"specification {self.full_name!r}: threshold {self.threshold!r} is not a number"
            )

    @property
    def metric_full_name(self) -> str:
        return f"{self.package}.{self.metric}"

    @property
    def full_name(self) -> str:
        return f"{self.package}.{self.metric}.{self.name}"


@dataclass(frozen=True, slots=True)
class Blob:
    """Named arrays and scalars attached to a job, for drill-down plots."""

    identifier: str
    name: str
    data: Mapping[str, Any]


EMPTY: Mapping[str, Any] = MappingProxyType({})


class Measurement(NamedTuple):
    """A metric's value in one job, in the metric's unit (NaN when not measured).

    ``raw_value``/``raw_unit`` keep what the client sent when a conversion took place.
    A named tuple: immutable, and cheap enough for hundreds of thousands a second.
    """

    metric: str  # full name
    value: float
    unit: str
    identifier: str | None = None
    raw_value: float | None = None
    raw_unit: str | None = None
    blob_refs: tuple[str, ...] = ()
    extras: Mapping[str, Any] = EMPTY
    notes: Mapping[str, Any] = EMPTY


@dataclass(frozen=True, slots=True)
class JobContext:
    """Where a job comes from: CI, code, data.  Every field is optional."""

    time: datetime | None = None
    ci_name: str | None = None
    ci_id: str | None = None
    ci_url: str | None = None
    build_url: str | None = None
    repository: str | None = None
    commit: str | None = None
    branch: str | None = None
    pr: int | None = None
    pr_url: str | None = None
    dataset: str | None = None
    instrument: str | None = None
    filter: str | None = None
    status: int | None = None
    base_commit: str | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """One verification run of one build, as sent by a client (before storage)."""

    context: JobContext
    measurements: tuple[Measurement, ...]
    blobs: tuple[Blob, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    packages: Mapping[str, Any] = field(default_factory=dict)
    metrics: tuple[Metric, ...] = ()
    specs: tuple[Specification, ...] = ()
