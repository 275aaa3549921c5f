"""What every importer shares: reading a tool's JSON file, and one job's measurements."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from specwatch.collectors.emit import NamedJob
from specwatch.collectors.errors import BadInputError
from specwatch.collectors.job import Direction, JobBuilder


def number(value: Any) -> float:
    """A JSON number as a float; anything else (null, text, a boolean) is NaN: not measured."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return math.nan


def finite_items(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` without null and non-finite numbers (JSON has no place for them)."""
    return {
        key: value
        for key, value in values.items()
        if value is not None and not (isinstance(value, float) and not math.isfinite(value))
    }


def iso_time(moment: datetime) -> str:
    """``moment`` in ISO 8601, in UTC when it has a time zone."""
    return (moment.astimezone(UTC) if moment.tzinfo else moment).isoformat()


@dataclass
class ImportedJob:
    """One job of imported benchmarks; refuses two benchmarks that map to one metric."""

    source: Path
    builder: JobBuilder = field(default_factory=JobBuilder)
    origins: dict[str, str] = field(default_factory=dict)

    def measure(
        self,
        metric: str,
        value: float,
        unit: str,
        *,
        origin: str,
        direction: Direction,
        description: str,
        notes: Mapping[str, Any] | None = None,
    ) -> None:
        """Define ``metric`` and add its measurement (NaN: not measured).

        Raises:
            BadInputError: another benchmark of this job already maps to ``metric``.
        """
        if metric in self.origins:
            raise BadInputError(
                f"{self.source}: benchmarks {self.origins[metric]!r} and {origin!r} both map "
                f"to metric {metric!r}; rename one of them"
            )
        self.origins[metric] = origin
        self.builder.define_metric(metric, unit, description, direction=direction)
        self.builder.add_measurement(metric, value, unit, notes=notes)

    def named(self, name: str) -> NamedJob:
        """The finished job, to be written as ``name``."""
        return NamedJob(name, self.builder.document())
