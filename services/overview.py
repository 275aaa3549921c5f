"""Use cases of the dashboard's overview pages: every KPM of a dataset at a glance, and the
verification status of the requirements over the recent builds.

Read from the SQL job store only (the last builds carry their measurements): no series
query per metric, so an overview of hundreds of KPMs costs a handful of indexed queries.
Verdicts are derived as everywhere else (``job_verdicts``, ``requirement_status``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import anyio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from specwatch.exceptions import NotFoundError
from specwatch.metrics.model import Metric, Specification
from specwatch.metrics.records import ChangeFilter, ChangeRecord, StoredJob
from specwatch.metrics.requirements import Requirement, requirement_status, specs_of
from specwatch.metrics.verification import Status, Verdict, highest_level
from specwatch.store.changes import ChangeStore
from specwatch.store.definitions import DefinitionStore
from specwatch.store.jobs import JobStore
from specwatch.store.overview_queries import BranchContext, branch_contexts, recent_context_jobs
from specwatch.store.requirements import RequirementStore

from .verification import job_verdicts, metric_units

BUILDS = 30  # builds a sparkline and a trend show
MAX_CONTEXTS = 50  # instrument × filter contexts of one dataset read at most
MAX_OPEN_CHANGES = 1000  # open changes of a dataset read at most

# What a KPM's status says, and whether it counts as failing.
FAILING = ("below minimum", "below design", "below stretch", "fail")


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """A dataset seen on a branch: its instruments and filters, jobs, and newest job."""

    name: str | None
    instruments: tuple[str, ...]
    filters: tuple[str, ...]
    jobs: int
    last_time: datetime
    contexts: int = 1  # instrument × filter combinations seen

    @property
    def one_job_per_build(self) -> bool:
        """Whether each build has one job (one instrument and filter), so jobs are builds."""
        return self.contexts == 1


@dataclass(frozen=True, slots=True)
class KpmRow:
    """One KPM series of the overview: the latest value of a metric in one context."""

    metric: str
    description: str
    unit: str
    tags: tuple[str, ...]
    instrument: str | None
    filter: str | None
    value: float | None  # None: the latest job holding the metric measured NaN
    job_id: int
    time: datetime
    status: str  # stretch, design, minimum, below <level>, pass, fail, not tested, no spec
    verdicts: tuple[Verdict, ...]
    history: tuple[float, ...]  # the context's last builds, oldest first; NaN: none
    open_change: ChangeRecord | None = None  # the worst open change of the series
    open_changes: int = 0

    @property
    def failing(self) -> bool:
        return self.status in FAILING

    @property
    def regressed(self) -> bool:
        return self.open_change is not None and self.open_change.verdict == "worse"


@dataclass(frozen=True, slots=True)
class Overview:
    """The KPMs of one dataset on one branch, ordered: open regressions first (the largest
    first), then other open changes, then failing KPMs, then by name."""

    branch: str
    dataset: str | None
    datasets: list[DatasetInfo]
    instrument: str | None = None
    filter: str | None = None
    tag: str | None = None
    instruments: tuple[str, ...] = ()
    filters: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()  # of the KPMs before the tag filter
    rows: list[KpmRow] = field(default_factory=list)
    jobs: int = 0  # jobs of the dataset on the branch (every instrument and filter)
    jobs_are_builds: bool = True  # one instrument and filter: a job per build
    last_time: datetime | None = None
    builds: int = BUILDS

    @property
    def n_failing(self) -> int:
        return sum(row.failing for row in self.rows)

    @property
    def n_regressions(self) -> int:
        return sum(row.regressed for row in self.rows)

    @property
    def n_open_changes(self) -> int:
        return sum(row.open_change is not None for row in self.rows)


@dataclass(frozen=True, slots=True)
class RequirementTrends:
    """The fraction verified of each requirement on the last builds, oldest first."""

    times: tuple[datetime, ...]
    fractions: Mapping[str, tuple[float | None, ...]]


@dataclass(frozen=True, slots=True)
class SpecCheck:
    """A spec of a requirement and its verdict in one job of the latest build (``verdict``
    None: the spec does not apply to that job, or no job at all)."""

    spec: Specification
    job_id: int | None
    instrument: str | None
    filter: str | None
    verdict: Verdict | None


@dataclass(frozen=True, slots=True)
class RequirementDetail:
    requirement: Requirement
    checks: list[SpecCheck]
    jobs: list[StoredJob]  # of the latest build (summaries of what was verified)


def kpm_status(verdicts: Sequence[Verdict]) -> str:
    """A KPM's status from the verdicts of its latest measurement.

    The highest level met (stretch, design, minimum); else ``below`` the lowest level it has
    specs at; ``pass``/``fail`` for specs without a level; ``not tested`` for NaN;
    ``no spec`` without any applicable spec.
    """
    if not verdicts:
        return "no spec"
    if all(v.status is Status.NOT_TESTED for v in verdicts):
        return "not tested"
    levelled = [v for v in verdicts if v.level is not None]
    unlevelled_fail = any(v.status is Status.FAIL for v in verdicts if v.level is None)
    if not levelled:
        return "fail" if unlevelled_fail else "pass"
    best = highest_level(levelled)
    if best is None:
        lowest = min((v.level for v in levelled if v.level is not None), key=lambda lv: lv.rank)
        return f"below {lowest.value}"
    return "fail" if unlevelled_fail else best.value


def _change_rank(change: ChangeRecord) -> tuple[int, float]:
    return (0 if change.verdict == "worse" else 1, -abs(change.delta_sigma))


def _row_order(row: KpmRow) -> tuple[int, float, str, str, str]:
    change = row.open_change
    if change is not None:
        group, severity = _change_rank(change)
    else:
        group, severity = (2 if row.failing else 3), 0.0
    return (group, severity, row.metric, row.instrument or "", row.filter or "")


def _datasets(contexts: Iterable[BranchContext]) -> list[DatasetInfo]:
    """Contexts grouped by dataset, the most recently built dataset first."""
    grouped: dict[str | None, list[BranchContext]] = {}
    for context in contexts:
        grouped.setdefault(context.dataset, []).append(context)
    infos = [
        DatasetInfo(
            name=name,
            instruments=tuple(sorted({c.instrument for c in found if c.instrument})),
            filters=tuple(sorted({c.filter for c in found if c.filter})),
            jobs=sum(c.jobs for c in found),
            last_time=max(c.last_time for c in found),
            contexts=len(found),
        )
        for name, found in grouped.items()
    ]
    return sorted(infos, key=lambda info: info.last_time, reverse=True)


def kpm_rows(
    jobs: Sequence[StoredJob],
    specs: Sequence[Specification],
    metrics: Mapping[str, Metric],
    changes: Sequence[ChangeRecord],
    *,
    builds: int = BUILDS,
) -> list[KpmRow]:
    """The overview's rows from the recent jobs (oldest first) of one dataset: one per
    metric and instrument × filter, with its latest value, status, history and the worst
    open change of its series (pure; runs in a thread)."""
    by_context: dict[tuple[str | None, str | None], list[StoredJob]] = {}
    for job in jobs:
        by_context.setdefault((job.context.instrument, job.context.filter), []).append(job)
    open_changes: dict[tuple[str, str, str], list[ChangeRecord]] = {}
    for change in changes:
        key = (change.key.metric, change.key.instrument, change.key.filter)
        open_changes.setdefault(key, []).append(change)
    verdicts_of: dict[int, list[Verdict]] = {}
    rows = []
    for (instrument, filter_), context_jobs in by_context.items():
        recent = context_jobs[-builds:]
        values = [{m.metric: m for m in job.measurements} for job in recent]
        latest: dict[str, int] = {}  # metric -> index of the newest job holding it
        for index, measured in enumerate(values):
            for name in measured:
                latest[name] = index
        for name, index in latest.items():
            job, measurement = recent[index], values[index][name]
            if job.id not in verdicts_of:
                verdicts_of[job.id] = job_verdicts(job, specs)
            verdicts = tuple(v for v in verdicts_of[job.id] if v.metric == name)
            found = sorted(
                open_changes.get((name, instrument or "", filter_ or ""), []), key=_change_rank
            )
            metric = metrics.get(name)
            rows.append(
                KpmRow(
                    metric=name,
                    description=metric.description if metric else "",
                    unit=metric.unit if metric else measurement.unit,
                    tags=metric.tags if metric else (),
                    instrument=instrument,
                    filter=filter_,
                    value=measurement.value if math.isfinite(measurement.value) else None,
                    job_id=job.id,
                    time=job.time,
                    status=kpm_status(verdicts),
                    verdicts=verdicts,
                    history=tuple(
                        measured[name].value if name in measured else math.nan
                        for measured in values
                    ),
                    open_change=found[0] if found else None,
                    open_changes=len(found),
                )
            )
    return sorted(rows, key=_row_order)


def builds_of(jobs: Sequence[StoredJob], limit: int) -> list[list[StoredJob]]:
    """Jobs (oldest first) grouped into builds, one per commit (a job without a commit is a
    build of its own); the last ``limit`` builds, oldest first."""
    builds: dict[str | int, list[StoredJob]] = {}
    for job in jobs:
        builds.setdefault(job.context.commit or job.id, []).append(job)
    ordered = sorted(builds.values(), key=lambda build: max(job.time for job in build))
    return ordered[-limit:] if limit > 0 else []


def requirement_fractions(
    builds: Sequence[Sequence[StoredJob]],
    requirements: Sequence[Requirement],
    specs: Sequence[Specification],
    units: Mapping[str, str],
) -> dict[str, tuple[float | None, ...]]:
    """The fraction verified of each requirement on each build (pure; runs in a thread)."""
    matched = {r.id: specs_of(r, specs) for r in requirements}
    series: dict[str, list[float | None]] = {r.id: [] for r in requirements}
    for build in builds:
        verdicts = [v for job in build for v in job_verdicts(job, specs, units)]
        for requirement in requirements:
            status = requirement_status(requirement, matched[requirement.id], verdicts)
            series[requirement.id].append(status.fraction)
    return {key: tuple(values) for key, values in series.items()}


def _check_order(check: SpecCheck) -> tuple[int, str, str]:
    """Minimum, design, stretch (specs without a level first), then by name and filter."""
    return (
        check.spec.level.rank if check.spec.level else 0,
        check.spec.full_name,
        check.filter or "",
    )


def _matrix(stored: Iterable[Requirement], specs: Iterable[Specification]) -> list[Requirement]:
    """The requirements of the matrix and those named only by specs, by ID."""
    matrix = {r.id: r for r in stored}
    for spec in specs:
        for identifier in spec.requirements:
            matrix.setdefault(identifier, Requirement(identifier))
    return sorted(matrix.values(), key=lambda r: r.id)


class OverviewService:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    async def datasets(self, *, branch: str = "main") -> list[DatasetInfo]:
        """The datasets built on ``branch``, the most recently built first."""
        async with self._sessionmaker() as session:
            return _datasets(await branch_contexts(session, branch=branch))

    async def overview(
        self,
        *,
        branch: str = "main",
        dataset: str | None = None,
        instrument: str | None = None,
        filter: str | None = None,
        tag: str | None = None,
        default_dataset: bool = True,
        builds: int = BUILDS,
    ) -> Overview:
        """Every KPM of a dataset on ``branch`` (the most recently built dataset when
        ``dataset`` is None and ``default_dataset``), optionally of one instrument, filter
        or tag."""
        async with self._sessionmaker() as session:
            seen = await branch_contexts(session, branch=branch)
            datasets = _datasets(seen)
            if dataset is None and default_dataset and datasets:
                dataset = datasets[0].name
            chosen = next((info for info in datasets if info.name == dataset), None)
            if chosen is None:
                return Overview(branch, dataset, datasets, instrument, filter, tag)
            contexts = [
                (c.instrument, c.filter)
                for c in seen
                if c.dataset == dataset
                and (instrument is None or c.instrument == instrument)
                and (filter is None or c.filter == filter)
            ][:MAX_CONTEXTS]
            jobs = await recent_context_jobs(
                session, branch=branch, dataset=dataset, contexts=contexts, per_context=builds
            )
            names = sorted({m.metric for job in jobs for m in job.measurements})
            definitions = DefinitionStore(session)
            metrics = await definitions.get_metrics(names)
            specs = await definitions.specs_for_packages(
                sorted({n.partition(".")[0] for n in names})
            )
            changes = await ChangeStore(session).search(
                ChangeFilter(dataset=dataset or "", branch=branch, status="open"),
                after=None,
                limit=MAX_OPEN_CHANGES,
            )
        rows = await anyio.to_thread.run_sync(
            lambda: kpm_rows(jobs, specs, metrics, changes, builds=builds)
        )
        tags = tuple(sorted({t for row in rows for t in row.tags}))
        if tag is not None:
            rows = [row for row in rows if tag in row.tags]
        return Overview(
            branch=branch,
            dataset=dataset,
            datasets=datasets,
            instrument=instrument,
            filter=filter,
            tag=tag,
            instruments=chosen.instruments,
            filters=chosen.filters,
            tags=tags,
            rows=rows,
            jobs=chosen.jobs,
            jobs_are_builds=chosen.one_job_per_build,
            last_time=chosen.last_time,
            builds=builds,
        )

    async def requirement_trends(
        self, *, dataset: str | None, branch: str = "main", builds: int = BUILDS
    ) -> RequirementTrends:
        """Each requirement's fraction verified on the last ``builds`` builds of a dataset."""
        async with self._sessionmaker() as session:
            contexts = [
                (c.instrument, c.filter)
                for c in await branch_contexts(session, branch=branch)
                if c.dataset == dataset
            ][:MAX_CONTEXTS]
            jobs = await recent_context_jobs(
                session, branch=branch, dataset=dataset, contexts=contexts, per_context=builds
            )
            definitions = DefinitionStore(session)
            specs = await definitions.active_specs()
            units = await metric_units(definitions, specs)
            requirements = _matrix(await RequirementStore(session).all(), specs)
        recent = builds_of(jobs, builds)
        fractions = await anyio.to_thread.run_sync(
            lambda: requirement_fractions(recent, requirements, specs, units)
        )
        times = tuple(max(job.time for job in build) for build in recent)
        return RequirementTrends(times, fractions)

    async def requirement_detail(
        self, requirement_id: str, *, dataset: str | None, branch: str = "main"
    ) -> RequirementDetail:
        """A requirement's specs and their verdicts on the latest build of a dataset.

        Raises:
            NotFoundError: no such requirement (in the matrix or named by a spec).
        """
        async with self._sessionmaker() as session:
            definitions = DefinitionStore(session)
            specs = await definitions.active_specs()
            requirements = {r.id: r for r in _matrix(await RequirementStore(session).all(), specs)}
            requirement = requirements.get(requirement_id)
            if requirement is None:
                raise NotFoundError(
                    f"no requirement {requirement_id[:100]!r}", location=["query", "req"]
                )
            names = set(specs_of(requirement, specs))
            mine = [spec for spec in specs if spec.full_name in names]
            units = await metric_units(definitions, mine)
            jobs = await JobStore(session).latest_build(dataset=dataset, branch=branch)
        checks = []
        for spec in mine:
            found = False
            for job in jobs:
                for verdict in job_verdicts(job, [spec], units):
                    found = True
                    checks.append(
                        SpecCheck(spec, job.id, job.context.instrument, job.context.filter, verdict)
                    )
            if not found:
                checks.append(SpecCheck(spec, None, None, None, None))
        checks.sort(
            key=lambda c: (
                c.spec.level.rank if c.spec.level else 0,
                c.spec.full_name,
                c.filter or "",
            )
        )
        return RequirementDetail(requirement, checks, jobs)
