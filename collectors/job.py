"""Build lsst.verify job documents, as ``lsst.verify.Job.write()`` writes them.

Every collector (catalog KPMs, timed commands, benchmark importers) builds its job here, so the
server reads them all the same way: ``measurements`` (metric, identifier, value, unit,
blob_refs), ``blobs`` (identifier, name, data of datums ``{value, unit, label, description}``),
``metrics`` (a list of definitions, so that a first upload can define them), ``specs`` and
``meta`` (the build's context; see ``specwatch.metrics.jobs`` for the keys the server reads).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from .errors import BadInputError

Direction = Literal["lower", "higher", "none"]


def read_json_file(path: Path, what: str) -> Any:
    """The parsed JSON of ``path`` (``NaN`` and ``Infinity`` tokens allowed, as asv and
    Google Benchmark write them).

    Raises:
        BadInputError: the file cannot be read or is not JSON; ``what`` names what was expected.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadInputError(f"{path}: a directory, not {what}") from None
    except UnicodeDecodeError:
        raise BadInputError(f"{path}: not UTF-8 text, so not {what}") from None
    except OSError as error:
        raise BadInputError(f"{path}: cannot be read ({error.strerror})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise BadInputError(
            f"{path}: not JSON ({error.msg} at line {error.lineno}), so not {what}"
        ) from None
    except RecursionError:
        raise BadInputError(f"{path}: JSON nested too deep to be {what}") from None


def content_identifier(*content: Any) -> str:
    """An identifier in lsst.verify's form (32 hex digits), from what it identifies.

    lsst.verify draws random ones; these are the same for the same content, so collecting
    the same outputs twice gives the same job, byte for byte, which the server stores once.
    """
    encoded = orjson.dumps(content, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    return hashlib.sha256(encoded).hexdigest()[:32]


def json_number(value: float) -> float | None:
    """``value`` as the job carries it: NaN and infinities become null ("not measured")."""
    return value if math.isfinite(value) else None


def datum(
    value: Any, unit: str = "", *, label: str | None = None, description: str | None = None
) -> dict[str, Any]:
    """One named quantity of a blob: a number or a list of numbers in ``unit``."""
    return {"value": value, "unit": unit, "label": label, "description": description}


@dataclass
class JobBuilder:
    """Collects measurements, blobs and metric definitions, then writes the job document."""

    meta: dict[str, Any] = field(default_factory=dict)
    measurements: list[dict[str, Any]] = field(default_factory=list)
    blobs: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    specs: list[dict[str, Any]] = field(default_factory=list)

    def define_metric(
        self,
        name: str,
        unit: str,
        description: str = "",
        *,
        direction: Direction = "lower",
        tags: Iterable[str] = (),
        reference: Mapping[str, Any] | None = None,
    ) -> None:
        """Carry the definition of ``name`` (``package.metric``) in the job."""
        definition: dict[str, Any] = {
            "name": name,
            "description": description,
            "unit": unit,
            "tags": sorted(set(tags)),
            "direction": direction,
        }
        if reference:
            definition["reference"] = dict(reference)
        self.metrics[name] = definition

    def add_blob(self, name: str, data: Mapping[str, Mapping[str, Any]]) -> str:
        """Add a blob of datums (see :func:`datum`); returns its identifier."""
        identifier = content_identifier("blob", name, data)
        if all(blob["identifier"] != identifier for blob in self.blobs):
            self.blobs.append({"identifier": identifier, "name": name, "data": dict(data)})
        return identifier

    def add_measurement(
        self,
        metric: str,
        value: float,
        unit: str,
        *,
        blob_refs: Sequence[str] = (),
        notes: Mapping[str, Any] | None = None,
    ) -> None:
        """Add one measurement; a non-finite ``value`` is sent as null ("not measured")."""
        earlier = sum(m["metric"] == metric for m in self.measurements)
        number = json_number(float(value))
        item: dict[str, Any] = {
            "metric": metric,
            "identifier": content_identifier(
                "measurement", metric, earlier, number, unit, list(blob_refs), notes or {}
            ),
            "value": number,
            "unit": unit,
            "blob_refs": list(blob_refs),
        }
        if notes:
            item["notes"] = dict(notes)
        self.measurements.append(item)

    def document(self) -> dict[str, Any]:
        """The job document (a new dict each call)."""
        return {
            "measurements": list(self.measurements),
            "blobs": list(self.blobs),
            "metrics": [self.metrics[name] for name in sorted(self.metrics)],
            "specs": list(self.specs),
            "meta": dict(self.meta),
        }
