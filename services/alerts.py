"""Use cases of alerts: raise them from what the engine finds, triage them, deliver them.

Raising.  Series rules (``regression``, ``spec_level``) are evaluated inside the transaction
that stores a series' change points (``RegressionService``), so an alert exists exactly when
what raised it does.  Build rules (``pr_regression``, ``stale``) are evaluated for the builds
whose points were just delivered, after their series' detection.  Items of one rule on one
build join one alert; an item's de-duplication key already open raises nothing new, a key
resolved less than the rule's ``cooldown`` ago stays quiet, and silences record without sending.
Each alert writes its notifications to an outbox in the same transaction; ``alert_delivery``
sends them.  The items and their evidence are built in ``alert_items``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from specwatch.config import Settings
from specwatch.exceptions import InvalidInputError, NotFoundError, PermissionDeniedError
from specwatch.metrics.alerts import (
    Alert,
    AlertFilter,
    AlertItem,
    AlertKind,
    AlertState,
    Culprit,
    NotificationEvent,
    Rule,
    RuleSet,
    Silence,
    default_rules,
    parse_rules,
)
from specwatch.metrics.changepoint import Tuning
from specwatch.metrics.compare import Outcome
from specwatch.metrics.model import Direction, Level, Metric, Specification
from specwatch.metrics.records import ChangeRecord, SeriesKey, StoredJob
from specwatch.metrics.verification import Status, highest_level, verify
from specwatch.store.alerts import AlertStore, OpenItem
from specwatch.store.changes import ChangeStore
from specwatch.store.definitions import DefinitionStore
from specwatch.store.jobs import JobStore
from specwatch.store.series.base import Series

from .alert_items import (
    JobCache,
    alert_title,
    finite,
    fmt_level,
    pr_item,
    pr_summary,
    rerun_agrees,
    series_id,
    spec_evidence,
    summary_document,
)
from .compare import CompareService, MetricComparison
from .definitions import check_packages
from .trends import compare_url, github_base, package_changes
from .verification import job_metadata

log = structlog.get_logger("specwatch.alerts")

SERIES_CHANNELS = ("slack", "webhook")  # GitHub hears about pull requests only
STALE_LOOKBACK = 20  # builds before the last ``rule.builds`` that say a metric was reported
# Builds after which a change has passed the detector's full test, not only its early one.
CONFIRMED_BUILDS = Tuning().confirm


@dataclass(frozen=True, slots=True)
class Finding:
    """An item a rule wants open, with the build it is about."""

    rule: Rule
    cooldown_key: str
    item: AlertItem
    commit: str | None
    job_id: int | None


@dataclass
class _Evaluation:
    """What one evaluation decided, applied in its transaction."""

    findings: list[Finding] = field(default_factory=list)
    updates: list[tuple[OpenItem, AlertItem]] = field(default_factory=list)
    resolved: list[OpenItem] = field(default_factory=list)
    reruns: list[tuple[Rule, SeriesKey, ChangeRecord]] = field(default_factory=list)


class AlertService:
    """Rules, evaluation, triage and silences."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        rules: RuleSet,
        *,
        channels: Collection[str],
        group_wait_s: float = 1.0,
    ) -> None:
        self._sessionmaker = sessionmaker
        self.rules = rules
        self.channels = frozenset(channels)  # the configured ones
        self._group_wait = timedelta(seconds=group_wait_s)
        self.wake: asyncio.Event | None = None  # set when notifications were queued

    # --- series rules: inside the detection's transaction ----------------------------------

    async def evaluate_series(
        self,
        session: AsyncSession,
        histories: Sequence[tuple[SeriesKey, Series, Metric]],
        now: datetime,
    ) -> None:
        """Regression and spec-level rules over series whose changes were just stored."""
        regression = self.rules.of_kind(AlertKind.REGRESSION)
        spec_level = self.rules.of_kind(AlertKind.SPEC_LEVEL)
        if not (regression or spec_level) or not histories:
            return
        watched = [
            (key, series, metric)
            for key, series, metric in histories
            if not self.rules.monitored_only(key.metric) and len(series)
        ]
        if not watched:
            return
        evaluation = _Evaluation()
        store = AlertStore(session)
        jobs = JobCache(JobStore(session))
        names = sorted({key.metric for key, _, _ in watched})
        specs: dict[str, list[Specification]] = {}
        for spec in await DefinitionStore(session).specs_for_metrics(names):
            specs.setdefault(spec.metric_full_name, []).append(spec)
        # What the rules need, read at once: a job's detection holds hundreds of series.
        scoped = [
            (rule, key, series, metric)
            for rule in regression + spec_level
            for key, series, metric in watched
            if rule.matches_metric(key.metric, metric.tags)
            and rule.matches_context(key.dataset, key.branch)
            and (rule.kind is AlertKind.REGRESSION or key.metric in specs)
        ]
        if not scoped:
            return
        # Every stored change of the series: those before the window stay as they were.
        stored = await ChangeStore(session).of_series_many(
            sorted(
                {key for rule, key, _, _ in scoped if rule.kind is AlertKind.REGRESSION},
                key=series_id,
            )
        )
        cooldown_keys = [
            f"{rule.name}|{series_id(key)}"
            + ("" if rule.kind is AlertKind.REGRESSION else f"|{level.value}")
            for rule, key, _, _ in scoped
            for level in (rule.levels if rule.kind is AlertKind.SPEC_LEVEL else (Level.MINIMUM,))
        ]
        open_items: dict[str, list[OpenItem]] = {}
        for item in await store.open_items(cooldown_keys):
            open_items.setdefault(item.cooldown_key, []).append(item)
        for rule, key, series, metric in scoped:
            if rule.kind is AlertKind.REGRESSION:
                await self._regressions(
                    store,
                    jobs,
                    rule,
                    key,
                    series,
                    metric,
                    stored.get(key, []),
                    open_items.get(f"{rule.name}|{series_id(key)}", []),
                    specs.get(key.metric, []),
                    evaluation,
                )
            else:
                await self._spec_levels(
                    jobs, rule, key, series, metric, specs[key.metric], open_items, evaluation
                )
        await self._apply(session, evaluation, now)

    async def _regressions(
        self,
        store: AlertStore,
        jobs: JobCache,
        rule: Rule,
        key: SeriesKey,
        series: Series,
        metric: Metric,
        stored: Sequence[ChangeRecord],
        open_items: Sequence[OpenItem],
        specs: Sequence[Specification],
        evaluation: _Evaluation,
    ) -> None:
        cooldown_key = f"{rule.name}|{series_id(key)}"
        position = {job_id: i for i, job_id in enumerate(series.job_id)}
        bad = ("worse", "changed") if metric.direction is Direction.NONE else ("worse",)
        wanted: list[tuple[ChangeRecord, int, str]] = []
        older: set[int] = set()  # before the detection's window: as they were
        for change in stored:
            if change.verdict not in bad or change.status != "open" or change.id is None:
                continue
            at = position.get(change.job_id)
            if at is None:
                older.add(change.id)
                continue
            confirming = len(series) - at if at is not None else 0
            rerun = at is not None and rerun_agrees(series, at, change)
            confidence = "high" if rerun or confirming >= CONFIRMED_BUILDS else "moderate"
            if rule.confirm is None or confirming >= rule.confirm or rerun:
                wanted.append((change, confirming, confidence))
            elif rule.rerun:
                evaluation.reruns.append((rule, key, change))
        by_change = {change.id: (n, confidence) for change, n, confidence in wanted}
        linked = {o.change_id for o in open_items}
        new = [found for found in wanted if found[0].id not in linked]
        orphans = []
        for item in open_items:
            if item.change_id in by_change:
                n, confidence = by_change[item.change_id]
                evaluation.updates.append(
                    (item, replace(item.item, confirming_builds=n, confidence=confidence))
                )
            elif item.change_id not in older:
                orphans.append(item)
        # A change the detector moved (more builds placed it better) keeps its item; an item
        # whose change is gone (accepted, or no longer found) resolves.
        while orphans and new:
            fresh = await self._change_item(jobs, rule, key, metric, specs, *new.pop(0))
            evaluation.updates.append((orphans.pop(0), fresh))
        evaluation.resolved += orphans
        if not new:
            return
        known = await store.known_dedup_keys({f"{cooldown_key}|{found[0].id}" for found in new})
        for change, n, confidence in new:
            fresh = await self._change_item(jobs, rule, key, metric, specs, change, n, confidence)
            if fresh.dedup_key in known:
                continue  # raised before (and closed by a person): never twice
            evaluation.findings.append(
                Finding(rule, cooldown_key, fresh, change.commit_after, change.job_id)
            )

    async def _request_reruns(
        self,
        store: AlertStore,
        reruns: Sequence[tuple[Rule, SeriesKey, ChangeRecord]],
        now: datetime,
    ) -> None:
        """Ask CI (GitHub ``repository_dispatch``) to build a suspected change's commit again,
        once per change: the alert then waits for the rerun to agree (or for ``confirm``
        builds)."""
        if "github" not in self.channels:
            return
        for rule, key, change in reruns:
            dedup_key = f"rerun|{rule.name}|{series_id(key)}|{change.job_id}"
            if await store.requested(dedup_key):
                continue
            job = await store.job(change.job_id)
            repository = github_base(job.context.repository) if job else None
            if job is None or repository is None:
                continue
            # GitHub takes at most 10 top-level properties in a client payload.
            client_payload = {
                "commit": change.commit_after,
                "branch": key.branch,
                "job_id": change.job_id,
                "change_id": change.id,
                "rule": rule.name,
                "ci": {
                    "name": job.context.ci_name,
                    "id": job.context.ci_id,
                    "url": job.context.ci_url or job.context.build_url,
                },
                "series": {
                    "metric": key.metric,
                    "dataset": key.dataset or None,
                    "filter": key.filter or None,
                    "instrument": key.instrument or None,
                },
            }
            payload = {"repository": repository, "client_payload": client_payload}
            await store.enqueue(
                None,
                ["github"],
                NotificationEvent.RERUN.value,
                now=now,
                due=now,
                payload=payload,
                dedup_key=dedup_key,
            )
            log.info("rerun requested", metric=key.metric, commit=change.commit_after)

    async def _change_item(
        self,
        jobs: JobCache,
        rule: Rule,
        key: SeriesKey,
        metric: Metric,
        specs: Sequence[Specification],
        change: ChangeRecord,
        confirming: int,
        confidence: str,
    ) -> AlertItem:
        before = await jobs.get(change.previous_job_id) if change.previous_job_id else None
        after = await jobs.get(change.job_id)
        spec = spec_evidence(key.metric, metric.unit, specs, after, change.before, change.after)
        repository = next(
            (j.context.repository for j in (after, before) if j and j.context.repository), None
        )
        culprits: tuple[Culprit, ...] = ()
        if before is not None and after is not None and before.packages and after.packages:
            changed, _ = package_changes(before.packages, after.packages)
            culprits = tuple(
                Culprit(
                    p.name,
                    p.change,
                    p.version_before,
                    p.version_after,
                    p.sha_before,
                    p.sha_after,
                    p.compare_url or p.url,
                )
                for p in changed[:20]
            )
        sign = "+" if change.delta > 0 else ""
        pct = f" ({sign}{change.delta_pct:.1f} %)" if change.delta_pct is not None else ""
        return AlertItem(
            dedup_key=f"{rule.name}|{series_id(key)}|{change.id}",
            metric=key.metric,
            unit=metric.unit,
            dataset=key.dataset or None,
            filter=key.filter or None,
            instrument=key.instrument or None,
            branch=key.branch or None,
            value=change.after,
            before=change.before,
            after=change.after,
            delta=change.delta,
            delta_pct=finite(change.delta_pct),
            delta_sigma=finite(change.delta_sigma),
            sigma=finite(change.sigma),
            confirming_builds=confirming,
            confidence=confidence,
            threshold=spec.threshold,
            operator=spec.operator,
            spec=spec.spec,
            requirements=spec.requirements,
            level_before=spec.level_before,
            level_after=spec.level_after,
            commit_before=change.commit_before,
            commit_after=change.commit_after,
            compare_url=compare_url(repository, change.commit_before, change.commit_after),
            culprits=culprits,
            change_id=change.id,
            job_id=change.job_id,
            summary=f"{change.before:.4g} → {change.after:.4g} {metric.unit}{pct}, "
            f"{abs(change.delta_sigma):.1f} σ, {confirming} builds since".strip(),
        )

    async def _spec_levels(
        self,
        jobs: JobCache,
        rule: Rule,
        key: SeriesKey,
        series: Series,
        metric: Metric,
        specs: Sequence[Specification],
        open_items: Mapping[str, Sequence[OpenItem]],
        evaluation: _Evaluation,
    ) -> None:
        """A level lost on ``confirm`` builds in a row opens; as many back at it resolve.

        Specs apply by the series' context (the latest job's metadata: the context is the
        series' own).  Levels are computed from the newest build back, only as far as needed.
        """
        confirm = rule.confirm or 2
        latest = await jobs.get(series.job_id[-1])
        if latest is None:
            return
        metadata = job_metadata(latest)
        levels_present = {
            v.level for v in verify({key.metric: (1.0, metric.unit)}, specs, metadata)
        }
        wanted = [level for level in rule.levels if level in levels_present]
        if not wanted:
            return

        def rank(value: float) -> int:
            level = highest_level(verify({key.metric: (value, metric.unit)}, specs, metadata))
            return level.rank if level is not None else 0

        measured = [i for i, v in enumerate(series.value) if v is not None and math.isfinite(v)]
        if len(measured) < confirm:
            return
        last = [rank(series.value[i]) for i in measured[-confirm:]]  # type: ignore[arg-type]
        earlier = measured[:-confirm]
        for level in wanted:
            cooldown_key = f"{rule.name}|{series_id(key)}|{level.value}"
            existing = next(iter(open_items.get(cooldown_key, ())), None)
            lost = all(r < level.rank for r in last)
            if existing is not None:
                if all(r >= level.rank for r in last):
                    evaluation.resolved.append(existing)
                continue
            if not lost:
                continue
            met_before = level is Level.MINIMUM or any(
                rank(series.value[i]) >= level.rank  # type: ignore[arg-type]
                for i in reversed(earlier)
            )
            if not met_before:
                continue
            spec_verdicts = [
                v
                for v in verify({key.metric: (series.value[-1], metric.unit)}, specs, metadata)
                if v.level == level
            ]
            failing = next((v for v in spec_verdicts if v.status is Status.FAIL), None)
            shown = failing or (spec_verdicts[0] if spec_verdicts else None)
            now_level = next(
                (lv for lv in (Level.STRETCH, Level.DESIGN, Level.MINIMUM) if lv.rank == last[-1]),
                None,
            )
            value = series.value[-1]
            threshold = f" {shown.operator} {shown.threshold:.4g}" if shown else ""
            item = AlertItem(
                dedup_key=cooldown_key,
                metric=key.metric,
                unit=metric.unit,
                dataset=key.dataset or None,
                filter=key.filter or None,
                instrument=key.instrument or None,
                branch=key.branch or None,
                value=finite(value),
                threshold=shown.threshold if shown else None,
                operator=shown.operator if shown else None,
                spec=shown.spec if shown else None,
                requirements=shown.requirements if shown else (),
                level_before=level.value,
                level_after=fmt_level(now_level),
                confirming_builds=confirm,
                commit_after=series.commit[-1],
                job_id=series.job_id[-1],
                summary=f"{(value or 0):.4g} {metric.unit}: {level.value} needs"
                f"{threshold} {metric.unit}".strip(),
            )
            evaluation.findings.append(
                Finding(rule, cooldown_key, item, series.commit[-1], series.job_id[-1])
            )

    # --- build rules: after a build's points are delivered ---------------------------------

    async def evaluate_jobs(self, job_ids: Iterable[int]) -> None:
        """Pull-request and stale rules for the builds of these jobs."""
        ids = sorted(set(job_ids))
        if not ids or not (
            self.rules.of_kind(AlertKind.PR_REGRESSION) or self.rules.of_kind(AlertKind.STALE)
        ):
            return
        async with self._sessionmaker() as session:
            found = await JobStore(session).summaries(ids)  # their contexts are enough
        prs = sorted({job.context.pr for job in found if job.context.pr is not None})
        contexts = sorted(
            {
                (job.context.branch, job.context.dataset, job.context.filter)
                for job in found
                if job.context.pr is None and job.context.branch
            },
            key=lambda c: tuple(x or "" for x in c),
        )
        for number in prs:
            try:
                await self.evaluate_pull_request(number)
            except Exception as error:  # one bad pull request must not stop the others
                log.warning("pull-request alert evaluation failed", pr=number, error=str(error))
        for branch, dataset, filter_ in contexts:
            assert branch is not None
            try:
                await self.evaluate_stale(branch, dataset, filter_)
            except Exception as error:
                log.warning("stale evaluation failed", dataset=dataset, error=str(error))

    async def evaluate_pull_request(self, number: int) -> None:
        by_target: dict[str, list[Rule]] = {}
        for rule in self.rules.of_kind(AlertKind.PR_REGRESSION):
            for target in rule.branches or ("main",):
                by_target.setdefault(target, []).append(rule)
        for target, scoped in sorted(by_target.items()):
            try:
                result = await CompareService(self._sessionmaker).compare(
                    f"pr:{number}", branch=target
                )
            except NotFoundError:
                return
            if not result.head_jobs:
                continue
            head = result.head_jobs[0]
            metrics = await self._metrics([c.metric for c in result.metrics])
            now = datetime.now(UTC)
            async with self._sessionmaker() as session, session.begin():
                store = AlertStore(session)
                for rule in scoped:
                    await self._pull_request_rule(
                        session,
                        store,
                        rule,
                        number,
                        target,
                        result.metrics,
                        result.head_jobs,
                        metrics,
                        now,
                    )
                # GitHub: one status and comment per build, whatever the number of rules.
                if "github" in self.channels and any("github" in r.channels for r in scoped):
                    summary = pr_summary(number, target, head, result)
                    if summary is not None:
                        await store.enqueue(
                            None,
                            ["github"],
                            NotificationEvent.PR_SUMMARY.value,
                            now=now,
                            due=now,
                            payload=summary_document(summary),
                        )
            self._wake()

    async def _metrics(self, names: Sequence[str]) -> dict[str, Metric]:
        async with self._sessionmaker() as session:
            return await DefinitionStore(session).get_metrics(sorted(set(names)))

    async def _pull_request_rule(
        self,
        session: AsyncSession,
        store: AlertStore,
        rule: Rule,
        number: int,
        target: str,
        compared: Sequence[MetricComparison],
        head_jobs: Sequence[StoredJob],
        metrics: Mapping[str, Metric],
        now: datetime,
    ) -> None:
        evaluation = _Evaluation()
        outcomes = (
            (Outcome.REGRESSED, Outcome.MISSING) if rule.include_missing else (Outcome.REGRESSED,)
        )
        jobs_by_id = {job.id: job for job in head_jobs}
        keys = {}
        for c in compared:
            metric = metrics.get(c.metric)
            if self.rules.monitored_only(c.metric) or not rule.matches_metric(
                c.metric, metric.tags if metric else ()
            ):
                continue
            if rule.datasets and (c.dataset or "") not in rule.datasets:
                continue
            keys[f"{rule.name}|pr:{number}|{c.metric}|{c.dataset or ''}|{c.filter or ''}"] = c
        open_items = {o.dedup_key: o for o in await store.open_items(keys)}
        for dedup_key, c in keys.items():
            bad = c.comparison.outcome in outcomes
            existing = open_items.get(dedup_key)
            if existing is not None:
                if bad:
                    job = jobs_by_id.get(c.head_job)
                    evaluation.updates.append(
                        (existing, pr_item(dedup_key, c, number, target, job))
                    )
                else:
                    evaluation.resolved.append(existing)
                continue
            if bad:
                job = jobs_by_id.get(c.head_job)
                item = pr_item(dedup_key, c, number, target, job)
                evaluation.findings.append(
                    Finding(rule, dedup_key, item, job.context.commit if job else None, c.head_job)
                )
        await self._apply(session, evaluation, now)

    async def evaluate_stale(self, branch: str, dataset: str | None, filter_: str | None) -> None:
        """Metrics a context reported before and not in its last ``rule.builds`` builds."""
        rules = [
            r for r in self.rules.of_kind(AlertKind.STALE) if r.matches_context(dataset, branch)
        ]
        if not rules:
            return
        now = datetime.now(UTC)
        async with self._sessionmaker() as session, session.begin():
            store = AlertStore(session)
            jobs = JobStore(session)
            longest = max(rule.builds for rule in rules)
            history = await jobs.branch_history(
                branch=branch,
                dataset=dataset,
                filter=filter_,
                until=datetime.max.replace(tzinfo=UTC),
                limit=longest + STALE_LOOKBACK,
            )
            if not history:
                return
            names = sorted({m.metric for job in history for m in job.measurements})
            metrics = await DefinitionStore(session).get_metrics(names)
            evaluation = _Evaluation()
            for rule in rules:
                recent, before = history[: rule.builds], history[rule.builds :]
                if len(recent) < rule.builds:
                    continue
                reported = {m.metric for job in recent for m in job.measurements}
                earlier = {m.metric for job in before for m in job.measurements}
                latest = history[0]
                keys: dict[str, str] = {}
                for name in sorted(reported | earlier):
                    metric = metrics.get(name)
                    if self.rules.monitored_only(name) or not rule.matches_metric(
                        name, metric.tags if metric else ()
                    ):
                        continue
                    key = SeriesKey(
                        name, dataset or "", filter_ or "", latest.context.instrument or "", branch
                    )
                    keys[f"{rule.name}|{series_id(key)}"] = name
                open_items = {o.dedup_key: o for o in await store.open_items(keys)}
                for dedup_key, name in keys.items():
                    existing = open_items.get(dedup_key)
                    if name in reported:
                        if existing is not None:
                            evaluation.resolved.append(existing)
                        continue
                    if existing is not None or name not in earlier:
                        continue
                    last_seen = next(
                        (j for j in before if any(m.metric == name for m in j.measurements)),
                        None,
                    )
                    metric = metrics.get(name)
                    item = AlertItem(
                        dedup_key=dedup_key,
                        metric=name,
                        unit=metric.unit if metric else "",
                        dataset=dataset,
                        filter=filter_,
                        instrument=latest.context.instrument,
                        branch=branch,
                        builds_missing=rule.builds,
                        commit_before=last_seen.context.commit if last_seen else None,
                        commit_after=latest.context.commit,
                        job_id=latest.id,
                        summary=f"missing from the last {rule.builds} builds",
                    )
                    evaluation.findings.append(
                        Finding(rule, dedup_key, item, latest.context.commit, latest.id)
                    )
            await self._apply(session, evaluation, now)

    # --- applying an evaluation ------------------------------------------------------------

    async def _apply(self, session: AsyncSession, evaluation: _Evaluation, now: datetime) -> None:
        store = AlertStore(session)
        touched: set[int] = set()
        for existing, item in evaluation.updates:
            if existing.item != item:
                await store.update_item(existing.id, item)
                touched.add(existing.alert_id)
        if evaluation.resolved:
            done = await store.resolve_items([o.id for o in evaluation.resolved], now)
            for alert_id in done:
                alert = await store.get(alert_id)
                if alert is not None and not alert.silenced:
                    rule = self.rules.get(alert.rule)
                    await store.enqueue(
                        alert_id,
                        self._channels(rule),
                        NotificationEvent.RESOLVED.value,
                        now=now,
                        due=now + self._group_wait,
                    )
        if evaluation.findings:
            await self._raise(store, evaluation.findings, now)
        if evaluation.reruns:
            await self._request_reruns(store, evaluation.reruns, now)
        if touched:
            await store.touch(touched, now)
        if evaluation.resolved or evaluation.findings or evaluation.reruns:
            self._wake()

    async def _raise(self, store: AlertStore, findings: Sequence[Finding], now: datetime) -> None:
        cooling: set[str] = set()
        for finding in findings:
            if finding.rule.cooldown_s > 0:
                since = now - timedelta(seconds=finding.rule.cooldown_s)
                cooling |= await store.cooling([finding.cooldown_key], since)
        silences = await store.silences(now)
        groups: dict[str, list[Finding]] = {}
        for finding in findings:
            if finding.cooldown_key in cooling:
                log.info("alert in cooldown", key=finding.cooldown_key)
                continue
            item = finding.item
            where = f"pr:{item.pr}" if item.pr is not None else (item.branch or "")
            group_key = f"{finding.rule.name}|{where}|{finding.commit or finding.job_id}"
            groups.setdefault(group_key, []).append(finding)
        for group_key, group in groups.items():
            await self._raise_group(store, group_key, group, silences, now)

    async def _raise_group(
        self,
        store: AlertStore,
        group_key: str,
        group: Sequence[Finding],
        silences: Sequence[Silence],
        now: datetime,
    ) -> None:
        rule = group[0].rule
        channels = self._channels(rule)
        alert_id = await store.active_group(group_key)
        if alert_id is None:
            first = group[0]
            job = await store.job(first.job_id) if first.job_id is not None else None
            silenced = all(any(s.matches(rule.name, f.item) for s in silences) for f in group)
            context = job.context if job else None
            alert_id = await store.create(
                rule=rule.name,
                kind=rule.kind,
                group_key=group_key,
                title=alert_title(rule.kind, [f.item for f in group], first.item.pr),
                now=now,
                branch=first.item.branch,
                pr=first.item.pr,
                commit=first.commit,
                job_id=first.job_id,
                repository=context.repository if context else None,
                ci_url=(context.ci_url or context.build_url) if context else None,
                pr_url=context.pr_url if context else None,
                silenced=silenced,
            )
            for finding in group:
                await store.add_item(alert_id, finding.item, finding.cooldown_key, now)
            if not silenced:
                await store.enqueue(
                    alert_id,
                    channels,
                    NotificationEvent.OPENED.value,
                    now=now,
                    due=now + self._group_wait,
                )
            log.info(
                "alert raised",
                alert=alert_id,
                rule=rule.name,
                items=len(group),
                silenced=silenced,
            )
            return
        for finding in group:
            await store.add_item(alert_id, finding.item, finding.cooldown_key, now)
        alert = await store.get(alert_id)
        assert alert is not None
        await store.retitle(alert_id, alert_title(rule.kind, alert.open_items, alert.pr), now)
        if not alert.silenced:
            pending = await store.pending_channels(alert_id)
            late = [c for c in channels if c not in pending]
            if late:
                await store.enqueue(
                    alert_id,
                    late,
                    NotificationEvent.UPDATED.value,
                    now=now,
                    due=now + self._group_wait,
                )

    def _channels(self, rule: Rule | None) -> list[str]:
        wanted = rule.channels if rule is not None else SERIES_CHANNELS
        return [c for c in wanted if c in self.channels and c in SERIES_CHANNELS]

    def _wake(self) -> None:
        if self.wake is not None:
            self.wake.set()

    # --- a change's triage ------------------------------------------------------------------

    async def change_status_changed(
        self, session: AsyncSession, change_id: int, status: str, now: datetime
    ) -> None:
        """An accepted change resolves the items it raised (inside the triage transaction)."""
        if status != "accepted":
            return
        items = await AlertStore(session).open_items_of_change(change_id)
        if items:
            await self._apply(session, _Evaluation(resolved=items), now)

    # --- reading and triage -----------------------------------------------------------------

    async def list_alerts(
        self, where: AlertFilter, *, after: tuple[datetime, int] | None, limit: int
    ) -> list[Alert]:
        async with self._sessionmaker() as session:
            return await AlertStore(session).search(where, after=after, limit=limit)

    async def get(self, alert_id: int) -> tuple[Alert, list[dict[str, Any]]]:
        """An alert and its delivery record.  Raises ``NotFoundError``."""
        async with self._sessionmaker() as session:
            store = AlertStore(session)
            alert = await store.get(alert_id)
            if alert is None:
                raise NotFoundError(f"no alert {alert_id}", location=["path", "alert_id"])
            return alert, await store.notifications(alert_id)

    async def set_state(
        self,
        alert_id: int,
        state: AlertState,
        note: str | None,
        *,
        allowed_packages: Collection[str] | None = None,
    ) -> Alert:
        """Acknowledge, invalidate or resolve an alert.

        Raises:
            NotFoundError: no such alert.
            PermissionDeniedError: it is about a package outside ``allowed_packages``.
            InvalidInputError: acknowledging an alert that is closed already.
        """
        now = datetime.now(UTC)
        async with self._sessionmaker() as session, session.begin():
            store = AlertStore(session)
            alert = await store.get(alert_id)
            if alert is None:
                raise NotFoundError(f"no alert {alert_id}", location=["path", "alert_id"])
            check_packages({i.metric.partition(".")[0] for i in alert.items}, allowed_packages)
            if state is AlertState.ACKNOWLEDGED and not alert.state.active:
                raise InvalidInputError(
                    f"alert {alert_id} is {alert.state.value}; only an open alert can be "
                    "acknowledged",
                    location=["path", "alert_id"],
                )
            await store.set_state(alert_id, state, note, now)
            if state is AlertState.RESOLVED and alert.state.active and not alert.silenced:
                await store.enqueue(
                    alert_id,
                    self._channels(self.rules.get(alert.rule)),
                    NotificationEvent.RESOLVED.value,
                    now=now,
                    due=now,
                )
                self._wake()
            updated = await store.get(alert_id)
        assert updated is not None
        return updated

    async def add_silence(
        self,
        *,
        rule: str | None,
        metric: str | None,
        dataset: str | None,
        branch: str | None,
        pr: int | None,
        ends_at: datetime,
        reason: str,
        created_by: str,
        allowed_packages: Collection[str] | None = None,
    ) -> Silence:
        """Record a silence.

        Raises:
            InvalidInputError: it ends in the past, or names an unknown rule.
            PermissionDeniedError: a token limited to packages silences beyond them.
        """
        check_silence_packages(metric, allowed_packages)
        now = datetime.now(UTC)
        if ends_at <= now:
            raise InvalidInputError(
                "a silence must end in the future", location=["body", "ends_at"]
            )
        if rule is not None and self.rules.get(rule) is None:
            raise InvalidInputError(
                f"no alert rule {rule!r} (GET /api/v1/alert-rules lists them)",
                location=["body", "rule"],
            )
        async with self._sessionmaker() as session, session.begin():
            return await AlertStore(session).add_silence(
                rule=rule,
                metric=metric,
                dataset=dataset,
                branch=branch,
                pr=pr,
                reason=reason,
                created_by=created_by,
                now=now,
                ends_at=ends_at,
            )

    async def silences(self, *, active: bool) -> list[Silence]:
        async with self._sessionmaker() as session:
            return await AlertStore(session).silences(datetime.now(UTC) if active else None)

    async def end_silence(
        self, silence_id: int, *, allowed_packages: Collection[str] | None = None
    ) -> Silence:
        """End a silence now.  Raises ``NotFoundError``, ``PermissionDeniedError``."""
        async with self._sessionmaker() as session, session.begin():
            store = AlertStore(session)
            found = await store.silence(silence_id)
            if found is None:
                raise NotFoundError(f"no silence {silence_id}", location=["path", "silence_id"])
            check_silence_packages(found.metric, allowed_packages)
            ended = await store.end_silence(silence_id, datetime.now(UTC))
        assert ended is not None
        return ended


def check_silence_packages(metric: str | None, allowed: Collection[str] | None) -> None:
    """A token limited to packages may only silence metrics of those packages: its silence
    names a metric (or pattern) whose package part is one of them, spelled out."""
    if not allowed:
        return
    package = (metric or "").partition(".")[0]
    if not package or any(c in package for c in "*?["):
        raise PermissionDeniedError(
            f"this token is limited to package(s) {', '.join(sorted(allowed))}: a silence must "
            "name a metric of one of them (e.g. package.metric or package.*)"
        )
    check_packages({package}, allowed)


def load_rules(settings: Settings) -> RuleSet:
    """The rules of ``SPECWATCH_ALERT_RULES``, else the default ones.

    Raises:
        DefinitionError: the file is malformed (naming the rule and field); InvalidInputError:
        it cannot be read.
    """
    path = settings.alert_rules
    if path is None:
        return default_rules()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"SPECWATCH_ALERT_RULES: cannot read {path}: {error}") from None
    return parse_rules(text, source=str(path), limits=settings.document_limits)
