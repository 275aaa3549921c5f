"""Use cases on metrics: list and describe them, and read their series."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import overload

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from specwatch.exceptions import InvalidInputError, NotFoundError
from specwatch.metrics.jobs import EARLIEST, LATEST
from specwatch.metrics.model import Metric, Specification, split_metric_name
from specwatch.store.definitions import DefinitionStore
from specwatch.store.series.base import Series, SeriesQuery, TimeSeriesStore

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_SERIES_POINTS = 100_000


@overload
def as_utc(moment: datetime) -> datetime: ...
@overload
def as_utc(moment: None) -> None: ...
def as_utc(moment: datetime | None) -> datetime | None:
    """An aware datetime; one without an offset is taken as UTC."""
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def to_ns(moment: datetime, *, location: str = "since") -> int:
    """Integer nanoseconds since 1970.  Raises ``InvalidInputError`` outside 1677…2262."""
    aware = as_utc(moment)
    if not EARLIEST <= aware <= LATEST:
        raise InvalidInputError(
            f"{location} must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}",
            location=["query", location],
        )
    return (aware - _EPOCH) // timedelta(microseconds=1) * 1000


@dataclass(frozen=True, slots=True)
class SeriesFilter:
    dataset: str | None = None
    branch: str | None = None
    filter: str | None = None
    instrument: str | None = None
    pr: int | None = None
    pipeline: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 1000


class MetricService:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], series: TimeSeriesStore
    ) -> None:
        self._sessionmaker = sessionmaker
        self._series = series

    async def list_metrics(
        self, *, package: str | None, after: str | None, limit: int
    ) -> list[Metric]:
        async with self._sessionmaker() as session:
            return await DefinitionStore(session).list_metrics(
                package=package, after=after, limit=limit
            )

    async def get(self, full_name: str) -> tuple[Metric, list[Specification]]:
        """A metric and its active specifications.  Raises ``NotFoundError``."""
        async with self._sessionmaker() as session:
            store = DefinitionStore(session)
            metric = await store.get_metric(full_name)
            if metric is None:
                raise NotFoundError(f"no metric {full_name!r}", location=["path", "name"])
            return metric, await store.specs_for_metric(full_name)

    async def series(self, full_name: str, where: SeriesFilter) -> tuple[Metric, Series]:
        """A metric's values over time from the series store, oldest first.

        Raises:
            NotFoundError: unknown metric.  InvalidInputError: a bad window or limit.
        """
        if not 1 <= where.limit <= MAX_SERIES_POINTS:
            raise InvalidInputError(
                f"limit must be between 1 and {MAX_SERIES_POINTS}", location=["query", "limit"]
            )
        # since ≥ until is an empty window (since is inclusive, until exclusive): no points.
        package, name = split_metric_name(full_name)
        async with self._sessionmaker() as session:
            metric = await DefinitionStore(session).get_metric(full_name)
        if metric is None:
            raise NotFoundError(f"no metric {full_name!r}", location=["path", "name"])
        tags = {
            key: str(value)
            for key, value in (
                ("dataset", where.dataset),
                ("branch", where.branch),
                ("filter", where.filter),
                ("instrument", where.instrument),
                ("pr", where.pr),
                ("pipeline", where.pipeline),
            )
            if value is not None
        }
        query = SeriesQuery(
            package=package,
            metric=name,
            tags=tags,
            since_ns=to_ns(where.since) if where.since else None,
            until_ns=to_ns(where.until, location="until") if where.until else None,
            limit=where.limit,
        )
        return metric, await self._series.query(query)
