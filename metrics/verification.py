"""Verdicts: a measurement against the specifications that apply to its job.

A specification applies when every key of its ``metadata_query`` is in the job's metadata with
an equal value (lsst.verify's ``Job.meta`` query).  Its threshold may be in any unit
convertible to the metric's.  A NaN or missing value is *not tested*, never a pass or a fail:
a spec that applies to a job which measures its metric's package but not its metric is a
*missing* measurement (``measured=False``), so a requirement's status counts it as not passing.
"""

from __future__ import annotations

import enum
import math
import operator as op
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .model import Level, Specification
from .units import conversion_factor


class Status(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NOT_TESTED = "not_tested"


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": op.lt,
    "<=": op.le,
    ">": op.gt,
    ">=": op.ge,
    "==": op.eq,
    "!=": op.ne,
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """One (measurement, specification) pair; ``threshold`` is in the metric's ``unit``."""

    metric: str
    spec: str
    level: Level | None
    status: Status
    value: float | None
    operator: str
    threshold: float
    unit: str
    requirements: tuple[str, ...] = ()
    measured: bool = True  # False: the job does not measure the metric at all


def query_matches(query: Mapping[str, Any], metadata: Mapping[str, Any]) -> bool:
    """Whether every key of ``query`` is in ``metadata`` with an equal value."""
    for key, wanted in query.items():
        if key not in metadata:
            return False
        have = metadata[key]
        if have != wanted and str(have) != str(wanted):
            return False
    return True


def threshold_in(spec: Specification, unit: str) -> float:
    """The spec's threshold in ``unit`` (the metric's).  Raises ``UnitConversionError``."""
    factor = conversion_factor(spec.unit, unit)
    return spec.threshold * factor if factor != 1.0 else spec.threshold


def evaluate(
    spec: Specification, value: float | None, unit: str, *, measured: bool = True
) -> Verdict:
    """The verdict of ``value`` (in ``unit``) against ``spec``."""
    threshold = threshold_in(spec, unit)
    if value is None or math.isnan(value):
        status = Status.NOT_TESTED
    else:
        status = Status.PASS if _COMPARE[spec.operator](value, threshold) else Status.FAIL
    return Verdict(
        metric=spec.metric_full_name,
        spec=spec.full_name,
        level=spec.level,
        status=status,
        value=None if value is None or math.isnan(value) else value,
        operator=spec.operator,
        threshold=threshold,
        unit=unit,
        requirements=spec.requirements,
        measured=measured,
    )


def verify(
    values: Mapping[str, tuple[float | None, str]],
    specs: Iterable[Specification],
    metadata: Mapping[str, Any],
    *,
    units: Mapping[str, str] | None = None,
) -> list[Verdict]:
    """Verdicts of a job: ``values`` maps metric full name to (value, unit).

    Every spec of a measured metric whose query matches ``metadata`` gives one verdict, in
    the order of ``specs``.  With ``units`` (metric full name → unit), a spec whose query
    matches, of a package the job measures, but of a metric it did not measure gives a *not
    tested* verdict with ``measured=False`` (its threshold in ``units``, else its own unit);
    without ``units`` such specs give none.
    """
    packages = {name.partition(".")[0] for name in values} if units is not None else set()
    verdicts = []
    for spec in specs:
        measured = values.get(spec.metric_full_name)
        if measured is None and spec.package not in packages:
            continue
        if not query_matches(spec.metadata_query, metadata):
            continue
        if measured is None:
            assert units is not None  # packages is empty otherwise
            unit = units.get(spec.metric_full_name, spec.unit)
            verdicts.append(evaluate(spec, None, unit, measured=False))
        else:
            verdicts.append(evaluate(spec, measured[0], measured[1]))
    return verdicts


def highest_level(verdicts: Sequence[Verdict]) -> Level | None:
    """The highest level whose every applicable spec passes (stretch > design > minimum).

    A level with no spec, or with a spec not tested, is not met; levels are cumulative: design
    is met only if minimum is met too (when minimum has specs).
    """
    best: Level | None = None
    for level in (Level.MINIMUM, Level.DESIGN, Level.STRETCH):
        at_level = [v for v in verdicts if v.level == level]
        if not at_level:
            continue
        if all(v.status is Status.PASS for v in at_level):
            best = level
        else:
            break
    return best
