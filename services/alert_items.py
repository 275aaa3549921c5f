"""Alert items and their evidence: what a rule found in a series or a pull request, in the
metric's units, with the spec it is judged against, and the outbox form of a PR's summary."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from specwatch.metrics.alerts import (
    AlertItem,
    AlertKind,
    PullRequestSummary,
    item_evidence,
    item_from_evidence,
)
from specwatch.metrics.compare import Outcome
from specwatch.metrics.model import Level, Specification
from specwatch.metrics.records import ChangeRecord, SeriesKey, StoredJob
from specwatch.metrics.verification import Status, Verdict, highest_level, verify
from specwatch.store.jobs import JobStore
from specwatch.store.series.base import Series

from .compare import CompareResult, MetricComparison
from .trends import compare_url, github_base
from .verification import job_metadata


def series_id(key: SeriesKey) -> str:
    return f"{key.metric}|{key.dataset}|{key.filter}|{key.instrument}|{key.branch}"


def alert_title(kind: AlertKind, items: Sequence[AlertItem], pr: int | None) -> str:
    """``Regression: validate_drp.PA1 on HSC-RC2 (+2 more)``."""
    if not items:
        return kind.value
    first = items[0]
    where = " · ".join(p for p in (first.dataset, first.filter) if p)
    subject = f"{first.metric} on {where}" if where else first.metric
    more = f" (+{len(items) - 1} more)" if len(items) > 1 else ""
    head = {
        AlertKind.REGRESSION: "Regression",
        AlertKind.SPEC_LEVEL: "Spec level lost",
        AlertKind.STALE: "Not reported",
        AlertKind.PR_REGRESSION: f"PR #{pr} regresses" if pr is not None else "PR regresses",
    }[kind]
    separator = " " if kind is AlertKind.PR_REGRESSION else ": "
    return f"{head}{separator}{subject}{more}"


def fmt_level(level: Level | None) -> str | None:
    return level.value if level is not None else None


def finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


class JobCache:
    """Jobs read once per evaluation (a group's series share their latest build)."""

    def __init__(self, jobs: JobStore) -> None:
        self._jobs = jobs
        self._found: dict[int, StoredJob | None] = {}

    async def get(self, job_id: int) -> StoredJob | None:
        if job_id not in self._found:
            self._found[job_id] = await self._jobs.get(job_id)
        return self._found[job_id]


@dataclass(frozen=True, slots=True)
class SpecEvidence:
    threshold: float | None = None
    operator: str | None = None
    spec: str | None = None
    requirements: tuple[str, ...] = ()
    level_before: str | None = None
    level_after: str | None = None


def spec_evidence(
    metric: str,
    unit: str,
    specs: Sequence[Specification],
    job: StoredJob | None,
    before: float | None,
    after: float | None,
) -> SpecEvidence:
    """The specification a value is best judged against: the level it lost, else the one it
    fails, else the highest it meets; and the levels before and after."""
    if not specs or job is None or after is None or not math.isfinite(after):
        return SpecEvidence()
    metadata = job_metadata(job)
    verdicts = [v for v in verify({metric: (after, unit)}, specs, metadata) if v.level]
    if not verdicts:
        return SpecEvidence()
    level_after = highest_level(verdicts)
    level_before = None
    if before is not None and math.isfinite(before):
        level_before = highest_level(verify({metric: (before, unit)}, specs, metadata))
    return pick_spec(verdicts, level_before, level_after)


def pick_spec(
    verdicts: Sequence[Verdict], level_before: Level | None, level_after: Level | None
) -> SpecEvidence:
    """Of a value's verdicts: the spec of the level it lost, else the lowest it fails, else
    the highest it meets."""
    verdicts = [v for v in verdicts if v.level is not None and v.measured]
    if not verdicts:
        return SpecEvidence()
    dropped = level_before is not None and (
        level_after is None or level_after.rank < level_before.rank
    )
    failing = sorted(
        (v for v in verdicts if v.status is Status.FAIL),
        key=lambda v: v.level.rank if v.level else 0,
    )
    if dropped:
        shown = next((v for v in verdicts if v.level == level_before), verdicts[0])
    elif failing:
        shown = failing[0]
    else:
        shown = max(verdicts, key=lambda v: v.level.rank if v.level else 0)
    return SpecEvidence(
        shown.threshold,
        shown.operator,
        shown.spec,
        shown.requirements,
        fmt_level(level_before),
        fmt_level(level_after),
    )


def rerun_agrees(series: Series, at: int, change: ChangeRecord) -> bool:
    """Whether a later build of the change's own commit (a rerun) lies nearer the new level
    than the old one: the change is in the code, not in the machine that built it."""
    for j in range(at + 1, len(series)):
        value = series.value[j]
        if (
            series.commit[j] == change.commit_after
            and value is not None
            and math.isfinite(value)
            and abs(value - change.after) < abs(value - change.before)
        ):
            return True
    return False


def pr_item(
    dedup_key: str, c: MetricComparison, number: int, target: str, job: StoredJob | None
) -> AlertItem:
    comparison = c.comparison
    sign = "+" if (comparison.delta or 0) > 0 else ""
    pct = f" ({sign}{comparison.delta_pct:.1f} %)" if comparison.delta_pct is not None else ""
    sigma = f", {abs(comparison.delta_sigma):.1f} σ" if comparison.delta_sigma is not None else ""
    if comparison.outcome is Outcome.MISSING:
        summary = f"not reported (base {comparison.base_mean:.4g} {c.unit})"
    else:
        summary = (
            f"{comparison.base_mean or 0:.4g} → {comparison.head_value or 0:.4g} {c.unit}"
            f"{pct}{sigma} against {comparison.base_n} {target} builds"
        )
    spec = pick_spec(c.specs, c.base_level, c.head_level)
    strong = abs(comparison.delta_sigma or 0.0) >= 5.0 and comparison.base_n >= 5
    return AlertItem(
        dedup_key=dedup_key,
        metric=c.metric,
        unit=c.unit,
        dataset=c.dataset,
        filter=c.filter,
        instrument=job.context.instrument if job else None,
        branch=job.context.branch if job else None,
        pr=number,
        value=finite(comparison.head_value),
        before=finite(comparison.base_mean),
        after=finite(comparison.head_value),
        delta=finite(comparison.delta),
        delta_pct=finite(comparison.delta_pct),
        delta_sigma=finite(comparison.delta_sigma),
        sigma=finite(comparison.base_std),
        confidence="high" if strong else "moderate",
        threshold=spec.threshold,
        operator=spec.operator,
        spec=spec.spec,
        requirements=spec.requirements,
        level_before=fmt_level(c.base_level),
        level_after=fmt_level(c.head_level),
        commit_before=job.context.base_commit if job else None,
        commit_after=job.context.commit if job else None,
        compare_url=compare_url(
            job.context.repository if job else None,
            job.context.base_commit if job else None,
            job.context.commit if job else None,
        ),
        job_id=c.head_job,
        summary=summary.strip(),
    )


def pr_summary(
    number: int, target: str, head: StoredJob, result: CompareResult
) -> PullRequestSummary | None:
    """What GitHub shows of a pull request's build (None without a GitHub repository)."""
    repository = github_base(head.context.repository) or github_base(head.context.pr_url)
    if repository is None or not head.context.commit:
        return None
    counts = {outcome: 0 for outcome in Outcome}
    for c in result.metrics:
        counts[c.comparison.outcome] += 1
    jobs = {job.id: job for job in result.head_jobs}
    worst = tuple(
        pr_item(
            f"pr:{number}|{c.metric}|{c.dataset or ''}|{c.filter or ''}",
            c,
            number,
            target,
            jobs.get(c.head_job),
        )
        for c in result.metrics
        if c.comparison.outcome in (Outcome.REGRESSED, Outcome.MISSING)
    )[:50]
    return PullRequestSummary(
        repository=repository,
        pr=number,
        head_sha=head.context.commit,
        job_id=head.id,
        regressed=counts[Outcome.REGRESSED],
        improved=counts[Outcome.IMPROVED],
        missing=counts[Outcome.MISSING],
        compared=len(result.metrics),
        baseline="; ".join(result.baseline),
        worst=worst,
        pr_url=head.context.pr_url,
    )


def summary_document(summary: PullRequestSummary) -> dict[str, Any]:
    data = {
        name: getattr(summary, name)
        for name in PullRequestSummary.__dataclass_fields__
        if name != "worst"
    }
    data["worst"] = [
        {"dedup_key": i.dedup_key, "state": i.state, **item_evidence(i)} for i in summary.worst
    ]
    return data


def summary_from_document(data: Mapping[str, Any]) -> PullRequestSummary:
    fields = {k: v for k, v in data.items() if k in PullRequestSummary.__dataclass_fields__}
    fields["worst"] = tuple(
        item_from_evidence(i["dedup_key"], i.get("state", "open"), i)
        for i in data.get("worst") or ()
    )
    return PullRequestSummary(**fields)
