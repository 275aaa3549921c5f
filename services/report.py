"""Use case: gather the verification report of a dataset's latest build (data, no format)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from specwatch.metrics.model import Metric, Specification, split_metric_name
from specwatch.metrics.records import ChangeFilter, ChangeRecord, StoredJob
from specwatch.metrics.requirements import RequirementStatus
from specwatch.metrics.verification import Status, Verdict
from specwatch.store.changes import ChangeStore
from specwatch.store.definitions import DefinitionStore
from specwatch.store.reports import ReportRunStore
from specwatch.store.series.base import Series, SeriesQuery, TimeSeriesStore

from .verification import VerificationService, job_verdicts, specs_and_units

MAX_PLOTS = 12
PLOT_POINTS = 500


@dataclass
class Plot:
    metric: Metric
    series: Series
    specs: list[Specification]
    changes: list[ChangeRecord]


@dataclass
class ReportData:
    dataset: str
    branch: str
    created_at: datetime
    jobs: list[StoredJob]
    requirements: list[RequirementStatus]
    verdicts: list[Verdict]
    previous_report: datetime | None  # the build time of the previous report of an earlier build
    changes: list[ChangeRecord]  # since previous_report (all when None), newest first
    plots: list[Plot] = field(default_factory=list)


class ReportService:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], series: TimeSeriesStore
    ) -> None:
        self._sessionmaker = sessionmaker
        self._series = series

    async def build(self, dataset: str, *, branch: str = "main", record: bool = True) -> ReportData:
        """The report of the latest build: requirements, verdicts, changes since the previous
        report of an *earlier* build (of this dataset and branch), and plots of the metrics
        worth a look.

        The report depends on the data only: making it again for the same build, in any
        format, gives the same changes.  ``record`` notes that this build was reported (once
        per build), so that the report of the next build lists the changes since this one.
        """
        status = await VerificationService(self._sessionmaker).requirements(
            dataset=dataset, branch=branch
        )
        now = datetime.now(UTC)
        build_time = max((job.time for job in status.jobs), default=None)
        async with self._sessionmaker() as session:
            # Runs are recorded once per build: the latest run of an earlier build.
            previous = (
                await ReportRunStore(session).latest_build_time(dataset, branch, before=build_time)
                if build_time is not None
                else None
            )
            definitions = DefinitionStore(session)
            names = sorted({m.metric for job in status.jobs for m in job.measurements})
            specs, units = await specs_and_units(definitions, status.jobs)
            metrics = await definitions.get_metrics(names)
            changes = await ChangeStore(session).search(
                ChangeFilter(dataset=dataset, branch=branch, since=previous),
                after=None,
                limit=500,
            )
        verdicts = [v for job in status.jobs for v in job_verdicts(job, specs, units)]
        data = ReportData(
            dataset, branch, now, status.jobs, status.requirements, verdicts, previous, changes
        )
        worth = [c.key.metric for c in changes if c.verdict == "worse"]
        worth += [v.metric for v in verdicts if v.status is Status.FAIL]
        worth += names
        for name in list(dict.fromkeys(worth))[:MAX_PLOTS]:
            package, short = split_metric_name(name)
            series = await self._series.query(
                SeriesQuery(
                    package, short, {"dataset": dataset, "branch": branch}, limit=PLOT_POINTS
                )
            )
            data.plots.append(
                Plot(
                    metrics[name],
                    series,
                    [s for s in specs if s.metric_full_name == name],
                    [c for c in changes if c.key.metric == name],
                )
            )
        if record and build_time is not None:
            await self._record(dataset, branch, build_time, now)
        return data

    async def _record(self, dataset: str, branch: str, build_time: datetime, now: datetime) -> None:
        """Note that the build of ``build_time`` was reported, unless its run is the latest."""
        async with self._sessionmaker() as session, session.begin():
            runs = ReportRunStore(session)
            if await runs.latest_build_time(dataset, branch) != build_time:
                await runs.add(dataset, branch, build_time, now)
