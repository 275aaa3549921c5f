"""Change points of series, and excluded jobs, in the SQL store.  Never commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, and_, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from specwatch.metrics.records import ChangeFilter, ChangeRecord, SeriesKey

from .models import SQLChange, SQLExclusion, SQLMetric

_KEY_COLUMNS = ("metric", "dataset", "filter", "instrument", "branch")


def _record(row: SQLChange, unit: str | None) -> ChangeRecord:
    return ChangeRecord(
        key=SeriesKey(row.metric, row.dataset, row.filter, row.instrument, row.branch),
        job_id=row.job_id,
        previous_job_id=row.previous_job_id,
        time=row.time,
        commit_before=row.commit_before,
        commit_after=row.commit_after,
        before=row.before,
        after=row.after,
        delta=row.delta,
        delta_pct=row.delta_pct,
        delta_sigma=row.delta_sigma,
        sigma=row.sigma,
        verdict=row.verdict,
        status=row.status,
        note=row.note,
        id=row.id,
        unit=unit or "",
    )


def _with_unit() -> Select[SQLChange, str | None]:
    """Changes with their metric's unit: one left join on the metric's unique name (an index
    lookup per change), so the unit costs no second query."""
    return select(SQLChange, SQLMetric.unit).outerjoin(
        SQLMetric, SQLMetric.full_name == SQLChange.metric
    )


class ChangeStore:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    def _series(self, key: SeriesKey) -> Select[SQLChange]:
        return select(SQLChange).where(
            *(getattr(SQLChange, c) == getattr(key, c) for c in _KEY_COLUMNS)
        )

    async def replace_series(
        self, key: SeriesKey, found: Sequence[ChangeRecord], *, since: datetime, now: datetime
    ) -> None:
        """Make the series' changes at or after ``since`` those ``found``.

        A change found again keeps its status and note (an accepted change stays accepted);
        an open change no longer found is dropped; an accepted one is kept as a decision.
        """
        existing = {
            row.job_id: row
            for row in await self._session.scalars(self._series(key).where(SQLChange.time >= since))
        }
        found_ids = {change.job_id for change in found}
        for job_id, row in existing.items():
            if job_id not in found_ids and row.status == "open":
                await self._session.delete(row)
        for change in found:
            known = existing.get(change.job_id)
            if known is None:
                row = SQLChange(
                    metric=key.metric,
                    dataset=key.dataset,
                    filter=key.filter,
                    instrument=key.instrument,
                    branch=key.branch,
                    job_id=change.job_id,
                    status="open",
                    note="",
                    detected_at=now,
                )
                self._session.add(row)
            else:
                row = known
            row.previous_job_id, row.time = change.previous_job_id, change.time
            row.commit_before, row.commit_after = change.commit_before, change.commit_after
            row.before, row.after, row.delta = change.before, change.after, change.delta
            row.delta_pct, row.delta_sigma = change.delta_pct, change.delta_sigma
            row.sigma, row.verdict, row.updated_at = change.sigma, change.verdict, now
        await self._session.flush()

    async def of_series_many(
        self, keys: Sequence[SeriesKey]
    ) -> dict[SeriesKey, list[ChangeRecord]]:
        """The stored changes of series, oldest first: one query per context (a job's series
        share one)."""
        contexts: dict[tuple[str, str, str, str], list[str]] = {}
        for key in keys:
            contexts.setdefault((key.dataset, key.filter, key.instrument, key.branch), []).append(
                key.metric
            )
        found: dict[SeriesKey, list[ChangeRecord]] = {}
        for (dataset, filter_, instrument, branch), metrics in contexts.items():
            for start in range(0, len(metrics), 500):
                query = (
                    _with_unit()
                    .where(
                        SQLChange.metric.in_(metrics[start : start + 500]),
                        SQLChange.dataset == dataset,
                        SQLChange.filter == filter_,
                        SQLChange.instrument == instrument,
                        SQLChange.branch == branch,
                    )
                    .order_by(SQLChange.time, SQLChange.id)
                )
                for change, unit in await self._session.execute(query):
                    record = _record(change, unit)
                    found.setdefault(record.key, []).append(record)
        return found

    async def search(
        self, where: ChangeFilter, *, after: tuple[datetime, int] | None, limit: int
    ) -> list[ChangeRecord]:
        """Changes, newest first (by time, then id), after the keyset cursor ``after`` (the
        time and id of the last change of the previous page)."""
        query = _with_unit().order_by(SQLChange.time.desc(), SQLChange.id.desc())
        for name in ("metric", "dataset", "branch", "status"):
            value = getattr(where, name)
            if value is not None:
                query = query.where(getattr(SQLChange, name) == value)
        if where.verdicts:
            query = query.where(SQLChange.verdict.in_(where.verdicts))
        if where.since is not None:
            query = query.where(SQLChange.time >= where.since)
        if after is not None:
            time, change_id = after
            query = query.where(
                or_(
                    SQLChange.time < time,
                    and_(SQLChange.time == time, SQLChange.id < change_id),
                )
            )
        rows = await self._session.execute(query.limit(limit))
        return [_record(change, unit) for change, unit in rows]

    async def set_status(self, change_id: int, status: str, note: str, now: datetime) -> bool:
        row = await self._session.get(SQLChange, change_id)
        if row is None:
            return False
        row.status, row.note, row.updated_at = status, note, now
        await self._session.flush()
        return True

    async def get(self, change_id: int) -> ChangeRecord | None:
        found = await self._session.execute(_with_unit().where(SQLChange.id == change_id))
        row = found.first()
        return _record(*row) if row else None

    async def exclude(self, job_id: int, reason: str, now: datetime) -> None:
        row = await self._session.get(SQLExclusion, job_id)
        if row is None:
            self._session.add(SQLExclusion(job_id=job_id, reason=reason, created_at=now))
        else:
            row.reason = reason
        await self._session.flush()

    async def include(self, job_id: int) -> bool:
        result = await self._session.execute(
            delete(SQLExclusion).where(SQLExclusion.job_id == job_id)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]  # CursorResult has rowcount

    async def excluded(self, job_ids: Sequence[int]) -> set[int]:
        """Which of ``job_ids`` are excluded."""
        found: set[int] = set()
        for start in range(0, len(job_ids), 5000):
            chunk = list(job_ids[start : start + 5000])
            found.update(
                await self._session.scalars(
                    select(SQLExclusion.job_id).where(SQLExclusion.job_id.in_(chunk))
                )
            )
        return found
