"""The embedded time-series store: a table of the SQL database, for zero set-up."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, distinct, func, insert, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from specwatch.exceptions import SeriesStoreError
from specwatch.store.models import SQLSeriesPoint
from specwatch.telemetry import observe_series_write

from .base import TAG_KEYS, Series, SeriesPoint, SeriesQuery

_ROWS_PER_INSERT = 2000


class EmbeddedSeriesStore:
    """Points as rows of ``series_point``, one per (job, metric); writes are idempotent."""

    name = "embedded"

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    async def write(self, points: Sequence[SeriesPoint]) -> None:
        rows: list[dict[str, Any]] = []
        for point in points:
            tags = {key: point.tags.get(key, "") for key in TAG_KEYS}
            for metric, value in point.values.items():
                finite = math.isfinite(value)
                rows.append(
                    {
                        "package": point.package,
                        "metric": metric,
                        "time_ns": point.time_ns,
                        "job_id": point.job_id,
                        "value": value if finite else None,
                        "is_nan": not finite,
                        "commit": point.commit,
                        **tags,
                    }
                )
        job_ids = sorted({point.job_id for point in points})
        started = time.perf_counter()
        try:
            async with self._sessionmaker() as session, session.begin():
                for start in range(0, len(job_ids), 5000):
                    await session.execute(
                        delete(SQLSeriesPoint).where(
                            SQLSeriesPoint.job_id.in_(job_ids[start : start + 5000])
                        )
                    )
                for start in range(0, len(rows), _ROWS_PER_INSERT):
                    await session.execute(
                        insert(SQLSeriesPoint), rows[start : start + _ROWS_PER_INSERT]
                    )
        except Exception as error:  # any database failure is a store failure for the outbox
            observe_series_write(self.name, time.perf_counter() - started, failed=True)
            raise SeriesStoreError(f"embedded series store: {error}") from error
        observe_series_write(self.name, time.perf_counter() - started)

    async def ping(self) -> None:
        """Check that the database answers.  Raises ``SeriesStoreError``."""
        try:
            async with self._sessionmaker() as session:
                await session.execute(select(literal(1)))
        except Exception as error:  # any database failure: the store is not reachable
            raise SeriesStoreError(f"embedded series store: {error}") from error

    async def query(self, query: SeriesQuery) -> Series:
        table = SQLSeriesPoint
        statement = select(table.time_ns, table.value, table.job_id, table.commit).where(
            table.package == query.package,
            table.metric == query.metric,
            or_(table.value.is_not(None), table.is_nan.is_(True)),
        )
        for key, value in query.tags.items():
            if key not in TAG_KEYS:
                raise ValueError(f"{key!r} is not a series tag")
            statement = statement.where(getattr(table, key) == value)
        if query.since_ns is not None:
            statement = statement.where(table.time_ns >= query.since_ns)
        if query.until_ns is not None:
            statement = statement.where(table.time_ns < query.until_ns)
        statement = statement.order_by(table.time_ns.desc(), table.job_id.desc()).limit(query.limit)
        async with self._sessionmaker() as session:
            rows = list((await session.execute(statement)).all())
        rows.reverse()
        return Series(
            time_ns=[row[0] for row in rows],
            value=[row[1] for row in rows],
            job_id=[row[2] for row in rows],
            commit=[row[3] for row in rows],
        )

    async def query_many(self, queries: Sequence[SeriesQuery]) -> list[Series]:
        """Several series, one after the other (one SQL query each)."""
        return [await self.query(query) for query in queries]

    async def count_points(self, package: str) -> int:
        statement = select(func.count(distinct(SQLSeriesPoint.job_id))).where(
            SQLSeriesPoint.package == package
        )
        async with self._sessionmaker() as session:
            return int(await session.scalar(statement) or 0)

    async def close(self) -> None:
        """Nothing to release: the engine belongs to the process context."""
