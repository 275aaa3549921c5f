"""The outbox: jobs whose points still have to reach the time-series store.  Never commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .models import SQLJob, SQLOutbox, table

_INSERT = insert(table(SQLOutbox))


class OutboxStore:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, job_id: int, due: datetime) -> None:
        """Queue a job's points, due for the sweep at ``due``."""
        await self.add_many([job_id], due)

    async def add_many(self, job_ids: Sequence[int], due: datetime) -> None:
        if job_ids:
            await self._session.execute(
                _INSERT,
                [
                    {"job_id": job_id, "created_at": due, "attempts": 0, "next_attempt_at": due}
                    for job_id in job_ids
                ],
            )

    async def claim(self, now: datetime | None, limit: int) -> list[int]:
        """Ids of the jobs due for delivery at ``now`` (every one if None), oldest first,
        locked for this transaction: another worker's sweep skips them (PostgreSQL)."""
        query = select(SQLOutbox.job_id)
        if now is not None:
            query = query.where(SQLOutbox.next_attempt_at <= now)
        query = query.order_by(SQLOutbox.next_attempt_at, SQLOutbox.job_id).limit(limit)
        return list(await self._session.scalars(query.with_for_update(skip_locked=True)))

    async def remove(self, job_ids: Sequence[int]) -> None:
        if job_ids:
            await self._session.execute(delete(SQLOutbox).where(SQLOutbox.job_id.in_(job_ids)))

    async def defer(
        self, job_ids: Sequence[int], *, now: datetime, delay: timedelta, error: str
    ) -> None:
        """Count a failed attempt and schedule the next one after ``delay``."""
        if job_ids:
            await self._session.execute(
                update(SQLOutbox)
                .where(SQLOutbox.job_id.in_(job_ids))
                .values(
                    attempts=SQLOutbox.attempts + 1,
                    next_attempt_at=now + delay,
                    last_error=error[:2000],
                )
            )

    async def pending(self, cap: int | None = None) -> int:
        """How many jobs wait; with ``cap``, counted up to it (reads at most ``cap`` rows:
        cheap however long the backlog grows)."""
        rows = select(SQLOutbox.job_id)
        if cap is not None:
            rows = rows.limit(cap)
        counted = select(func.count()).select_from(rows.subquery())
        return int(await self._session.scalar(counted) or 0)

    async def oldest_ingest(self) -> datetime | None:
        """When the oldest waiting job was ingested: the smallest job id (ids grow with
        ingest time), its ``job.created_at`` (not the outbox row's time, which is when a
        sweep may first take it)."""
        oldest = select(func.min(SQLOutbox.job_id)).scalar_subquery()
        return await self._session.scalar(select(SQLJob.created_at).where(SQLJob.id == oldest))
