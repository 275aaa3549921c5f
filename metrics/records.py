"""Records that cross layers: a stored job, a series key, a change point, their filters.

They live with the core so that the API and the dashboard read what the services return
without importing the storage layer (the stores build and return them, rows never leave).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .model import JobContext, Measurement

# Context fields that are columns of the job table (and filters of the job list).
CONTEXT_FIELDS = (
    "ci_name",
    "ci_id",
    "ci_url",
    "build_url",
    "repository",
    "commit",
    "branch",
    "pr",
    "pr_url",
    "base_commit",
    "dataset",
    "instrument",
    "filter",
    "status",
)


@dataclass(frozen=True, slots=True)
class JobFilter:
    branch: str | None = None
    pr: int | None = None
    commit: str | None = None
    dataset: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoredJob:
    """A job as stored: its id, ingest bookkeeping, context and measurements."""

    id: int
    idempotency_key: str
    created_at: datetime
    time: datetime
    time_ns: int
    context: JobContext
    n_measurements: int
    measurements: tuple[Measurement, ...] = ()
    meta: Mapping[str, Any] | None = None
    packages: Mapping[str, Any] | None = None


def encode_value(value: float) -> float | str:
    """A float as JSON allows it: non-finite values as the strings lsst.verify reads back."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """One series: a metric's values on one branch of one dataset, filter and instrument."""

    metric: str
    dataset: str = ""
    filter: str = ""
    instrument: str = ""
    branch: str = ""


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    key: SeriesKey
    job_id: int
    previous_job_id: int | None
    time: datetime
    commit_before: str | None
    commit_after: str | None
    before: float
    after: float
    delta: float
    delta_pct: float | None
    delta_sigma: float
    sigma: float
    verdict: str
    status: str = "open"
    note: str = ""
    id: int | None = None
    unit: str = ""  # the metric's unit ('' when the metric is unknown or dimensionless)


@dataclass(frozen=True, slots=True)
class ChangeFilter:
    metric: str | None = None
    dataset: str | None = None
    branch: str | None = None
    status: str | None = None
    verdicts: tuple[str, ...] = ()
    since: datetime | None = None


@dataclass(frozen=True, slots=True)
class PackageVersion:
    """One entry of a job's ``meta.packages``: dispatch_verify's keys (``eups_version``,
    ``git_sha``, ``git_url``), the collector's (``version`` too) or a bare version."""

    name: str
    version: str | None
    sha: str | None
    url: str | None  # the package's repository, as sent (pages link only http(s) ones)


def package_version(name: object, entry: Any) -> PackageVersion:
    """Read one ``meta.packages`` entry: ``version``, else ``eups_version``; ``git_sha``
    (``sha``, ``commit``); ``git_url`` (``url``, ``repository``)."""

    def text(value: Any) -> str | None:
        return str(value) if value not in (None, "") else None

    if not isinstance(entry, Mapping):
        return PackageVersion(str(name), text(entry), None, None)
    return PackageVersion(
        str(name),
        text(entry.get("version")) or text(entry.get("eups_version")),
        text(entry.get("git_sha") or entry.get("sha") or entry.get("commit")),
        text(entry.get("git_url") or entry.get("url") or entry.get("repository")),
    )
