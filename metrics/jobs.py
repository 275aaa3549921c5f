"""Reading an lsst.verify job document, and putting its measurements in their metrics' units.

A job is what ``lsst.verify.Job.write()`` writes (keys ``measurements``, ``blobs``, ``metrics``,
``specs``, ``meta``), with the build's context in ``meta``: dispatch_verify's ``meta.env``
(``ci_id``, ``ci_name``, ``ci_url``, ``ci_dataset``, ``ci_label``, ``ci_refs``, ``date``,
``status``), ``meta.packages``, and Specwatch's own keys, which win over ``env``:
``repository commit branch pr pr_url build_url dataset instrument filter time base_commit``.

Choices for the quirks of real jobs (documented in the README):
- a measurement ``identifier`` may be null; ``metrics``/``specs`` sections may be missing;
- a value of ``null``, ``NaN`` or ``"NaN"`` is NaN ("not measured"), kept as such;
- an empty or missing measurement unit means "in the metric's unit": lsst.verify writes ``''``
  when a value lost its unit (e.g. a percentage), and converting ``10.3`` dimensionless to
  ``1030 %`` would be wrong;
- dispatch_verify's placeholder ``"unknown"`` in ``meta.env`` counts as not given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from specwatch.exceptions import InvalidInputError, UnitConversionError, UnknownMetricError

from .limits import (
    BLOB_ID_CHARS,
    BLOB_NAME_CHARS,
    CI_CHARS,
    COMMIT_CHARS,
    INT32_MAX,
    LABEL_CHARS,
    METRIC_CHARS,
    URL_CHARS,
    check_text,
)
from .model import EMPTY, Blob, JobContext, Measurement, Metric
from .units import conversion_factor

_STRING_CONTEXT = (
    "repository",
    "commit",
    "branch",
    "pr_url",
    "build_url",
    "dataset",
    "instrument",
    "filter",
    "base_commit",
)
# The columns that hold the context, in characters.
_CONTEXT_CHARS = {
    "repository": URL_CHARS,
    "commit": COMMIT_CHARS,
    "branch": LABEL_CHARS,
    "pr_url": URL_CHARS,
    "build_url": URL_CHARS,
    "ci_url": URL_CHARS,
    "dataset": LABEL_CHARS,
    "instrument": LABEL_CHARS,
    "filter": LABEL_CHARS,
    "base_commit": COMMIT_CHARS,
    "ci_name": CI_CHARS,
    "ci_id": CI_CHARS,
}
# Times a signed 64-bit count of nanoseconds since 1970 can hold (InfluxDB's range).
EARLIEST = datetime(1677, 9, 22, tzinfo=UTC)
LATEST = datetime(2262, 4, 11, tzinfo=UTC)
_NON_FINITE = {"nan": math.nan, "infinity": math.inf, "-infinity": -math.inf, "inf": math.inf}


class RawMeasurement(NamedTuple):
    """A measurement as sent, before its metric is known (``position`` in the job's list)."""

    position: int
    metric: str
    value: float
    unit: str | None
    identifier: str | None = None
    blob_refs: tuple[str, ...] = ()
    extras: Mapping[str, Any] = EMPTY
    notes: Mapping[str, Any] = EMPTY


@dataclass(frozen=True, slots=True)
class JobDocument:
    """A parsed job document; definitions are left raw for ``definitions.parse_job_*``."""

    context: JobContext
    measurements: tuple[RawMeasurement, ...]
    blobs: tuple[Blob, ...]
    meta: Mapping[str, Any]
    packages: Mapping[str, Any]
    metric_definitions: Sequence[Mapping[str, Any]] | Mapping[str, Any]
    spec_definitions: Sequence[Mapping[str, Any]] | Mapping[str, Any]


def _fail(message: str, *location: str | int) -> InvalidInputError:
    return InvalidInputError(message, location=["body", *location])


def parse_value(value: Any, *location: str | int) -> float:
    """A measurement value: a number, or null/NaN/"NaN"/"Infinity" (not finite)."""
    if value is None:
        return math.nan
    if isinstance(value, bool):
        raise _fail(f"value {value!r} is not a number", *location)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in _NON_FINITE:
        return _NON_FINITE[value.strip().lower()]
    raise _fail(f"value {value!r} is not a number", *location)


def parse_time(value: Any, *location: str | int) -> datetime | None:
    """An ISO 8601 string or POSIX seconds; naive times are UTC."""
    if value is None or value == "" or value == "unknown":
        return None
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = datetime.fromtimestamp(float(value), UTC).isoformat()
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
            if not EARLIEST <= parsed <= LATEST:
                raise _fail(
                    f"time {value!r} is outside {EARLIEST:%Y-%m-%d}…{LATEST:%Y-%m-%d} "
                    "(what a nanosecond time-series store can hold)",
                    *location,
                )
            return parsed
    except (ValueError, OverflowError, OSError):
        pass
    raise _fail(f"time {value!r} is not an ISO 8601 date-time or POSIX seconds", *location)


def _text(value: Any, *location: str | int) -> str | None:
    if value is None or value == "" or value == "unknown":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _fail(f"{value!r} is not a string", *location)


def _pr(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(str(value).lstrip("#"))
    except ValueError:
        number = -1
    if not 1 <= number <= INT32_MAX or isinstance(value, bool):
        raise _fail(
            f"pr {str(value)[:40]!r} is not a pull-request number (1 … {INT32_MAX})", "meta", "pr"
        )
    return number


def parse_context(meta: Mapping[str, Any]) -> JobContext:
    """The build context from ``meta`` (Specwatch keys over dispatch_verify's ``meta.env``)."""
    env = _or_empty(meta.get("env"), {})
    if not isinstance(env, Mapping):
        raise _fail("meta.env must be an object", "meta", "env")
    values: dict[str, Any] = {key: _text(meta.get(key), "meta", key) for key in _STRING_CONTEXT}
    values["base_commit"] = values["base_commit"] or _text(
        meta.get("merge_base"), "meta", "merge_base"
    )
    values["dataset"] = (
        values["dataset"]
        or _text(env.get("ci_dataset"), "meta", "env", "ci_dataset")
        or _text(meta.get("dataset_name"), "meta", "dataset_name")
    )
    values["filter"] = (
        values["filter"]
        or _text(meta.get("filter_name"), "meta", "filter_name")
        or _text(meta.get("physical_filter"), "meta", "physical_filter")
    )
    values["ci_url"] = _text(env.get("ci_url"), "meta", "env", "ci_url")
    values["build_url"] = values["build_url"] or values["ci_url"]
    values["ci_name"] = _text(meta.get("ci_name"), "meta", "ci_name") or _text(
        env.get("ci_name"), "meta", "env", "ci_name"
    )
    values["ci_id"] = _text(meta.get("ci_id"), "meta", "ci_id") or _text(
        env.get("ci_id"), "meta", "env", "ci_id"
    )
    values["pr"] = _pr(meta.get("pr"))
    status = env.get("status", meta.get("status"))
    values["status"] = (
        status
        if isinstance(status, int) and not isinstance(status, bool) and abs(status) <= INT32_MAX
        else None
    )
    for key, max_chars in _CONTEXT_CHARS.items():
        if values[key] is not None:
            check_text(values[key], max_chars, ["body", "meta", key], f"meta.{key}")
    time = parse_time(meta.get("time"), "meta", "time") or parse_time(
        env.get("date"), "meta", "env", "date"
    )
    return JobContext(time=time, **values)


_PLAIN_KEYS = frozenset({"metric", "value", "unit", "identifier", "blob_refs"})


def _parse_measurement(index: int, item: Any) -> RawMeasurement:
    # The common case, checked in one pass: a plain object with a name, a float and a unit.
    if type(item) is dict and item.keys() <= _PLAIN_KEYS:
        metric, value, unit = item.get("metric"), item.get("value"), item.get("unit")
        if (
            type(metric) is str
            and "." in metric
            and len(metric) <= METRIC_CHARS
            and type(value) is float
            and (unit is None or type(unit) is str)
            and not item.get("blob_refs")
        ):
            identifier = item.get("identifier")
            return RawMeasurement(
                index, metric, value, unit, None if identifier is None else str(identifier)
            )
    return _parse_measurement_checked(index, item)


def _parse_measurement_checked(index: int, item: Any) -> RawMeasurement:
    if not isinstance(item, Mapping):
        raise _fail("a measurement must be an object", "measurements", index)
    metric = item.get("metric")
    if not isinstance(metric, str) or "." not in metric or len(metric) > METRIC_CHARS:
        raise _fail(
            f"measurement {index}: metric {str(metric)[:100]!r} is not a name 'package.metric' "
            f"of at most {METRIC_CHARS} characters",
            "measurements",
            index,
            "metric",
        )
    unit = item.get("unit")
    if unit is not None and not isinstance(unit, str):
        raise _fail(
            f"measurement {index} ({metric}): unit {unit!r} is not a string",
            "measurements",
            index,
            "unit",
        )
    identifier = item.get("identifier")
    refs = _or_empty(item.get("blob_refs"), ())
    if not isinstance(refs, list | tuple) or not all(isinstance(r, str) for r in refs):
        raise _fail(
            f"measurement {index} ({metric}): blob_refs must be a list of strings",
            "measurements",
            index,
            "blob_refs",
        )
    extras, notes = _or_empty(item.get("extras"), {}), _or_empty(item.get("notes"), {})
    if not isinstance(extras, Mapping) or not isinstance(notes, Mapping):
        raise _fail(
            f"measurement {index} ({metric}): extras and notes must be objects",
            "measurements",
            index,
        )
    return RawMeasurement(
        position=index,
        metric=metric,
        value=parse_value(item.get("value"), "measurements", index, "value"),
        unit=unit,
        identifier=str(identifier) if identifier is not None else None,
        blob_refs=tuple(refs),
        extras=extras,
        notes=notes,
    )


def _parse_blob(index: int, item: Any) -> Blob:
    if not isinstance(item, Mapping) or not isinstance(item.get("data", {}), Mapping):
        raise _fail("a blob must be an object with a 'data' object", "blobs", index)
    identifier = str(item.get("identifier") or f"blob-{index}")
    name = str(item.get("name") or "")
    check_text(identifier, BLOB_ID_CHARS, ["body", "blobs", index, "identifier"], "a blob id")
    check_text(name, BLOB_NAME_CHARS, ["body", "blobs", index, "name"], "a blob name")
    return Blob(identifier=identifier, name=name, data=item.get("data") or {})


def _or_empty(value: Any, empty: Any) -> Any:
    return empty if value is None else value


def parse_job_document(doc: Any) -> JobDocument:
    """Check the shape of a job document and read it.

    Raises:
        InvalidInputError: with the location of the first problem.
    """
    if not isinstance(doc, Mapping):
        raise _fail("a job must be a JSON object")
    # Absent or null is empty; anything else must have the right type (0 is not an empty list).
    meta = _or_empty(doc.get("meta"), {})
    if not isinstance(meta, Mapping):
        raise _fail("meta must be an object", "meta")
    measurements = doc.get("measurements")
    if not isinstance(measurements, list):
        raise _fail("measurements must be a list", "measurements")
    blobs = _or_empty(doc.get("blobs"), [])
    if not isinstance(blobs, list):
        raise _fail("blobs must be a list", "blobs")
    packages = _or_empty(meta.get("packages"), {})
    if isinstance(packages, list):  # older dispatch_verify wrote a list of package objects
        packages = {str(p.get("name")): p for p in packages if isinstance(p, Mapping)}
    if not isinstance(packages, Mapping):
        raise _fail("meta.packages must be an object", "meta", "packages")
    for key in ("metrics", "specs"):
        if not isinstance(_or_empty(doc.get(key), []), list | Mapping):
            raise _fail(f"{key} must be a list or an object", key)
    return JobDocument(
        context=parse_context(meta),
        measurements=tuple(_parse_measurement(i, m) for i, m in enumerate(measurements)),
        blobs=tuple(_parse_blob(i, b) for i, b in enumerate(blobs)),
        meta={k: v for k, v in meta.items() if k != "packages"},
        packages=packages,
        metric_definitions=doc.get("metrics") or [],
        spec_definitions=doc.get("specs") or [],
    )


def convert_measurements(
    raw: Sequence[RawMeasurement], metrics: Mapping[str, Metric]
) -> tuple[Measurement, ...]:
    """Measurements in their metrics' units.

    Raises:
        UnknownMetricError: a measurement's metric is not in ``metrics``.
        UnitConversionError: a unit does not convert (names the measurement, metric and units).
    """
    converted = []
    for item in raw:
        metric = metrics.get(item.metric)
        if metric is None:
            raise UnknownMetricError(
                f"measurement {item.position}: metric {item.metric!r} is not defined; import its "
                "definition first or send it in the job's 'metrics'",
                location=["body", "measurements", item.position, "metric"],
            )
        unit = item.unit if item.unit else metric.unit
        try:
            factor = conversion_factor(unit, metric.unit)
        except (UnitConversionError, InvalidInputError) as error:
            raise UnitConversionError(
                f"measurement {item.position} of metric {item.metric!r}: unit {unit!r} cannot be "
                f"converted to the metric's unit {metric.unit or 'dimensionless'!r}",
                location=["body", "measurements", item.position, "unit"],
            ) from error
        if factor == 1.0:
            converted.append(
                Measurement(
                    item.metric,
                    item.value,
                    metric.unit,
                    item.identifier,
                    None,
                    None,
                    item.blob_refs,
                    item.extras,
                    item.notes,
                )
            )
        else:
            converted.append(
                Measurement(
                    item.metric,
                    item.value * factor,
                    metric.unit,
                    item.identifier,
                    item.value,
                    unit,
                    item.blob_refs,
                    item.extras,
                    item.notes,
                )
            )
    return tuple(converted)
