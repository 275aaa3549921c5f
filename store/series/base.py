"""The time-series store interface, shared by the embedded and the InfluxDB backends.

Layout (SQuaSH's, so that its Chronograf/Grafana dashboards keep working): one InfluxDB
*measurement* per metric package (``validate_drp``), the metric's short name as the *field*
(``PA1``), the job's context as *tags* (``TAG_KEYS``), the job's time as the timestamp.
Each point also carries the fields ``job_id`` (integer) and ``commit`` (string).  A NaN or
infinite value cannot be written as an InfluxDB float: its field is left out and a boolean
field ``<metric>.nan`` is written instead, so that the series still shows that build (as null).

Writes are idempotent: the same point written twice is stored once (same measurement, tags
and timestamp overwrite), which is what makes outbox redelivery safe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

# Tag keys, in SQuaSH's vocabulary: ``pipeline`` is the CI pipeline name (``ci_name``).
TAG_KEYS: tuple[str, ...] = ("dataset", "instrument", "filter", "branch", "pr", "pipeline")
NAN_SUFFIX = ".nan"


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """All values of one metric package in one job (one InfluxDB point)."""

    package: str
    time_ns: int
    job_id: int
    values: Mapping[str, float]  # metric short name -> value in the metric's unit (NaN allowed)
    tags: Mapping[str, str] = field(default_factory=dict)  # keys from TAG_KEYS, empty = unset
    commit: str | None = None


@dataclass(frozen=True, slots=True)
class SeriesQuery:
    """One metric's values, filtered by tag equality and a time window ``[since, until)``.

    The result holds the ``limit`` most recent points of the window, oldest first.
    """

    package: str
    metric: str
    tags: Mapping[str, str] = field(default_factory=dict)
    since_ns: int | None = None
    until_ns: int | None = None
    limit: int = 1000


@dataclass(slots=True)
class Series:
    """Columns of a series, oldest first; ``value`` is None where the build's value was NaN."""

    time_ns: list[int] = field(default_factory=list)
    value: list[float | None] = field(default_factory=list)
    job_id: list[int] = field(default_factory=list)
    commit: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.time_ns)


class TimeSeriesStore(Protocol):
    """What the services need of a time-series backend."""

    name: str

    async def write(self, points: Sequence[SeriesPoint]) -> None:
        """Store points (idempotent).  Raises ``SeriesStoreError`` when the backend fails."""
        ...

    async def query(self, query: SeriesQuery) -> Series:
        """Read one metric's series.  Raises ``SeriesStoreError`` when the backend fails."""
        ...

    async def query_many(self, queries: Sequence[SeriesQuery]) -> list[Series]:
        """Several series, in the order of ``queries``, in as few round trips as the backend
        allows (each as ``query`` would read it).  Raises ``SeriesStoreError``."""
        ...

    async def ping(self) -> None:
        """Check that the backend answers (cheap: readiness polls it every few seconds).
        Raises ``SeriesStoreError`` saying why not."""
        ...

    async def count_points(self, package: str) -> int:
        """How many points (jobs) a package holds: for checks and benchmarks."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
