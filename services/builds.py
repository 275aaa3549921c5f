"""Use cases of the dashboard's build pages: one job in its context, one pull request against its
baseline.

A job's page shows every measurement with its verdicts (derived from the specifications as they
are now, as everywhere) and its change against the previous build of ``main`` of the same
dataset and filter (for a pull request's job, the build of its merge base). A pull request's
page is the comparison of ``CompareService``, with the values the small plots of its regressed
metrics need: the baseline builds and every build of the pull request.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from specwatch.exceptions import InvalidInputError, NotFoundError
from specwatch.metrics.compare import Outcome
from specwatch.metrics.limits import INT32_MAX
from specwatch.metrics.model import Direction, Level, Measurement, Metric
from specwatch.metrics.records import PackageVersion, StoredJob, package_version
from specwatch.metrics.verification import Verdict, highest_level
from specwatch.store.build_queries import blob_identifiers, pull_request_jobs
from specwatch.store.definitions import DefinitionStore
from specwatch.store.jobs import JobStore

from .compare import CompareResult, CompareService, MetricComparison
from .metrics import as_utc
from .overview import kpm_status
from .verification import job_verdicts, specs_and_units

if TYPE_CHECKING:  # the context builds the services: no import cycle when it builds this one
    pass

MAIN = "main"
PREVIOUS_BUILDS = 5  # previous main builds read, for a metric the newest one lacks
MAX_PACKAGES = 2000  # package versions shown of one job
PR_BUILDS = 60  # jobs of a pull request read for its plots (every build, every dataset)
MAX_PLOTS = 24  # small plots of one pull request page
NOISE_K = 3.0  # compare_values' default, which CompareService uses: beyond it, a regression


def change_of(delta: float | None, direction: Direction) -> str:
    """What a change means for a metric: ``worse``, ``better``, ``changed`` (no better side),
    ``unchanged``; ``""`` when there is nothing to compare."""
    if delta is None or not math.isfinite(delta):
        return ""
    if delta == 0:
        return "unchanged"
    if direction is Direction.NONE:
        return "changed"
    worse = delta > 0 if direction is Direction.LOWER else delta < 0
    return "worse" if worse else "better"


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def package_versions(packages: Mapping[str, Any] | None) -> list[PackageVersion]:
    """``meta.packages`` (name → dispatch_verify's entry, or a bare version) by name, at most
    ``MAX_PACKAGES``."""

    names = sorted((packages or {}).items(), key=lambda item: str(item[0]))[:MAX_PACKAGES]
    return [package_version(name, entry) for name, entry in names]


@dataclass(frozen=True, slots=True)
class MeasurementRow:
    """One measurement of a job, its verdicts and its change since the previous main build."""

    measurement: Measurement
    description: str
    direction: Direction
    verdicts: tuple[Verdict, ...]
    status: str  # the highest level met, ``below …``, pass/fail, ``no spec`` (kpm_status)
    level: Level | None
    previous: float | None  # in the measurement's unit
    previous_job_id: int | None
    delta: float | None
    delta_pct: float | None
    change: str  # worse | better | changed | unchanged | "" (see change_of)
    drilldown: bool  # the measurement refers to a stored blob

    @property
    def metric(self) -> str:
        return self.measurement.metric


@dataclass(frozen=True, slots=True)
class JobPage:
    job: StoredJob
    previous: StoredJob | None  # the main build it is compared with (same dataset, filter)
    rows: list[MeasurementRow]
    untested: list[Verdict]  # specs that apply to the job, of metrics it did not measure
    packages: list[PackageVersion]
    blobs: int
    branch: str = MAIN
    at_merge_base: bool = False  # previous: the build of the pull request's merge base


def measurement_rows(
    job: StoredJob,
    verdicts: Sequence[Verdict],
    metrics: Mapping[str, Metric],
    previous: Sequence[StoredJob],
    blobs: Iterable[str],
) -> list[MeasurementRow]:
    """The job's measurements by metric name, each against the newest of ``previous`` (newest
    first) that has a value for it in the same unit."""
    by_metric: dict[str, list[Verdict]] = {}
    for verdict in verdicts:
        by_metric.setdefault(verdict.metric, []).append(verdict)
    stored_blobs = set(blobs)
    rows = []
    for measurement in sorted(job.measurements, key=lambda m: m.metric):
        metric = metrics.get(measurement.metric)
        direction = metric.direction if metric else Direction.LOWER
        before: tuple[float, int] | None = None
        for earlier in previous:
            found = next((m for m in earlier.measurements if m.metric == measurement.metric), None)
            if found and found.unit == measurement.unit and _finite(found.value) is not None:
                before = (found.value, earlier.id)
                break
        value = _finite(measurement.value)
        delta = value - before[0] if value is not None and before is not None else None
        delta_pct = (
            100.0 * delta / abs(before[0]) if delta is not None and before and before[0] else None
        )
        mine = tuple(
            sorted(
                by_metric.get(measurement.metric, ()),
                key=lambda v: (v.level.rank if v.level else 0, v.spec),
            )
        )
        rows.append(
            MeasurementRow(
                measurement=measurement,
                description=metric.description if metric else "",
                direction=direction,
                verdicts=mine,
                status=kpm_status(mine),
                level=highest_level(mine),
                previous=before[0] if before else None,
                previous_job_id=before[1] if before else None,
                delta=delta,
                delta_pct=delta_pct,
                change=change_of(delta, direction),
                drilldown=bool(stored_blobs.intersection(measurement.blob_refs)),
            )
        )
    return rows


@dataclass(frozen=True, slots=True)
class BuildValue:
    """A metric's value in one build (job), for a plot."""

    job_id: int
    time: datetime
    value: float
    commit: str | None


