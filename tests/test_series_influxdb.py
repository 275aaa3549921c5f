"""The InfluxDB series store against a real influxd (one per session, a database per test)."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from influxdb_server import InfluxDBServer, free_port
from series_points import PKG, T0, point

from specwatch.exceptions import SeriesStoreError
from specwatch.store.series import influxdb as influxdb_module
from specwatch.store.series.base import SeriesQuery
from specwatch.store.series.influxdb import InfluxDBSeriesStore, build_select


@pytest.fixture
async def store(influxdb_server: InfluxDBServer) -> AsyncIterator[InfluxDBSeriesStore]:
    store = InfluxDBSeriesStore(influxdb_server.url, f"test_{uuid.uuid4().hex}")
    await store.create_database()
    yield store
    await store.close()


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
        store = InfluxDBSeriesStore(
            influxdb_server.url, f"big_{uuid.uuid4().hex}", client=client, lean_writes=False
        )
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


async def test_write_creates_a_missing_database(influxdb_server: InfluxDBServer) -> None:
    """A new or wiped server gets its database on the first write (the outbox relies on it)."""
    store = InfluxDBSeriesStore(influxdb_server.url, f"never_created_{uuid.uuid4().hex[:8]}")
    with pytest.raises(SeriesStoreError, match="query failed: database not found"):
        await store.query(SeriesQuery(PKG, "PA1"))
    await store.write([point(1, 1)])
    assert (await store.query(SeriesQuery(PKG, "PA1"))).job_id == [1]
    await store.close()


async def test_server_down_raises_series_store_error() -> None:
    store = InfluxDBSeriesStore(f"http://127.0.0.1:{free_port()}", "db", timeout_s=2.0)
    with pytest.raises(SeriesStoreError, match="ping failed: cannot reach"):
        await store.ping()
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
        with pytest.raises(SeriesStoreError, match="ping failed"):
            await store.ping()
        with pytest.raises(SeriesStoreError):
            await store.write([point(9, 9)])
        server.start()
        await store.ping()
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
        token_store = InfluxDBSeriesStore(
            "http://influx/", "db", token=token, client=client, lean_writes=False
        )
        await token_store.write([point(1, 1)])
        user_store = InfluxDBSeriesStore(
            "http://influx",
            "db",
            username="me",
            password=password,
            client=client,
            lean_writes=False,
        )
        await user_store.ping()
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
