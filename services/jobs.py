"""Use cases on jobs: ingest (atomic, idempotent), read one, list them."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from specwatch.exceptions import (
    IdempotencyConflictError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
)
from specwatch.metrics.jobs import JobDocument, convert_measurements, parse_job_document
from specwatch.metrics.limits import IDEMPOTENCY_KEY_CHARS, DocumentLimits, decode_json
from specwatch.metrics.model import Blob, Metric
from specwatch.metrics.records import JobFilter, StoredJob
from specwatch.store.definitions import DefinitionStore
from specwatch.store.jobs import JobStore, NewJob
from specwatch.store.outbox import OutboxStore
from specwatch.store.series.base import SeriesPoint
from specwatch.store.series.lineprotocol import validate_point
from specwatch.telemetry import record_ingest

from .definitions import check_packages, register_job_definitions
from .delivery import OutboxDeliverer, points_for_job
from .metrics import as_utc
from .tasks import cancel

log = structlog.get_logger("specwatch.jobs")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_METRIC_CACHE_SIZE = 100_000
_IDEMPOTENCY_KEY = re.compile(rf"[\x21-\x7e]{{1,{IDEMPOTENCY_KEY_CHARS}}}")


@dataclass(frozen=True, slots=True)
class IngestResult:
    id: int
    created: bool  # False: the same job was already stored (idempotent replay)
    delivered: bool  # the points reached the series store before the answer
    # Specs the job carried that were not registered: its token lacks write:definitions.
    specs_ignored: int = 0


class JobService:
    """Ingest and read jobs."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        deliverer: OutboxDeliverer,
        *,
        max_job_bytes: int,
        series_write_wait_s: float,
        limits: DocumentLimits | None = None,
        metric_cache: dict[str, Metric] | None = None,
        group: GroupCommit | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._group = group
        # Metrics are never deleted and their units never change meaning (DefinitionStore
        # refuses that), so what a process has read once it can use for unit conversion.
        self._metrics = metric_cache if metric_cache is not None else {}
        self._deliverer = deliverer
        self._max_job_bytes = max_job_bytes
        self._limits = limits or DocumentLimits()
        self._wait_s = series_write_wait_s

    async def ingest(
        self,
        body: bytes,
        *,
        idempotency_key: str | None = None,
        allowed_packages: Collection[str] | None = None,
        may_define: bool = True,
    ) -> IngestResult:
        """Store a job whole or not at all; the same job again changes nothing.

        The key is the ``Idempotency-Key`` header when given, else the body's SHA-256.  The
        specifications a job carries change what "verified" means for every build, so they
        are registered (when unknown) only if ``may_define`` (a ``write:definitions`` token);
        otherwise they are left out and counted in ``specs_ignored``.

        Raises:
            PayloadTooLargeError, InvalidInputError (and its unit/metric subclasses),
            PermissionDeniedError (a package outside the token's), IdempotencyConflictError.
        """
        if len(body) > self._max_job_bytes:
            raise PayloadTooLargeError(
                f"the job is {len(body)} bytes; the limit is {self._max_job_bytes} "
                "(SPECWATCH_MAX_JOB_BYTES)"
            )
        digest = hashlib.sha256(body).hexdigest()
        if idempotency_key is not None and not _IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            raise InvalidInputError(
                f"the Idempotency-Key header must be 1 to {IDEMPOTENCY_KEY_CHARS} visible ASCII "
                "characters",
                location=["header", "Idempotency-Key"],
            )
        key = idempotency_key or f"sha256:{digest}"
        document = parse_job_document(decode_json(body, self._limits))
        specs_ignored = 0
        if not may_define and document.spec_definitions:
            specs_ignored = len(document.spec_definitions)
            document = replace(document, spec_definitions=())
        packages = {m.metric.partition(".")[0] for m in document.measurements}
        check_packages(packages, allowed_packages)

        now = datetime.now(UTC)
        time = document.context.time or now
        time_ns = (time - _EPOCH) // timedelta(microseconds=1) * 1000
        # The job as it will be stored, but for its measurements in their metrics' units.
        draft = NewJob(
            key,
            digest,
            now,
            time,
            time_ns,
            document.context,
            (),
            _unique_blobs(document.blobs),
            document.meta,
            document.packages,
        )
        if self._group is not None and not (
            document.metric_definitions or document.spec_definitions
        ):
            return await self._ingest_grouped(document, draft, specs_ignored)
        for attempt in range(3):
            try:
                stored = await self._store(document, draft, allowed_packages)
                break
            except IntegrityError:
                # A concurrent request committed the same key, or the same new definitions,
                # between our reads and our insert: replay, or try once more on fresh reads.
                async with self._sessionmaker() as session:
                    existing = await JobStore(session).find_by_key(key)
                if existing is not None:
                    return self._replay(existing, digest, key)
                if attempt == 2:
                    raise
        if isinstance(stored, IngestResult):
            return stored
        job, points = stored
        record_ingest(1, job.n_measurements)
        delivered = await self._deliverer.submit(job.id, points, self._wait_s)
        log.debug(
            "job ingested", job_id=job.id, measurements=job.n_measurements, delivered=delivered
        )
        return IngestResult(job.id, created=True, delivered=delivered, specs_ignored=specs_ignored)

    async def _store(
        self,
        document: JobDocument,
        draft: NewJob,
        allowed_packages: Collection[str] | None,
    ) -> tuple[StoredJob, list[SeriesPoint]] | IngestResult:
        """One transaction: the job, its blobs and its outbox row (or the replay of it)."""
        key, digest = draft.key, draft.body_sha256
        async with self._sessionmaker() as session, session.begin():
            jobs = JobStore(session)
            # The same body is the same job, whether it came with a key, another key or none.
            same_body = await jobs.find_by_digest(digest)
            if same_body is not None:
                same_key = await jobs.find_by_key(key) if not key.startswith("sha256:") else None
                return self._replay(same_key or same_body, digest, key)
            definitions = DefinitionStore(session)
            if document.metric_definitions or document.spec_definitions:
                await register_job_definitions(
                    definitions,
                    document.metric_definitions,
                    document.spec_definitions,
                    draft.now,
                    allowed_packages=allowed_packages,
                )
            metrics = await self._metrics_of(document, definitions)
            job = _converted(draft, document, metrics)
            job_id = await jobs.add(job)
            if job_id is None:  # the key is taken: the same job again, or a conflict
                existing = await jobs.find_by_key(key)
                assert existing is not None
                return self._replay(existing, digest, key)
            await OutboxStore(session).add(job_id, self._deliverer.outbox_due(draft.now))
            stored = _stored(job_id, job)
        self._remember(metrics)  # committed
        return stored, points_for_job(stored)

    async def _ingest_grouped(
        self, document: JobDocument, draft: NewJob, specs_ignored: int
    ) -> IngestResult:
        """A job without definitions: converted and checked here, then committed together
        with the other ingests in flight (one transaction, one commit)."""
        async with self._sessionmaker() as session:  # connects only if a metric is new here
            metrics = await self._metrics_of(document, DefinitionStore(session))
        self._remember(metrics)  # read from committed definitions
        job = _converted(draft, document, metrics)
        assert self._group is not None
        job_id, created, stored_digest = await self._group.submit(job)
        if not created:
            return self._replay((job_id, stored_digest), job.body_sha256, job.key)
        stored = _stored(job_id, job)
        record_ingest(1, stored.n_measurements)
        delivered = await self._deliverer.submit(job_id, points_for_job(stored), self._wait_s)
        return IngestResult(job_id, created=True, delivered=delivered, specs_ignored=specs_ignored)

    async def _metrics_of(
        self, document: JobDocument, definitions: DefinitionStore
    ) -> dict[str, Metric]:
        """The metrics a job measures: the ones this process remembers, the rest read."""
        names = {m.metric for m in document.measurements}
        metrics = {n: self._metrics[n] for n in names if n in self._metrics}
        if len(metrics) < len(names):
            metrics.update(await definitions.get_metrics(sorted(names - metrics.keys())))
        return metrics

    def _remember(self, metrics: dict[str, Metric]) -> None:
        """Keep committed metric definitions for the next ingests (bounded)."""
        if len(self._metrics) < _METRIC_CACHE_SIZE:
            self._metrics.update(metrics)

    @staticmethod
    def _replay(existing: tuple[int, str], digest: str, key: str) -> IngestResult:
        job_id, stored_digest = existing
        if stored_digest != digest:
            raise IdempotencyConflictError(
                f"idempotency key {key!r} was used for job {job_id} with a different body",
                location=["header", "Idempotency-Key"],
            )
        return IngestResult(job_id, created=False, delivered=True)

    async def get(self, job_id: int) -> tuple[StoredJob, list[Blob]]:
        """A job with its measurements and blobs.  Raises ``NotFoundError``."""
        async with self._sessionmaker() as session:
            store = JobStore(session)
            job = await store.get(job_id)
            if job is None:
                raise NotFoundError(f"no job {job_id}", location=["path", "job_id"])
            return job, await store.blobs(job_id)

    async def list_jobs(
        self, where: JobFilter, *, before: tuple[datetime, int] | None, limit: int
    ) -> list[StoredJob]:
        """Job summaries, newest build first, after the keyset cursor ``before`` (time, id);
        times without an offset are UTC."""
        where = replace(where, since=as_utc(where.since), until=as_utc(where.until))
        async with self._sessionmaker() as session:
            return await JobStore(session).search(where, before=before, limit=limit)