@dataclass(frozen=True, slots=True)
class RegressionPlot:
    """What the small plot of one regressed metric shows."""

    item: MetricComparison
    base: list[BuildValue]  # the baseline builds, oldest first
    head: list[BuildValue]  # the pull request's builds of the same dataset and filter
    noise_k: float = NOISE_K


@dataclass
class PullRequestPage:
    number: int
    result: CompareResult
    builds: list[StoredJob]  # the pull request's jobs, oldest first (at most PR_BUILDS)
    plots: list[RegressionPlot] = field(default_factory=list)

    @property
    def counts(self) -> dict[Outcome, int]:
        """How many comparisons of each outcome, worst first (absent outcomes left out)."""
        counts = {outcome: 0 for outcome in sorted(Outcome, key=lambda o: o.rank)}
        for item in self.result.metrics:
            counts[item.comparison.outcome] += 1
        return {outcome: n for outcome, n in counts.items() if n}

    @property
    def branches(self) -> list[str]:
        return sorted({j.context.branch for j in self.result.head_jobs if j.context.branch})

    @property
    def pr_url(self) -> str | None:
        return next((j.context.pr_url for j in self.result.head_jobs if j.context.pr_url), None)


def _values(jobs: Iterable[StoredJob], metric: str, unit: str) -> list[BuildValue]:
    values = []
    for job in sorted(jobs, key=lambda j: (j.time, j.id)):
        found = next((m for m in job.measurements if m.metric == metric), None)
        if found is not None and found.unit == unit and _finite(found.value) is not None:
            values.append(BuildValue(job.id, job.time, found.value, job.context.commit))
    return values


def regression_plot(
    item: MetricComparison, result: CompareResult, builds: Sequence[StoredJob]
) -> RegressionPlot:
    """The baseline builds (of the item's dataset and filter when the baseline has them, as
    ``CompareService`` chose) and the pull request's builds of that dataset and filter."""

    def same_group(job: StoredJob) -> bool:
        return (job.context.dataset, job.context.filter) == (item.dataset, item.filter)

    base = [job for job in result.base_jobs if same_group(job)] or result.base_jobs
    heads = {job.id: job for job in [*builds, *result.head_jobs] if same_group(job)}
    return RegressionPlot(
        item, _values(base, item.metric, item.unit), _values(heads.values(), item.metric, item.unit)
    )


