"""The InfluxDB series store against a real influxd (one per session, a database per test)."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from influxdb_server import InfluxDBServer, free_port

from specwatch.exceptions import SeriesStoreError
from specwatch.store.series import influxdb as influxdb_module
from specwatch.store.series.base import Series, SeriesPoint, SeriesQuery
from specwatch.store.series.influxdb import InfluxDBSeriesStore, build_select

PKG = "validate_drp"
T0 = 1_732_530_000_000_000_000


@pytest.fixture(scope="session")
def influxdb_server() -> Iterator[InfluxDBServer]:
    with InfluxDBServer() as server:
        yield server


@pytest.fixture
async def store(influxdb_server: InfluxDBServer) -> AsyncIterator[InfluxDBSeriesStore]:
    store = InfluxDBSeriesStore(influxdb_server.url, f"test_{uuid.uuid4().hex}")
    await store.create_database()
    yield store
    await store.close()


def point(
    t: int,
    job_id: int,
    values: dict[str, float] | None = None,
    tags: dict[str, str] | None = None,
    commit: str | None = None,
    package: str = PKG,
) -> SeriesPoint:
    values = {"PA1": float(job_id)} if values is None else values
    return SeriesPoint(package, T0 + t, job_id, values, tags or {}, commit)


def rows(series: Series) -> list[tuple[int, float | None, int, str | None]]:
    return list(
        zip(
            [t - T0 for t in series.time_ns],
            series.value,
            series.job_id,
            series.commit,
            strict=True,
        )
    )


async def test_round_trip_of_values_job_ids_and_commits(store: InfluxDBSeriesStore) -> None:
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


async def test_tag_filtering(store: InfluxDBSeriesStore) -> None:
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


async def test_time_window_is_since_inclusive_until_exclusive(store: InfluxDBSeriesStore) -> None:
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


async def test_limit_returns_the_most_recent_oldest_first(store: InfluxDBSeriesStore) -> None:
    await store.write([point(t, 100 + t) for t in range(10)])
    series = await store.query(SeriesQuery(PKG, "PA1", limit=3))
    assert [t - T0 for t in series.time_ns] == [7, 8, 9]
    assert series.job_id == [107, 108, 109]
    assert series.value == [107.0, 108.0, 109.0]
    window = SeriesQuery(PKG, "PA1", until_ns=T0 + 5, limit=2)
    assert (await store.query(window)).job_id == [103, 104]
    assert len(await store.query(SeriesQuery(PKG, "PA1", limit=0))) == 0


async def test_nan_and_inf_rows_read_as_none(store: InfluxDBSeriesStore) -> None:
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


async def test_rows_of_other_metrics_do_not_appear(store: InfluxDBSeriesStore) -> None:
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


async def test_rewriting_the_same_points_stores_them_once(store: InfluxDBSeriesStore) -> None:
    points = [point(t, t, {"PA1": t / 3, "AM1": math.nan}, commit="c") for t in range(20)]
    await store.write(points)
    await store.write(points)
    await store.write(points[5:10])
    assert await store.count_points(PKG) == 20
    series = await store.query(SeriesQuery(PKG, "PA1", limit=100))
    assert series.value == [t / 3 for t in range(20)]
    assert await store.count_points("no_such_package") == 0


async def test_ten_thousand_points_in_batches_and_chunks(
    influxdb_server: InfluxDBServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[int] = []

    async def count_writes(request: httpx.Request) -> None:
        if request.url.path == "/write":
            writes.append(request.content.count(b"\n"))

    n = 10_000
    points = [
        point(t, t, {"PA1": t * 0.001 if t % 97 else math.nan}, {"dataset": "big"}, f"c{t}")
        for t in range(n)
    ]
    async with httpx.AsyncClient(event_hooks={"request": [count_writes]}) as client:
        store = InfluxDBSeriesStore(influxdb_server.url, f"big_{uuid.uuid4().hex}", client=client)
        await store.create_database()
        await store.write(points)
        assert writes == [5000, 5000]
        monkeypatch.setattr(influxdb_module, "QUERY_CHUNK_ROWS", 1000)  # merge 10 chunks
        series = await store.query(SeriesQuery(PKG, "PA1", tags={"dataset": "big"}, limit=n))
        await store.close()
        assert not client.is_closed  # a shared client stays open
    assert len(series) == n
    assert series.time_ns == [T0 + t for t in range(n)]
    assert series.value == [t * 0.001 if t % 97 else None for t in range(n)]
    assert series.job_id == list(range(n))
    assert series.commit == [f"c{t}" for t in range(n)]


async def test_small_batches(influxdb_server: InfluxDBServer) -> None:
    store = InfluxDBSeriesStore(
        influxdb_server.url, f"batch_{uuid.uuid4().hex}", max_batch_points=7, max_batch_bytes=200
    )
    await store.create_database()
    await store.create_database()  # idempotent
    await store.write([point(t, t) for t in range(50)])
    assert await store.count_points(PKG) == 50
    await store.close()


async def test_refused_write_raises_with_status_and_influx_message(
    store: InfluxDBSeriesStore,
) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{store.url}/write",
            params={"db": store.database, "precision": "ns"},
            content=f'validate_drp PA1="a string" {T0 + 1}\n'.encode(),
        )
        assert response.status_code == 204
    with pytest.raises(SeriesStoreError, match=r"write failed \(400\): .*field type conflict"):
        await store.write([point(2, 2, {"PA1": 1.0})])


async def test_unknown_database_raises(influxdb_server: InfluxDBServer) -> None:
    store = InfluxDBSeriesStore(influxdb_server.url, "never_created")
    with pytest.raises(SeriesStoreError, match=r"write failed \(404\): database not found"):
        await store.write([point(1, 1)])
    with pytest.raises(SeriesStoreError, match="query failed: database not found"):
        await store.query(SeriesQuery(PKG, "PA1"))
    await store.close()


async def test_server_down_raises_series_store_error() -> None:
    store = InfluxDBSeriesStore(f"http://127.0.0.1:{free_port()}", "db", timeout_s=2.0)
    assert not await store.ping()
    with pytest.raises(SeriesStoreError, match="write failed: cannot reach"):
        await store.write([point(1, 1)])
    with pytest.raises(SeriesStoreError, match="query failed: cannot reach"):
        await store.query(SeriesQuery(PKG, "PA1"))
    await store.close()


async def test_data_survives_a_server_restart() -> None:
    with InfluxDBServer() as server:
        store = InfluxDBSeriesStore(server.url, "restart")
        await store.create_database()
        await store.write([point(t, t) for t in range(5)])
        server.stop()
        assert not await store.ping()
        with pytest.raises(SeriesStoreError):
            await store.write([point(9, 9)])
        server.start()
        assert await store.ping()
        await store.write([point(5, 5)])
        assert (await store.query(SeriesQuery(PKG, "PA1"))).job_id == [0, 1, 2, 3, 4, 5]
        await store.close()


async def test_auth_is_sent_as_token_header_or_u_p_params() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    token, password = uuid.uuid4().hex, uuid.uuid4().hex

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        token_store = InfluxDBSeriesStore("http://influx/", "db", token=token, client=client)
        await token_store.write([point(1, 1)])
        user_store = InfluxDBSeriesStore(
            "http://influx", "db", username="me", password=password, client=client
        )
        assert await user_store.ping()
        await user_store.write([point(1, 1)])
    assert seen[0].headers["Authorization"] == f"Token {token}"
    assert seen[0].url.path == "/write"
    assert dict(seen[0].url.params) == {"db": "db", "precision": "ns"}
    assert "Authorization" not in seen[2].headers
    assert dict(seen[2].url.params) == {"db": "db", "u": "me", "p": password, "precision": "ns"}


def test_select_quotes_identifiers_and_strings() -> None:
    query = SeriesQuery(
        'pkg "x"\\',
        'P"A1',
        tags={"filter": "it's", "dataset": "a\\b"},
        since_ns=1,
        until_ns=2,
        limit=5,
    )
    assert build_select(query) == (
        'SELECT "P\\"A1", "P\\"A1.nan", "job_id", "commit" FROM "pkg \\"x\\"\\\\"'
        " WHERE \"dataset\" = 'a\\\\b' AND \"filter\" = 'it\\'s'"
        ' AND ("P\\"A1" <= 0 OR "P\\"A1" > 0 OR "P\\"A1.nan" = true)'
        " AND time >= 1 AND time < 2 ORDER BY time DESC LIMIT 5"
    )
