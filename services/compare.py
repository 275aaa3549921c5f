"""Use case: compare a head build (job, commit or pull request) with its baseline.

``base=auto`` takes the target branch's builds at and before the pull request's merge base
(``base_commit``/``merge_base`` sent with the job), else before the pull request's first build,
up to the last ``n`` builds per dataset and filter, so noise is estimated, not guessed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from specwatch.exceptions import InvalidInputError, NotFoundError
from specwatch.metrics.compare import Comparison, compare_values
from specwatch.metrics.limits import INT32_MAX, INT64_MAX
from specwatch.metrics.model import Direction, Level
from specwatch.metrics.records import StoredJob
from specwatch.metrics.verification import Verdict, highest_level
from specwatch.store.definitions import DefinitionStore
from specwatch.store.jobs import JobStore

from .verification import job_verdicts

_PR = re.compile(r"^pr:([0-9]{1,10})$")
_JOB_ID = re.compile(r"^[0-9]{1,19}$")
# What a build reference looks like (the API's pattern): a job id, a commit, pr:N.
BUILD_REF = r"^([0-9]{1,19}|[0-9a-fA-F]{4,64}|pr:[0-9]{1,10})$"
_COMMIT = re.compile(r"^[0-9a-fA-F]{4,64}$")
MAX_BASE_BUILDS = 100


@dataclass(frozen=True, slots=True)
class MetricComparison:
    metric: str
    dataset: str | None
    filter: str | None
    unit: str
    comparison: Comparison
    head_job: int
    specs: list[Verdict]
    base_level: Level | None
    head_level: Level | None


@dataclass
class CompareResult:
    head_ref: str
    base_ref: str
    head_jobs: list[StoredJob]
    base_jobs: list[StoredJob] = field(default_factory=list)
    baseline: list[str] = field(default_factory=list)  # how each group's baseline was chosen
    metrics: list[MetricComparison] = field(default_factory=list)


class CompareService:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    async def compare(
        self, head: str, base: str = "auto", *, branch: str = "main", n: int = 10
    ) -> CompareResult:
        """Per metric, dataset and filter: head against baseline, worst first.

        Raises:
            InvalidInputError: a reference is not a job id, a commit or ``pr:N``.
            NotFoundError: no job matches the head (or an explicit base).
        """
        if not 1 <= n <= MAX_BASE_BUILDS:
            raise InvalidInputError(
                f"n must be between 1 and {MAX_BASE_BUILDS}", location=["query", "n"]
            )
        async with self._sessionmaker() as session:
            jobs = JobStore(session)
            head_jobs = await self._resolve(jobs, head, "head")
            result = CompareResult(head, base, _latest_per_group(head_jobs))
            explicit_base = None if base == "auto" else await self._resolve(jobs, base, "base")
            for job in result.head_jobs:
                group = (job.context.dataset, job.context.filter)
                if explicit_base is not None:
                    baseline = [
                        b for b in explicit_base if (b.context.dataset, b.context.filter) == group
                    ] or explicit_base
                    how = f"{base} (given)"
                else:
                    baseline, how = await self._auto_base(jobs, job, branch, n)
                result.base_jobs.extend(b for b in baseline if b not in result.base_jobs)
                result.baseline.append(f"{group[0]}/{group[1]}: {how}")
                result.metrics.extend(await self._compare_job(session, job, baseline))
        result.metrics.sort(key=_worst_first)
        return result

    async def _resolve(self, jobs: JobStore, ref: str, name: str) -> list[StoredJob]:
        ref = ref.strip()
        found: list[StoredJob]
        if _JOB_ID.match(ref):  # an id no job can have is simply not found
            job = await jobs.get(int(ref)) if 1 <= int(ref) <= INT64_MAX else None
            found = [job] if job else []
        elif match := _PR.match(ref):
            number = int(match.group(1))
            found = await jobs.latest_pr_build(number) if 1 <= number <= INT32_MAX else []
        elif _COMMIT.match(ref):
            found = await jobs.for_commit(ref)
        else:
            raise InvalidInputError(
                f"{name} {ref[:80]!r} is not a job id, a commit or pr:N"
                + (" (or auto)" if name == "base" else ""),
                location=["query", name],
            )
        if not found:
            raise NotFoundError(f"no job for {name} {ref[:80]!r}", location=["query", name])
        return found

    async def _auto_base(
        self, jobs: JobStore, head: StoredJob, branch: str, n: int
    ) -> tuple[list[StoredJob], str]:
        context = head.context

        async def history(
            until: datetime, limit: int, commit: str | None = None
        ) -> list[StoredJob]:
            return await jobs.branch_history(
                branch=branch,
                dataset=context.dataset,
                filter=context.filter,
                until=until,
                limit=limit,
                commit=commit,
            )

        if context.base_commit:
            anchor = await history(datetime.max.replace(tzinfo=UTC), 1, context.base_commit)
            if anchor:
                builds = await history(anchor[0].time, n)
                return (
                    builds,
                    f"{len(builds)} {branch} builds up to merge base {context.base_commit}",
                )
        start = head.time
        if context.pr is not None:
            start = await jobs.first_time(pr=context.pr, dataset=context.dataset) or head.time
        builds = await history(start, n + 1)
        builds = [b for b in builds if b.id != head.id][:n]
        return builds, f"{len(builds)} {branch} builds before {start.isoformat()}"

    async def _compare_job(
        self, session: AsyncSession, head: StoredJob, baseline: Sequence[StoredJob]
    ) -> list[MetricComparison]:
        """Every metric of the head, and every metric of the baseline the head lacks."""
        measured = {m.metric: m for m in head.measurements}
        names = list(measured) + sorted(
            {m.metric for job in baseline for m in job.measurements} - measured.keys()
        )
        definitions = DefinitionStore(session)
        metrics = await definitions.get_metrics(names)
        specs = await definitions.specs_for_metrics(names)
        units = {name: metric.unit for name, metric in metrics.items()}
        head_verdicts = _by_metric(job_verdicts(head, specs, units))
        base_verdicts = _by_metric(job_verdicts(baseline[0], specs)) if baseline else {}
        values = {name: np.full(len(baseline), np.nan) for name in names}
        for column, job in enumerate(baseline):
            for measurement in job.measurements:
                if measurement.metric in values:
                    values[measurement.metric][column] = measurement.value
        compared = []
        for name in names:
            metric = metrics.get(name)
            in_head = measured.get(name)
            verdicts = head_verdicts.get(name, [])
            compared.append(
                MetricComparison(
                    metric=name,
                    dataset=head.context.dataset,
                    filter=head.context.filter,
                    unit=in_head.unit if in_head else (metric.unit if metric else ""),
                    comparison=compare_values(
                        values[name],
                        in_head.value if in_head else None,
                        metric.direction if metric else Direction.LOWER,
                        min_abs=(metric.floor_abs or 0.0) if metric else 0.0,
                        min_pct=(metric.floor_pct or 0.0) if metric else 0.0,
                    ),
                    head_job=head.id,
                    specs=verdicts,
                    base_level=highest_level(base_verdicts.get(name, [])),
                    head_level=highest_level(verdicts),
                )
            )
        return compared


def _by_metric(verdicts: list[Verdict]) -> dict[str, list[Verdict]]:
    grouped: dict[str, list[Verdict]] = {}
    for verdict in verdicts:
        grouped.setdefault(verdict.metric, []).append(verdict)
    return grouped


def _latest_per_group(jobs: list[StoredJob]) -> list[StoredJob]:
    """A build has a job per dataset and filter; several builds: the newest of each group."""
    latest: dict[tuple[str | None, str | None], StoredJob] = {}
    for job in sorted(jobs, key=lambda j: (j.time, j.id)):
        latest[(job.context.dataset, job.context.filter)] = job
    return sorted(latest.values(), key=lambda j: (j.context.dataset or "", j.context.filter or ""))


def _worst_first(item: MetricComparison) -> tuple[int, float, str]:
    sigma = item.comparison.delta_sigma
    pct = item.comparison.delta_pct
    size = abs(sigma) if sigma is not None else abs(pct or 0.0) / 100.0
    return (item.comparison.outcome.rank, -size, item.metric)