class BuildService:
    """The job page and the pull-request page."""

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, branch: str = MAIN
    ) -> None:
        self._sessionmaker = sessionmaker
        self._branch = branch

    async def job_page(self, job_id: int) -> JobPage:
        """A job, its verdicts, blobs and packages, and the main build it is compared with:
        the newest before it of the same dataset and filter (for a pull request's job, the
        build of its merge base when known).

        Raises:
            NotFoundError: no such job.
        """
        async with self._sessionmaker() as session:
            jobs = JobStore(session)
            job = await jobs.get(job_id)
            if job is None:
                raise NotFoundError(f"no job {job_id}", location=["path", "job_id"])
            previous, at_merge_base = await self._previous_builds(jobs, job)
            definitions = DefinitionStore(session)
            specs, units = await specs_and_units(definitions, [job])
            metrics = await definitions.get_metrics(sorted({m.metric for m in job.measurements}))
            blobs = await blob_identifiers(session, job_id)
        verdicts = job_verdicts(job, specs, units)
        return JobPage(
            job=job,
            previous=previous[0] if previous else None,
            rows=measurement_rows(job, verdicts, metrics, previous, blobs),
            untested=sorted((v for v in verdicts if not v.measured), key=lambda v: v.spec),
            packages=package_versions(job.packages),
            blobs=len(blobs),
            branch=self._branch,
            at_merge_base=at_merge_base,
        )

    async def _previous_builds(
        self, jobs: JobStore, job: StoredJob
    ) -> tuple[list[StoredJob], bool]:
        """The main builds of the job's dataset and filter to compare it with, newest first:
        for a pull request's job, the build of its merge base (``base_commit``) and those
        before it, when that build is known (True); else the builds before the job."""
        context = job.context

        async def history(
            until: datetime, limit: int, commit: str | None = None
        ) -> list[StoredJob]:
            return await jobs.branch_history(
                branch=self._branch,
                dataset=context.dataset,
                filter=context.filter,
                until=until,
                limit=limit,
                commit=commit,
            )

        if context.pr is not None and context.base_commit:
            anchor = await history(datetime.max.replace(tzinfo=UTC), 1, context.base_commit)
            if anchor:
                earlier = await history(anchor[0].time, PREVIOUS_BUILDS)
                return [anchor[0], *(j for j in earlier if j.id != anchor[0].id)][
                    :PREVIOUS_BUILDS
                ], True
        moment = as_utc(job.time)
        earlier = await history(job.time, PREVIOUS_BUILDS + 1)
        # At the job's own time, only the jobs stored before it count as earlier builds.
        before = [j for j in earlier if as_utc(j.time) < moment or j.id < job.id]
        return before[:PREVIOUS_BUILDS], False

    async def pull_request_page(self, number: int, base: str = "auto") -> PullRequestPage:
        """A pull request's newest build against its baseline (``base``: ``auto``, a job id or
        a commit), with a plot of each regressed metric (the worst ``MAX_PLOTS``).

        Raises:
            InvalidInputError: a number out of range, a malformed ``base``.
            NotFoundError: no job of the pull request (location ``head``), or of ``base``.
        """
        if not 1 <= number <= INT32_MAX:
            raise InvalidInputError(
                f"a pull request number is between 1 and {INT32_MAX}", location=["path", "number"]
            )
        result = await CompareService(self._sessionmaker).compare(
            f"pr:{number}", base or "auto", branch=self._branch
        )
        async with self._sessionmaker() as session:
            builds = await pull_request_jobs(session, number, limit=PR_BUILDS)
        regressed = [m for m in result.metrics if m.comparison.outcome is Outcome.REGRESSED]
        plots = [regression_plot(item, result, builds) for item in regressed[:MAX_PLOTS]]
        return PullRequestPage(number, result, builds, plots)
