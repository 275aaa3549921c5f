"""Operational reads: how much work waits (for ``/metrics`` and ``/readyz``).  Never commits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import SQLJob, SQLOutbox


async def outbox_backlog(session: AsyncSession) -> tuple[int, datetime | None]:
    """How many jobs wait in the outbox, and when the oldest of them was ingested.

    The oldest is the smallest job id (ids grow with ingest time): a primary-key lookup, not
    a scan.  Its ``job.created_at`` is used, not the outbox row's time (which is when the
    sweep may first take it).
    """
    count = int(await session.scalar(select(func.count()).select_from(SQLOutbox)) or 0)
    if not count:
        return 0, None
    oldest = select(func.min(SQLOutbox.job_id)).scalar_subquery()
    ingested = await session.scalar(select(SQLJob.created_at).where(SQLJob.id == oldest))
    return count, ingested


async def outbox_pending(session: AsyncSession, cap: int) -> int:
    """How many jobs wait in the outbox, counted up to ``cap`` (reads at most ``cap`` rows:
    cheap however long the backlog grows)."""
    first = select(SQLOutbox.job_id).limit(cap).subquery()
    return int(await session.scalar(select(func.count()).select_from(first)) or 0)
