"""Jobs, their measurements and blobs in the SQL store.  Never commits."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, and_, func, insert, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from specwatch.metrics.model import EMPTY, Blob, JobContext, Measurement
from specwatch.metrics.records import CONTEXT_FIELDS, JobFilter, StoredJob, encode_value

from .models import SQLBlob, SQLJob, table

_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


_SUMMARY_COLUMNS = (
    "id",
    "idempotency_key",
    "created_at",
    "time",
    "time_ns",
    "n_measurements",
    *CONTEXT_FIELDS,
)


def decode_value(value: float | str | None) -> float:
    if value is None:
        return math.nan
    if isinstance(value, str):
        return _NON_FINITE[value]
    return float(value)


def encode_measurements(measurements: Sequence[Measurement]) -> dict[str, Any]:
    """A job's measurements as one columnar JSON document (a fraction of the size and time of
    a list of objects); the rare parts (conversions, blob refs, extras, notes) by position.
    """
    doc: dict[str, Any] = {
        "metric": [m.metric for m in measurements],
        "value": [
            m.value if math.isfinite(m.value) else encode_value(m.value) for m in measurements
        ],
        "unit": [m.unit for m in measurements],
    }
    if any(m.identifier for m in measurements):
        doc["identifier"] = [m.identifier for m in measurements]
    for name in ("blob_refs", "extras", "notes"):
        sparse = {str(i): getattr(m, name) for i, m in enumerate(measurements) if getattr(m, name)}
        if sparse:
            doc[name] = {i: list(v) if name == "blob_refs" else dict(v) for i, v in sparse.items()}
    sent = {
        str(i): [encode_value(m.raw_value if m.raw_value is not None else math.nan), m.raw_unit]
        for i, m in enumerate(measurements)
        if m.raw_unit is not None
    }
    if sent:
        doc["sent"] = sent
    return doc


def decode_measurements(doc: Mapping[str, Any]) -> tuple[Measurement, ...]:
    metrics, units = doc["metric"], doc["unit"]
    identifiers = doc.get("identifier") or [None] * len(metrics)
    blob_refs, extras, notes, sent = (
        doc.get(k) or {} for k in ("blob_refs", "extras", "notes", "sent")
    )
    result = []
    for i, (metric, value, unit, identifier) in enumerate(
        zip(metrics, doc["value"], units, identifiers, strict=True)
    ):
        key = str(i)
        raw = sent.get(key)
        result.append(
            Measurement(
                metric,
                decode_value(value),
                unit,
                identifier,
                decode_value(raw[0]) if raw else None,
                raw[1] if raw else None,
                tuple(blob_refs.get(key, ())),
                extras.get(key, EMPTY),
                notes.get(key, EMPTY),
            )
        )
    return tuple(result)


def _context(row: SQLJob) -> JobContext:
    return JobContext(time=row.time, **{name: getattr(row, name) for name in CONTEXT_FIELDS})


def _stored(row: SQLJob, *, full: bool) -> StoredJob:
    return StoredJob(
        id=row.id,
        idempotency_key=row.idempotency_key,
        created_at=row.created_at,
        time=row.time,
        time_ns=row.time_ns,
        context=_context(row),
        n_measurements=row.n_measurements,
        measurements=decode_measurements(row.measurements) if full else (),
        meta=row.meta if full else None,
        packages=row.packages if full else None,
    )


def _summary(row: RowMapping) -> StoredJob:
    """A job from its summary columns (no measurements)."""
    return StoredJob(
        id=row["id"],
        idempotency_key=row["idempotency_key"],
        created_at=row["created_at"],
        time=row["time"],
        time_ns=row["time_ns"],
        context=JobContext(time=row["time"], **{c: row[c] for c in CONTEXT_FIELDS}),
        n_measurements=row["n_measurements"],
    )


_INSERT_JOB = {
    # On the Core table: an ORM-entity insert would take the slower ORM bulk path.
    "postgresql": postgresql.insert(table(SQLJob))
    .on_conflict_do_nothing(index_elements=["idempotency_key"])
    .returning(table(SQLJob).c.id),
    "sqlite": sqlite.insert(table(SQLJob))
    .on_conflict_do_nothing(index_elements=["idempotency_key"])
    .returning(table(SQLJob).c.id),
}


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to insert, already validated and converted."""

    key: str
    body_sha256: str
    now: datetime
    time: datetime
    time_ns: int
    context: JobContext
    measurements: Sequence[Measurement]
    blobs: Sequence[Blob]
    meta: Mapping[str, Any]
    packages: Mapping[str, Any]

    def row(self) -> dict[str, Any]:
        values: dict[str, Any] = {name: getattr(self.context, name) for name in CONTEXT_FIELDS}
        values.update(
            idempotency_key=self.key,
            body_sha256=self.body_sha256,
            created_at=self.now,
            time=self.time,
            time_ns=self.time_ns,
            meta=dict(self.meta),
            packages=dict(self.packages),
            measurements=encode_measurements(self.measurements),
            n_measurements=len(self.measurements),
        )
        return values


