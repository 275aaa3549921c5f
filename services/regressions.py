"""Use cases of regression detection: find changes in series, triage them, exclude bad data.

A series is a metric's values on one branch of one dataset, filter and instrument, read from
the time-series store.  Detection looks at the last ``WINDOW`` builds of a series (bounded
work); changes older than that window stay as they were found.  It runs in the background
after points are delivered (a durable, debounced queue of touched series), on demand for a
job's series
when it is excluded or included again, and over everything with ``specwatch detect --all``.
Pull-request builds are not series: they are compared with ``/compare``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import anyio
import orjson
import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from specwatch.exceptions import NotFoundError
from specwatch.metrics.changepoint import detect_changes
from specwatch.metrics.model import Metric, split_metric_name
from specwatch.metrics.records import ChangeFilter, ChangeRecord, SeriesKey, StoredJob
from specwatch.store.changes import ChangeStore
from specwatch.store.definitions import DefinitionStore
from specwatch.store.jobs import JobStore
from specwatch.store.series.base import Series, SeriesPoint, SeriesQuery, TimeSeriesStore
from specwatch.store.work import WorkItem, WorkStore
from specwatch.telemetry import observe_detection

from .definitions import check_packages
from .tasks import cancel

if TYPE_CHECKING:
    from .alerts import AlertService

log = structlog.get_logger("specwatch.regressions")

WINDOW = 500  # builds a detection looks at
MIN_BUILDS = 8  # a shorter series says nothing yet
RECENT_BUILDS = 20  # builds of a context whose metrics make its series


def keys_of_job(job: StoredJob) -> list[SeriesKey]:
    """The series a job adds a point to (none for pull-request builds)."""
    context = job.context
    if context.pr is not None or not context.branch:
        return []
    return [
        SeriesKey(
            m.metric,
            context.dataset or "",
            context.filter or "",
            context.instrument or "",
            context.branch,
        )
        for m in job.measurements
    ]


# A package's series in one context: (package, dataset, filter, instrument, branch).
Group = tuple[str, str, str, str, str]


def groups_of_points(points: Iterable[SeriesPoint]) -> dict[Group, set[str]]:
    """The series that points add to, as metric short names per package and context (cheap:
    it runs for every delivered batch).  Pull-request builds add to none."""
    groups: dict[Group, set[str]] = {}
    for point in points:
        tags = point.tags
        branch = tags.get("branch")
        if tags.get("pr") or not branch:
            continue
        group = (
            point.package,
            tags.get("dataset", ""),
            tags.get("filter", ""),
            tags.get("instrument", ""),
            branch,
        )
        groups.setdefault(group, set()).update(point.values.keys())
    return groups


def group_of(key: SeriesKey) -> tuple[Group, str]:
    """A series' group (package and context) and its metric's short name."""
    package, metric = split_metric_name(key.metric)
    return (package, key.dataset, key.filter, key.instrument, key.branch), metric


def keys_of_group(group: Group, metrics: Iterable[str]) -> list[SeriesKey]:
    """The series of some metrics of a group, by metric name."""
    package, dataset, filter_, instrument, branch = group
    return [
        SeriesKey(f"{package}.{metric}", dataset, filter_, instrument, branch)
        for metric in sorted(metrics)
    ]


def _time(time_ns: int) -> datetime:
    return datetime.fromtimestamp(time_ns // 1_000_000_000, UTC).replace(
        microsecond=(time_ns // 1000) % 1_000_000
    )


def _changes(
    key: SeriesKey, series: Series, metric: Metric, excluded: set[int]
) -> list[ChangeRecord]:
    """The change points of one series, its excluded jobs left out (pure; runs in a thread)."""
    keep = [i for i, job_id in enumerate(series.job_id) if job_id not in excluded]
    if len(keep) < MIN_BUILDS:
        return []
    values = [series.value[i] for i in keep]
    changes = detect_changes(
        values, direction=metric.direction, min_abs=metric.floor_abs, min_pct=metric.floor_pct
    )
    found = []
    for change in changes:
        after, before = keep[change.index], keep[change.index - 1]
        found.append(
            ChangeRecord(
                key=key,
                job_id=series.job_id[after],
                previous_job_id=series.job_id[before],
                time=_time(series.time_ns[after]),
                commit_before=series.commit[before],
                commit_after=series.commit[after],
                before=change.before,
                after=change.after,
                delta=change.delta,
                delta_pct=change.delta_pct,
                delta_sigma=change.delta_sigma,
                sigma=change.sigma,
                verdict=change.verdict,
                unit=metric.unit,
            )
        )
    return found


class RegressionService:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], series: TimeSeriesStore
    ) -> None:
        self._sessionmaker = sessionmaker
        self._series = series
        self._running: dict[Group, tuple[asyncio.Lock, int]] = {}  # lock, its users
        # Raises alerts from what a detection stores, in the same transaction.
        self.alerts: AlertService | None = None

    async def detect(self, key: SeriesKey) -> list[ChangeRecord]:
        """Detect the changes of one series (its last ``WINDOW`` builds) and store them."""
        return (await self._detect_group([key]))[key]

    async def detect_many(self, keys: Iterable[SeriesKey]) -> int:
        """Detect over several series; returns how many changes they hold now.

        Series of one package and context (a job's measurements) are read together and
        their changes stored in one transaction.
        """
        groups: dict[Group, set[str]] = {}
        for key in keys:
            group, metric = group_of(key)
            groups.setdefault(group, set()).add(metric)
        total = 0
        for group, metrics in sorted(groups.items()):
            found = await self._detect_group(keys_of_group(group, metrics))
            total += sum(len(changes) for changes in found.values())
        return total

    async def _detect_group(self, keys: list[SeriesKey]) -> dict[SeriesKey, list[ChangeRecord]]:
        """Detect the series of ``keys`` (one package and context): one read, one write.

        One detection of a group at a time in this process (the background scheduler and an
        explicit detection may ask at once); another process storing the same change first
        makes the write run again over what it stored.
        """
        group = group_of(keys[0])[0]
        lock, users = self._running.get(group, (asyncio.Lock(), 0))
        self._running[group] = (lock, users + 1)
        try:
            async with lock:
                return await self._detect_group_now(keys)
        finally:
            lock, users = self._running[group]
            if users == 1:
                del self._running[group]
            else:
                self._running[group] = (lock, users - 1)

    async def _detect_group_now(self, keys: list[SeriesKey]) -> dict[SeriesKey, list[ChangeRecord]]:
        first = keys[0]
        tags = {
            "dataset": first.dataset,
            "filter": first.filter,
            "instrument": first.instrument,
            "branch": first.branch,
        }
        queries = [SeriesQuery(*split_metric_name(k.metric), tags, limit=WINDOW) for k in keys]
        histories = await self._series.query_many(queries)
        async with self._sessionmaker() as session:
            metrics = await DefinitionStore(session).get_metrics([k.metric for k in keys])
            job_ids = sorted({job_id for series in histories for job_id in series.job_id})
            excluded = await ChangeStore(session).excluded(job_ids)
        work = [
            (key, series, metrics[key.metric])
            for key, series in zip(keys, histories, strict=True)
            if key.metric in metrics and len(series)
        ]
        found = await anyio.to_thread.run_sync(
            lambda: {key: _changes(key, series, metric, excluded) for key, series, metric in work}
        )
        for attempt in range(3) if work else ():
            now = datetime.now(UTC)
            try:
                async with self._sessionmaker() as session, session.begin():
                    store = ChangeStore(session)
                    for key, series, _ in work:
                        since = _time(series.time_ns[0])
                        await store.replace_series(key, found[key], since=since, now=now)
                    if self.alerts is not None:
                        await self.alerts.evaluate_series(session, work, now)
                break
            except IntegrityError:  # a concurrent detection elsewhere stored one first
                if attempt == 2:
                    raise
        return {key: found.get(key, []) for key in keys}

    async def all_keys(self, *, min_builds: int = MIN_BUILDS) -> list[SeriesKey]:
        """Every series with enough builds: branch × dataset × filter × instrument contexts of
        the jobs (pull requests left out), times the metrics of their last ``RECENT_BUILDS``
        jobs (so that a metric the very latest build happened to skip still counts)."""
        async with self._sessionmaker() as session:
            recent = await JobStore(session).recent_branch_builds(
                per_context=RECENT_BUILDS, min_builds=min_builds
            )
        keys = {key for job in recent for key in keys_of_job(job)}
        return sorted(keys, key=lambda k: (k.metric, k.dataset, k.filter, k.instrument, k.branch))

    async def changes(
        self, where: ChangeFilter, *, after: tuple[datetime, int] | None, limit: int
    ) -> list[ChangeRecord]:
        """A page of changes, newest first; ``after`` is the previous page's last (time, id)."""
        async with self._sessionmaker() as session:
            return await ChangeStore(session).search(where, after=after, limit=limit)

    async def set_status(
        self,
        change_id: int,
        status: str,
        note: str,
        *,
        allowed_packages: Collection[str] | None = None,
    ) -> ChangeRecord:
        """Accept a change as expected (or reopen it).

        Raises:
            NotFoundError: no such change.
            PermissionDeniedError: its metric's package is outside ``allowed_packages``.
        """
        async with self._sessionmaker() as session, session.begin():
            store = ChangeStore(session)
            found = await store.get(change_id)
            if found is None:
                raise NotFoundError(f"no change {change_id}", location=["path", "change_id"])
            check_packages({found.key.metric.partition(".")[0]}, allowed_packages)
            now = datetime.now(UTC)
            await store.set_status(change_id, status, note, now)
            if self.alerts is not None:
                await self.alerts.change_status_changed(session, change_id, status, now)
            record = await store.get(change_id)
        assert record is not None
        return record

    async def exclude(
        self,
        job_id: int,
        reason: str,
        *,
        excluded: bool = True,
        allowed_packages: Collection[str] | None = None,
    ) -> int:
        """Mark a job's points as bad data (or good again) and re-detect its series.

        Returns how many series were re-detected.

        Raises:
            NotFoundError: no such job.
            PermissionDeniedError: the job measures a package outside ``allowed_packages``.
        """
        async with self._sessionmaker() as session, session.begin():
            job = await JobStore(session).get(job_id)
            if job is None:
                raise NotFoundError(f"no job {job_id}", location=["path", "job_id"])
            check_packages({m.metric.partition(".")[0] for m in job.measurements}, allowed_packages)
            store = ChangeStore(session)
            if excluded:
                await store.exclude(job_id, reason, datetime.now(UTC))
            else:
                await store.include(job_id)
        keys = keys_of_job(job)
        await self.detect_many(keys)
        return len(keys)


DETECT, ALERT_JOB = "detect", "alert-job"  # kinds of work items


def _series_payload(group: Group, metrics: Iterable[str]) -> str:
    """A work item: some series of one group.  Jobs of one package and context measure the
    same metrics build after build, so their detections are one item (one row)."""
    return orjson.dumps([*group, sorted(metrics)]).decode()


def work_of_points(points: list[SeriesPoint]) -> dict[str, dict[str, int]]:
    """The work delivered points cause: detection of the series they add to, then the alert
    rules of their builds."""
    detect = {
        _series_payload(group, metrics): len(metrics)
        for group, metrics in groups_of_points(points).items()
    }
    return {DETECT: detect, ALERT_JOB: {str(point.job_id): 1 for point in points}}


async def request_detection(
    sessionmaker: async_sessionmaker[AsyncSession], keys: Iterable[SeriesKey], due: datetime
) -> None:
    """Queue the detection of ``keys`` (durably: whichever process runs detection does it)."""
    groups: dict[Group, set[str]] = {}
    for key in keys:
        group, metric = group_of(key)
        groups.setdefault(group, set()).add(metric)
    payloads = {_series_payload(group, metrics): len(metrics) for group, metrics in groups.items()}
    async with sessionmaker() as session, session.begin():
        await WorkStore(session).add(DETECT, payloads, due)


class DetectionScheduler:
    """Background detection of the series that received points, from the durable work queue.

    Delivery queues a series' detection ``debounce_s`` ahead (a burst of ingests costs one
    detection per series); any process running the background work claims due items with
    ``FOR UPDATE SKIP LOCKED``, detects their series and deletes them in that transaction, then
    runs the alert rules of the builds delivered.  A crash leaves the items for another run.
    """

    def __init__(
        self,
        service: RegressionService,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        debounce_s: float = 5.0,
        poll_s: float = 1.0,
        batch: int = 5000,
    ) -> None:
        self._service = service
        self._sessionmaker = sessionmaker
        self._debounce_s = debounce_s
        self._poll_s = min(poll_s, max(debounce_s, 0.05))
        self._batch = batch
        self._task: asyncio.Task[None] | None = None
        # Called before a flush: the delivery queues its work in batches, in the background.
        self.before_flush: Callable[[], Awaitable[None]] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="specwatch-detection")

    async def discard(self) -> None:
        """Forget the queued work (its detection has just been run by other means)."""
        async with self._sessionmaker() as session, session.begin():
            await WorkStore(session).clear()

    async def stop(self) -> None:
        """Stop; what waits stays queued for the next run (of this or another process)."""
        await cancel(self._task)
        self._task = None

    async def flush(self) -> int:
        """Detect every queued series now, due or not (tests, CLI); returns how many."""
        if self.before_flush is not None:
            await self.before_flush()
        count = 0
        while True:
            done = await self._detect_due(None)
            count += done
            if not done:
                break
        await self._evaluate_due(None)
        return count

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_evaluation = 0.0
        while True:
            try:
                now = datetime.now(UTC)
                detected = await self._detect_due(now)
                evaluated = 0
                # Build rules read each context's recent history: once a debounce at most.
                if loop.time() >= next_evaluation:
                    evaluated = await self._evaluate_due(now)
                    next_evaluation = loop.time() + self._debounce_s
            except Exception as error:  # the database went away: try again later
                log.warning("background detection failed", error=str(error))
                detected = evaluated = 0
            if detected or evaluated:
                continue
            await asyncio.sleep(self._poll_s)  # other processes queue work too: poll

    async def _detect_due(self, now: datetime | None) -> int:
        """One batch of due series: claimed, detected, deleted, in one transaction."""
        async with self._sessionmaker() as session, session.begin():
            store = WorkStore(session)
            items = await store.claim(DETECT, now, self._batch)
            groups: dict[Group, tuple[set[str], list[WorkItem]]] = {}
            for item in items:
                *group, metrics = orjson.loads(item.payload)
                found = groups.setdefault(tuple(group), (set(), []))
                found[0].update(metrics)
                found[1].append(item)
            done: list[WorkItem] = []
            failed: list[WorkItem] = []
            count = 0
            for group, (metrics, group_items) in sorted(groups.items()):
                started = time.perf_counter()
                try:
                    await self._service.detect_many(keys_of_group(group, metrics))
                except Exception as error:  # one bad group must not stop the others
                    log.warning(
                        "detection failed", package=group[0], dataset=group[1], error=str(error)
                    )
                    failed.extend(group_items)
                else:
                    done.extend(group_items)
                    count += len(metrics)
                observe_detection(time.perf_counter() - started)
            await store.done(done)
            if failed:  # the series store is down, say: later, not in a hot loop
                await store.postpone(failed, datetime.now(UTC) + _RETRY)
        return count

    async def _evaluate_due(self, now: datetime | None) -> int:
        """The alert rules of the builds whose points were delivered (after detection)."""
        alerts = self._service.alerts
        async with self._sessionmaker() as session, session.begin():
            store = WorkStore(session)
            items = await store.claim(ALERT_JOB, now, self._batch)
            if not items:
                return 0
            if alerts is not None:
                try:
                    await alerts.evaluate_jobs({int(item.payload) for item in items})
                except Exception as error:
                    log.warning("alert evaluation failed", jobs=len(items), error=str(error))
                    await store.postpone(items, datetime.now(UTC) + _RETRY)
                    return len(items)
            await store.done(items)
        return len(items)


_RETRY = timedelta(seconds=30)
