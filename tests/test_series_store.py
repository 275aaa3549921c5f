"""The shared test suite of the time-series store: every backend must pass it.

Backends: the embedded store on SQLite and on PostgreSQL, and InfluxDB (a real influxd).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator

import pytest
from conftest import truncate_all
from series_points import PKG, T0, point, rows

from specwatch.store.database import create_engine, create_sessionmaker
from specwatch.store.series.base import SeriesQuery
from specwatch.store.series.embedded import EmbeddedSeriesStore
from specwatch.store.series.influxdb import InfluxDBSeriesStore

Store = EmbeddedSeriesStore | InfluxDBSeriesStore


@pytest.fixture(params=["embedded-sqlite", "embedded-postgresql", "influxdb"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "influxdb":
        server = request.getfixturevalue("influxdb_server")
        influx = InfluxDBSeriesStore(server.url, f"test_{uuid.uuid4().hex}")
        await influx.create_database()
        yield influx
        await influx.close()
        return
    url = request.getfixturevalue(
        {"embedded-sqlite": "sqlite_url"}.get(request.param, "postgres_url")
    )
    await truncate_all(url)
    engine = create_engine(url)
    yield EmbeddedSeriesStore(create_sessionmaker(engine))
    await engine.dispose()


async def test_round_trip_of_values_job_ids_and_commits(store: Store) -> None:
    await store.write(
        [
            point(1, 101, {"PA1": 0.1, "AM1": 3.0}, commit="abc"),
            point(2, 102, {"PA1": 1e-300}, commit='with "quotes" \\ and\nnewline'),
            point(3, 103, {"PA1": 12345678901234.5}),
            point(4, 104, {"PA1": 2.0}),
        ]
    )
    series = await store.query(SeriesQuery(PKG, "PA1"))
    assert rows(series) == [
        (1, 0.1, 101, "abc"),
        (2, 1e-300, 102, 'with "quotes" \\ and\nnewline'),
        (3, 12345678901234.5, 103, None),
        (4, 2.0, 104, None),
    ]
    assert all(type(v) is float for v in series.value)
    assert rows(await store.query(SeriesQuery(PKG, "AM1"))) == [(1, 3.0, 101, "abc")]


async def test_tag_filtering(store: Store) -> None:
    odd = 'it\'s "odd", a=b \\c'
    await store.write(
        [
            point(1, 1, tags={"dataset": "HSC RC2", "branch": "main", "filter": "r"}),
            point(2, 2, tags={"dataset": "HSC RC2", "branch": "main", "filter": "g"}),
            point(3, 3, tags={"dataset": "HSC RC2", "branch": "tickets/DM-1", "filter": "r"}),
            point(4, 4, tags={"dataset": odd, "branch": "main", "filter": "r"}),
            point(5, 5, tags={"dataset": "HSC RC2", "branch": "main"}),
        ]
    )

    async def job_ids(**tags: str) -> list[int]:
        return (await store.query(SeriesQuery(PKG, "PA1", tags=tags))).job_id

    assert await job_ids() == [1, 2, 3, 4, 5]
    assert await job_ids(dataset="HSC RC2") == [1, 2, 3, 5]
    assert await job_ids(dataset="HSC RC2", branch="main") == [1, 2, 5]
    assert await job_ids(dataset="HSC RC2", branch="main", filter="r") == [1]
    assert await job_ids(branch="tickets/DM-1") == [3]
    assert await job_ids(dataset=odd) == [4]
    assert await job_ids(filter="") == [5]  # an empty value matches an unset tag
    assert await job_ids(dataset="nope") == []
    assert await job_ids(pr="17") == []  # a tag key no point has


async def test_time_window_is_since_inclusive_until_exclusive(store: Store) -> None:
    await store.write([point(t, t) for t in range(10)])

    async def times(since: int | None, until: int | None) -> list[int]:
        query = SeriesQuery(
            PKG,
            "PA1",
            since_ns=None if since is None else T0 + since,
            until_ns=None if until is None else T0 + until,
        )
        return [t - T0 for t in (await store.query(query)).time_ns]

    assert await times(3, 6) == [3, 4, 5]
    assert await times(None, 2) == [0, 1]
    assert await times(8, None) == [8, 9]
    assert await times(5, 5) == []


async def test_limit_returns_the_most_recent_oldest_first(store: Store) -> None:
    await store.write([point(t, 100 + t) for t in range(10)])
    series = await store.query(SeriesQuery(PKG, "PA1", limit=3))
    assert [t - T0 for t in series.time_ns] == [7, 8, 9]
    assert series.job_id == [107, 108, 109]
    assert series.value == [107.0, 108.0, 109.0]
    window = SeriesQuery(PKG, "PA1", until_ns=T0 + 5, limit=2)
    assert (await store.query(window)).job_id == [103, 104]
    assert len(await store.query(SeriesQuery(PKG, "PA1", limit=0))) == 0


async def test_nan_and_inf_rows_read_as_none(store: Store) -> None:
    await store.write(
        [
            point(1, 1, {"PA1": 1.5, "AM1": math.nan}),
            point(2, 2, {"PA1": math.nan}, commit="c2"),
            point(3, 3, {"PA1": math.inf}),
            point(4, 4, {"PA1": -2.5}),
        ]
    )
    assert rows(await store.query(SeriesQuery(PKG, "PA1"))) == [
        (1, 1.5, 1, None),
        (2, None, 2, "c2"),
        (3, None, 3, None),
        (4, -2.5, 4, None),
    ]
    assert rows(await store.query(SeriesQuery(PKG, "AM1"))) == [(1, None, 1, None)]
    # The NaN rows count towards LIMIT like any other.
    assert (await store.query(SeriesQuery(PKG, "PA1", limit=2))).job_id == [3, 4]


async def test_rows_of_other_metrics_do_not_appear(store: Store) -> None:
    await store.write(
        [
            point(1, 1, {"PA1": 1.0}),
            point(2, 2, {"PA1": 2.0}),
            point(3, 3, {"AM1": 3.0}),
            point(4, 4, {"AM1": 4.0, "AD1": math.nan}),
            point(5, 5, {"TE1": 5.0}),
        ]
    )
    assert (await store.query(SeriesQuery(PKG, "PA1"))).job_id == [1, 2]
    # LIMIT counts this metric's rows only, not the newer rows of other metrics.
    assert (await store.query(SeriesQuery(PKG, "PA1", limit=2))).job_id == [1, 2]
    assert (await store.query(SeriesQuery(PKG, "AD1"))).job_id == [4]
    assert len(await store.query(SeriesQuery(PKG, "missing"))) == 0
    assert len(await store.query(SeriesQuery("no_such_package", "PA1"))) == 0


async def test_rewriting_the_same_points_stores_them_once(store: Store) -> None:
    points = [point(t, t, {"PA1": t / 3, "AM1": math.nan}, commit="c") for t in range(20)]
    await store.write(points)
    await store.write(points)
    await store.write(points[5:10])
    assert await store.count_points(PKG) == 20
    series = await store.query(SeriesQuery(PKG, "PA1", limit=100))
    assert series.value == [t / 3 for t in range(20)]
    assert await store.count_points("no_such_package") == 0


async def test_query_many_reads_each_series_as_query_does(store: Store) -> None:
    await store.write(
        [
            point(n, job + n, {"PA1": float(n), "AM1": n * 10.0, "TE1": math.nan}, tags=tags)
            for n in range(1, 6)
            for job, tags in ((100, {"dataset": "A", "branch": "main"}), (300, {"dataset": "B"}))
        ]
        + [point(9, 200, {"PA1": 9.0}, tags={"dataset": "A", "branch": "main"})]
    )
    queries = [
        SeriesQuery(PKG, "PA1", {"dataset": "A", "branch": "main"}, limit=3),
        SeriesQuery(PKG, "AM1", {"dataset": "A", "branch": "main"}),
        SeriesQuery(PKG, "TE1", {"dataset": "B"}),
        SeriesQuery(PKG, "none", {"dataset": "A"}),
        SeriesQuery(PKG, "PA1", {"dataset": "B"}, limit=0),
        SeriesQuery("other", "PA1"),
    ]
    many = await store.query_many(queries)
    assert [rows(s) for s in many] == [rows(await store.query(q)) for q in queries]
    assert [len(s) for s in many] == [3, 5, 5, 0, 0, 0]
    assert many[0].value == [4.0, 5.0, 9.0]
    assert many[2].value == [None] * 5
    assert await store.query_many([]) == []
    # More statements than one InfluxDB request carries (STATEMENTS_PER_QUERY = 100).
    windows = [SeriesQuery(PKG, "PA1", {"dataset": "A"}, limit=k % 7) for k in range(230)]
    assert [len(s) for s in await store.query_many(windows)] == [k % 7 for k in range(230)]


@pytest.mark.parametrize("value", ["a\rb", "a\nb", "trailing\\"])
async def test_a_tag_value_no_store_can_hold_matches_nothing(store: Store, value: str) -> None:
    """Not an InfluxQL parse error (a 503): such a value was refused at ingest everywhere."""
    await store.write([point(1, 5)])
    wanted = SeriesQuery(PKG, "PA1", {"pipeline": value}, limit=10)
    assert (await store.query(wanted)).value == []
    assert [s.value for s in await store.query_many([wanted, wanted])] == [[], []]