class JobStore:
    """Repository of jobs and blobs."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def find_by_key(self, key: str) -> tuple[int, str] | None:
        """``(job id, body digest)`` of the job stored under an idempotency key."""
        row = (
            await self._session.execute(
                select(SQLJob.id, SQLJob.body_sha256).where(SQLJob.idempotency_key == key)
            )
        ).first()
        return (row[0], row[1]) if row else None

    async def find_by_digest(self, digest: str) -> tuple[int, str] | None:
        """``(job id, body digest)`` of the first job stored with this body's SHA-256."""
        row = (
            await self._session.execute(
                select(SQLJob.id, SQLJob.body_sha256)
                .where(SQLJob.body_sha256 == digest)
                .order_by(SQLJob.id)
                .limit(1)
            )
        ).first()
        return (row[0], row[1]) if row else None

    async def add(self, job: NewJob) -> int | None:
        """Insert a job with its blobs; its id, or None if the key is taken (a replay)."""
        # One prepared statement per dialect, parameters bound: compiled once per process.
        statement = _INSERT_JOB[self._session.get_bind().dialect.name]
        job_id: int | None = (await self._session.execute(statement, job.row())).scalar()
        if job_id is not None and job.blobs:
            await self._session.execute(
                insert(table(SQLBlob)),
                [
                    {"job_id": job_id, "identifier": b.identifier, "name": b.name, "data": b.data}
                    for b in job.blobs
                ],
            )
        return job_id

    async def existing(
        self, keys: Sequence[str], digests: Sequence[str]
    ) -> tuple[dict[str, tuple[int, str]], dict[str, tuple[int, str]]]:
        """The jobs stored under some idempotency keys, and the first job stored with some
        body digests: ``(by key, by digest)``, each value ``(job id, body digest)``."""
        rows = await self._session.execute(
            select(SQLJob.id, SQLJob.idempotency_key, SQLJob.body_sha256)
            .where(
                or_(SQLJob.idempotency_key.in_(list(keys)), SQLJob.body_sha256.in_(list(digests)))
            )
            .order_by(SQLJob.id)
        )
        by_key: dict[str, tuple[int, str]] = {}
        by_digest: dict[str, tuple[int, str]] = {}
        wanted_keys, wanted_digests = set(keys), set(digests)
        for job_id, key, digest in rows:
            if key in wanted_keys:
                by_key[key] = (job_id, digest)
            if digest in wanted_digests:
                by_digest.setdefault(digest, (job_id, digest))
        return by_key, by_digest

    async def add_many(self, jobs: Sequence[NewJob]) -> list[int]:
        """Insert jobs (keys known to be free) with their blobs, in one statement each; their
        ids in order.  A key taken meanwhile raises ``IntegrityError``."""
        statement = insert(table(SQLJob)).returning(
            table(SQLJob).c.id, sort_by_parameter_order=True
        )
        result = await self._session.execute(statement, [job.row() for job in jobs])
        ids = [int(job_id) for job_id in result.scalars()]
        blobs = [
            {"job_id": job_id, "identifier": b.identifier, "name": b.name, "data": b.data}
            for job_id, job in zip(ids, jobs, strict=True)
            for b in job.blobs
        ]
        if blobs:
            await self._session.execute(insert(table(SQLBlob)), blobs)
        return ids

    async def get(self, job_id: int) -> StoredJob | None:
        row = await self._session.get(SQLJob, job_id)
        return _stored(row, full=True) if row else None

    async def get_many(self, job_ids: Sequence[int]) -> list[StoredJob]:
        """Full jobs by id (missing ids are left out), in id order."""
        if not job_ids:
            return []
        rows = await self._session.scalars(
            select(SQLJob).where(SQLJob.id.in_(list(job_ids))).order_by(SQLJob.id)
        )
        return [_stored(row, full=True) for row in rows]

    async def summaries(self, job_ids: Sequence[int]) -> list[StoredJob]:
        """Jobs by id without their measurements (the summary columns only), in id order."""
        if not job_ids:
            return []
        query = select(*(getattr(SQLJob, c) for c in _SUMMARY_COLUMNS))
        result = await self._session.execute(
            query.where(SQLJob.id.in_(list(job_ids))).order_by(SQLJob.id)
        )
        return [_summary(row) for row in result.mappings()]

    async def search(
        self, where: JobFilter, *, before: tuple[datetime, int] | None, limit: int
    ) -> list[StoredJob]:
        """Job summaries, newest build first (by time, then id), after the keyset cursor
        ``before`` (the time and id of the last job of the previous page)."""
        # Only the summary columns: the measurement documents can be large.
        query = select(*(getattr(SQLJob, c) for c in _SUMMARY_COLUMNS))
        query = query.order_by(SQLJob.time.desc(), SQLJob.id.desc()).limit(limit)
        for name in ("branch", "pr", "commit", "dataset"):
            value = getattr(where, name)
            if value is not None:
                query = query.where(getattr(SQLJob, name) == value)
        if where.since is not None:
            query = query.where(SQLJob.time >= where.since)
        if where.until is not None:
            query = query.where(SQLJob.time < where.until)
        if before is not None:
            time, job_id = before
            query = query.where(
                or_(SQLJob.time < time, and_(SQLJob.time == time, SQLJob.id < job_id))
            )
        result = await self._session.execute(query)
        return [_summary(row) for row in result.mappings()]

    async def recent_branch_builds(self, *, per_context: int, min_builds: int) -> list[StoredJob]:
        """The last ``per_context`` jobs (by build time) of each branch × dataset × filter ×
        instrument that has at least ``min_builds`` (pull-request builds left out)."""
        context = (SQLJob.branch, SQLJob.dataset, SQLJob.filter, SQLJob.instrument)
        ranked = (
            select(
                SQLJob.id.label("id"),
                func.row_number()
                .over(partition_by=context, order_by=(SQLJob.time.desc(), SQLJob.id.desc()))
                .label("rank"),
                func.count().over(partition_by=context).label("builds"),
            )
            .where(SQLJob.pr.is_(None), SQLJob.branch.is_not(None))
            .subquery()
        )
        ids = await self._session.scalars(
            select(ranked.c.id)
            .where(ranked.c.rank <= per_context, ranked.c.builds >= min_builds)
            .order_by(ranked.c.id)
        )
        return await self.get_many(list(ids))

    async def latest_build(self, *, dataset: str | None, branch: str) -> list[StoredJob]:
        """The jobs of the newest build (same commit) of a branch and dataset, full."""
        query = select(SQLJob).where(SQLJob.branch == branch).order_by(SQLJob.time.desc())
        if dataset is not None:
            query = query.where(SQLJob.dataset == dataset)
        latest = await self._session.scalar(query.limit(1))
        if latest is None:
            return []
        if latest.commit is None:
            return [_stored(latest, full=True)]
        same = query.where(SQLJob.commit == latest.commit).limit(100)
        return [_stored(row, full=True) for row in await self._session.scalars(same)]

    async def for_commit(self, commit: str, *, limit: int = 200) -> list[StoredJob]:
        """Full jobs of a commit (any branch), newest first."""
        query = select(SQLJob).where(SQLJob.commit == commit).order_by(SQLJob.time.desc())
        return [_stored(row, full=True) for row in await self._session.scalars(query.limit(limit))]

    async def latest_pr_build(self, pr: int, *, limit: int = 200) -> list[StoredJob]:
        """Full jobs of a pull request's newest build (its newest job's commit)."""
        query = select(SQLJob).where(SQLJob.pr == pr).order_by(SQLJob.time.desc())
        latest = await self._session.scalar(query.limit(1))
        if latest is None:
            return []
        if latest.commit is None:
            return [_stored(latest, full=True)]
        same = query.where(SQLJob.commit == latest.commit).limit(limit)
        return [_stored(row, full=True) for row in await self._session.scalars(same)]

    async def first_time(self, *, pr: int, dataset: str | None) -> datetime | None:
        """When a pull request's first job (of a dataset) ran."""
        query = select(SQLJob.time).where(SQLJob.pr == pr, SQLJob.dataset == dataset)
        return await self._session.scalar(query.order_by(SQLJob.time).limit(1))

    async def branch_history(
        self,
        *,
        branch: str,
        dataset: str | None,
        filter: str | None,
        until: datetime,
        limit: int,
        commit: str | None = None,
    ) -> list[StoredJob]:
        """Full jobs of a branch and dataset (and filter) at or before ``until``, newest first;
        with ``commit``, the newest job of that commit only."""
        query = select(SQLJob).where(
            SQLJob.branch == branch, SQLJob.dataset == dataset, SQLJob.time <= until
        )
        if filter is not None:
            query = query.where(SQLJob.filter == filter)
        if commit is not None:
            query = query.where(SQLJob.commit == commit)
        query = query.order_by(SQLJob.time.desc()).limit(limit)
        return [_stored(row, full=True) for row in await self._session.scalars(query)]

    async def blobs(self, job_id: int) -> list[Blob]:
        rows = await self._session.scalars(
            select(SQLBlob).where(SQLBlob.job_id == job_id).order_by(SQLBlob.id)
        )
        return [Blob(identifier=r.identifier, name=r.name, data=r.data) for r in rows]
