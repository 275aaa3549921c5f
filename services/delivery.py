"""Delivering points to the time-series store: group commit on the fast path, outbox otherwise.

An ingest commits the job and an outbox row to SQL, then hands the job's points to the
deliverer and waits a little (``series_write_wait_s``).  The deliverer writes everything queued
in one request (concurrent ingests share one InfluxDB write), wakes the waiters, then deletes
the outbox rows of what it delivered.  What fails, or what a process crashed before delivering,
stays in the outbox: a sweep (in any process that runs the background work) delivers it with
exponential back-off once the series store answers again.  Writes are idempotent, so
delivering twice is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from specwatch.exceptions import SeriesStoreError
from specwatch.metrics.records import StoredJob
from specwatch.store.jobs import JobStore
from specwatch.store.outbox import OutboxStore
from specwatch.store.series.base import SeriesPoint, TimeSeriesStore
from specwatch.store.work import WorkStore

from .tasks import cancel

log = structlog.get_logger("specwatch.delivery")

# An outbox row of a job on the fast path becomes due for the sweep only after this grace, so
# that the sweep does not race the process that is delivering it.
FAST_PATH_GRACE = timedelta(seconds=30)


def point_time_ns(job_id: int, time_ns: int) -> int:
    """The series timestamp of a job: its time, plus ``job_id % 1000`` nanoseconds.

    InfluxDB keeps one point per (measurement, tags, time); the offset keeps two jobs sent
    with the same time and context from overwriting each other.
    """
    return time_ns - time_ns % 1000 + job_id % 1000


def points_for_job(job: StoredJob) -> list[SeriesPoint]:
    """One point per metric package of the job."""
    context = job.context
    tags = {
        "dataset": context.dataset or "",
        "instrument": context.instrument or "",
        "filter": context.filter or "",
        "branch": context.branch or "",
        "pr": str(context.pr) if context.pr is not None else "",
        "pipeline": context.ci_name or "",
    }
    tags = {key: value for key, value in tags.items() if value}
    by_package: dict[str, dict[str, float]] = {}
    for measurement in job.measurements:
        package, _, name = measurement.metric.partition(".")
        by_package.setdefault(package, {})[name] = measurement.value
    time_ns = point_time_ns(job.id, job.time_ns)
    return [
        SeriesPoint(
            package=package,
            time_ns=time_ns,
            job_id=job.id,
            values=values,
            tags=tags,
            commit=context.commit,
        )
        for package, values in sorted(by_package.items())
    ]


@dataclass(slots=True)
class _Pending:
    job_id: int
    points: list[SeriesPoint]
    done: asyncio.Future[bool]


# The work delivered points cause: kind -> payload -> how many things (series, jobs) it holds.
Work = dict[str, dict[str, int]]
WorkOf = Callable[[list[SeriesPoint]], Work]


class OutboxDeliverer:
    """The task that moves points from SQL to the series store.

    Every serving process runs the fast path (its own ingests' points, written as they come);
    the sweep (what failed, or what a crashed process left) runs where the background work
    does, claiming outbox rows with ``FOR UPDATE SKIP LOCKED`` so that workers never deliver
    the same job at once.  Removing a delivered job's outbox row and queueing the work its
    points cause (``work_of``: change detection, alert rules) is one transaction: either both
    happen or the job is delivered again and its work queued then.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        series: TimeSeriesStore,
        *,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 60.0,
        batch_jobs: int = 200,
        work_of: WorkOf | None = None,
        work_delay_s: float = 0.0,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._series = series
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._batch_jobs = batch_jobs
        self._work_of = work_of
        self._work_delay = timedelta(seconds=work_delay_s)
        self._queue: list[_Pending] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sweeps = True
        self._failures = 0
        # Delivered job ids whose outbox rows are deleted in batches, off the delivery path,
        # with the work their points cause.
        self._delivered: list[int] = []
        self._work: Work = {}
        self._cleanup_wake = asyncio.Event()
        self._cleanup_lock = asyncio.Lock()
        self._cleanup_task: asyncio.Task[None] | None = None

    def start(self, *, sweep: bool = True) -> None:
        """Deliver this process's ingests; with ``sweep``, the outbox's due rows too."""
        if self._task is None:
            self._sweeps = sweep
            self._task = asyncio.create_task(self._run(), name="specwatch-outbox")
            self._cleanup_task = asyncio.create_task(self._clean(), name="specwatch-outbox-gc")

    @property
    def running(self) -> bool:
        """Whether ``submit`` delivers (else a job waits in the outbox for a sweep)."""
        return self._task is not None

    def outbox_due(self, now: datetime) -> datetime:
        """When a job committed ``now`` becomes due for a sweep: after the fast path's grace
        when this process delivers it, at once when only a sweep (another process's) will."""
        return now + FAST_PATH_GRACE if self.running else now

    async def stop(self) -> None:
        for task in (self._task, self._cleanup_task):
            await cancel(task)
        self._task = self._cleanup_task = None
        await self._remove_delivered()
        for pending in self._queue:
            if not pending.done.done():
                pending.done.set_result(False)
        self._queue.clear()

    async def submit(self, job_id: int, points: list[SeriesPoint], wait_s: float) -> bool:
        """Queue a committed job's points; True once they are in the series store.

        Returns False when ``wait_s`` passes first or the store fails: the outbox keeps them.
        """
        if self._task is None:
            return False
        pending = _Pending(job_id, points, asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        self._wake.set()
        try:
            return await asyncio.wait_for(asyncio.shield(pending.done), timeout=wait_s)
        except TimeoutError:
            return False

    async def pending(self) -> int:
        """Jobs whose points are not in the series store yet."""
        async with self._sessionmaker() as session:
            rows = await OutboxStore(session).pending()
        return max(0, rows - len(self._delivered))

    async def drain(self) -> int:
        """Deliver every outbox row now (tests, CLI); returns how many jobs were delivered."""
        await self._remove_delivered()
        return await self._sweep(due_only=False)

    async def _run(self) -> None:
        next_sweep = 0.0
        loop = asyncio.get_running_loop()
        while True:
            if self._queue:
                await self._deliver_queue()
                continue
            if self._sweeps and loop.time() >= next_sweep:
                try:
                    delivered = await self._sweep(due_only=True)
                except Exception as error:
                    log.warning("outbox sweep failed", error=str(error))
                    delivered = 0
                delay = 0.0 if delivered >= self._batch_jobs else self._backoff_s()
                next_sweep = loop.time() + max(delay, 0.05 if delivered else 1.0)
            self._wake.clear()
            if self._queue:  # queued while we swept: do not sleep on it
                continue
            timeout = max(0.0, next_sweep - loop.time()) if self._sweeps else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    async def _clean(self) -> None:
        while True:
            await self._cleanup_wake.wait()
            self._cleanup_wake.clear()
            await self._remove_delivered()

    def _collect_work(self, points: list[SeriesPoint]) -> None:
        if self._work_of is not None:
            for kind, payloads in self._work_of(points).items():
                self._work.setdefault(kind, {}).update(payloads)

    async def _queue_work(self, session: AsyncSession, work: Work) -> None:
        due = datetime.now(UTC) + self._work_delay
        store = WorkStore(session)
        for kind, payloads in sorted(work.items()):
            if payloads:
                await store.add(kind, payloads, due)

    async def settle(self) -> None:
        """Record what was delivered now: outbox rows removed, the work it causes queued
        (this is otherwise done in the background, in batches)."""
        await self._remove_delivered()

    async def _remove_delivered(self) -> None:
        async with self._cleanup_lock:  # settle() waits for a cleanup under way
            await self._remove_delivered_now()

    async def _remove_delivered_now(self) -> None:
        job_ids, self._delivered = self._delivered, []
        work, self._work = self._work, {}
        if not job_ids:
            return
        try:
            async with self._sessionmaker() as session, session.begin():
                await OutboxStore(session).remove(job_ids)
                await self._queue_work(session, work)
        except Exception as error:  # delivered; the sweep delivers again and queues the work
            log.warning("outbox cleanup failed", jobs=len(job_ids), error=str(error))

    def _backoff_s(self) -> float:
        if self._failures == 0:
            return 1.0
        return min(self._retry_max_s, self._retry_initial_s * 2.0 ** (self._failures - 1))

    def _failed(self, job_ids: list[int], error: SeriesStoreError) -> timedelta:
        self._failures += 1
        delay = timedelta(seconds=self._backoff_s())
        log.warning(
            "series write failed; kept in the outbox",
            jobs=len(job_ids),
            error=str(error),
            retry_in_s=delay.total_seconds(),
        )
        return delay

    async def _deliver_queue(self) -> None:
        """The fast path: write what this process's ingests queued, in one request."""
        batch, self._queue = self._queue[: self._batch_jobs], self._queue[self._batch_jobs :]
        points = [point for pending in batch for point in pending.points]
        job_ids = [pending.job_id for pending in batch]
        try:
            await self._series.write(points)
        except SeriesStoreError as error:
            delay = self._failed(job_ids, error)
            try:
                async with self._sessionmaker() as session, session.begin():
                    await OutboxStore(session).defer(
                        job_ids, now=datetime.now(UTC), delay=delay, error=str(error)
                    )
            except Exception as db_error:
                log.warning("outbox defer failed", error=str(db_error))
            ok = False
        else:
            self._failures = 0
            self._delivered.extend(job_ids)
            self._collect_work(points)
            self._cleanup_wake.set()
            ok = True
        for pending in batch:
            if not pending.done.done():
                pending.done.set_result(ok)

    async def _sweep(self, *, due_only: bool) -> int:
        """Deliver due outbox rows, a batch per transaction that holds them (SKIP LOCKED)."""
        delivered = 0
        while True:
            now = datetime.now(UTC)
            async with self._sessionmaker() as session, session.begin():
                outbox = OutboxStore(session)
                job_ids = await outbox.claim(now if due_only else None, self._batch_jobs)
                if not job_ids:
                    return delivered
                jobs = await JobStore(session).get_many(job_ids)
                points = [point for job in jobs for point in points_for_job(job)]
                try:
                    await self._series.write(points)
                except SeriesStoreError as error:
                    delay = self._failed(job_ids, error)
                    await outbox.defer(job_ids, now=now, delay=delay, error=str(error))
                    return delivered
                await outbox.remove(job_ids)
                if self._work_of is not None:
                    await self._queue_work(session, self._work_of(points))
            self._failures = 0
            delivered += len(job_ids)
            log.info("outbox delivered", jobs=len(job_ids))
            if len(job_ids) < self._batch_jobs:
                return delivered