def _unique_blobs(blobs: tuple[Blob, ...]) -> list[Blob]:
    """Blobs by identifier, the last one winning (lsst.verify may repeat shared blobs)."""
    return list({blob.identifier: blob for blob in blobs}.values())


def _converted(draft: NewJob, document: JobDocument, metrics: dict[str, Metric]) -> NewJob:
    """The job with its measurements in their metrics' units; refuses, before anything is
    committed, points no series backend could hold (the id only shifts a point's time by
    nanoseconds, so a draft id serves)."""
    job = replace(draft, measurements=convert_measurements(document.measurements, metrics))
    for point in points_for_job(_stored(0, job)):
        validate_point(point)
    return job


def _stored(job_id: int, job: NewJob) -> StoredJob:
    return StoredJob(
        id=job_id,
        idempotency_key=job.key,
        created_at=job.now,
        time=job.time,
        time_ns=job.time_ns,
        context=job.context,
        n_measurements=len(job.measurements),
        measurements=tuple(job.measurements),
    )


# (job id, created, the stored body's digest): a replay's caller checks the digest.
Outcome = tuple[int, bool, str]


class GroupCommit:
    """Group commit of ingests: the jobs of concurrent requests go into one transaction (one
    round trip per statement for all of them, one commit and one fsync), each with its outbox
    row.  What a job's idempotency means is kept per job: a key or body already stored is a
    replay, a key stored with another body a conflict, the same job twice in one group one
    insert.  A group that fails (a concurrent process took a key) is committed job by job.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        max_jobs: int = 64,
        outbox_due: Callable[[datetime], datetime] = lambda now: now,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._max_jobs = max_jobs
        self._outbox_due = outbox_due
        self._queue: list[tuple[NewJob, asyncio.Future[Outcome]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.groups = 0  # committed groups (tests, benchmarks)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="specwatch-group-commit")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        batch, self._queue = self._queue, []
        if batch:
            await self._commit(batch)

    async def submit(self, job: NewJob) -> Outcome:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        if self._task is None:  # not running (a CLI process): a group of one, now
            await self._commit([(job, future)])
        else:
            self._queue.append((job, future))
            self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = self._queue[: self._max_jobs]
                del self._queue[: self._max_jobs]
                await self._commit(batch)

    async def _commit(self, batch: list[tuple[NewJob, asyncio.Future[Outcome]]]) -> None:
        try:
            outcomes = await self._commit_group([job for job, _ in batch])
        except IntegrityError as error:
            if len(batch) > 1:  # one of them raced another process: each on its own
                for item in batch:
                    await self._commit([item])
                return
            outcomes = [error]
        except Exception as error:  # the database is down, say: every waiter learns it
            outcomes = [error] * len(batch)
        else:
            self.groups += 1
        if len(outcomes) == 1 and len(batch) == 1 and isinstance(outcomes[0], IntegrityError):
            outcomes = await self._retry_one(batch[0][0], outcomes[0])
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def _retry_one(self, job: NewJob, error: IntegrityError) -> list[Outcome | Exception]:
        """A job alone that hit a key or body committed meanwhile: read again, twice."""
        for _ in range(2):
            try:
                return list(await self._commit_group([job]))
            except IntegrityError as again:
                error = again
        return [error]

    async def _commit_group(self, jobs: list[NewJob]) -> list[Outcome | Exception]:
        async with self._sessionmaker() as session, session.begin():
            store = JobStore(session)
            by_key, by_digest = await store.existing(
                [job.key for job in jobs], [job.body_sha256 for job in jobs]
            )
            outcomes: list[Outcome | Exception | int] = []  # an int: a new job's index
            new: list[NewJob] = []
            first_of_key: dict[str, int] = {}
            first_of_digest: dict[str, int] = {}
            for job in jobs:
                explicit = not job.key.startswith("sha256:")
                same_body = by_digest.get(job.body_sha256)
                same_key = by_key.get(job.key)
                if same_body is not None:
                    found = same_key if explicit and same_key is not None else same_body
                    outcomes.append((found[0], False, found[1]))
                elif same_key is not None:
                    outcomes.append((same_key[0], False, same_key[1]))
                elif job.body_sha256 in first_of_digest:  # the same job twice in this group
                    outcomes.append(-1 - first_of_digest[job.body_sha256])
                elif job.key in first_of_key:  # the same key with another body: a conflict
                    outcomes.append(-1 - first_of_key[job.key])
                else:
                    first_of_key[job.key] = first_of_digest[job.body_sha256] = len(new)
                    outcomes.append(len(new))
                    new.append(job)
            ids = await store.add_many(new) if new else []
            due = self._outbox_due(jobs[0].now)
            await OutboxStore(session).add_many(ids, due)
        result: list[Outcome | Exception] = []
        for outcome in outcomes:
            if isinstance(outcome, int):
                index = outcome if outcome >= 0 else -1 - outcome
                result.append((ids[index], outcome >= 0, new[index].body_sha256))
            else:
                result.append(outcome)
        return result
