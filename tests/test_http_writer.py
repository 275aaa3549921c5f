"""The lean ``/write`` client: the request InfluxDB gets, kept-alive connections, a connection
the server closed meanwhile, error answers, and the store on top of it against a real influxd."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from influxdb_server import InfluxDBServer

from specwatch.exceptions import SeriesStoreError
from specwatch.store.series.base import SeriesPoint, SeriesQuery
from specwatch.store.series.http_writer import HttpWriter
from specwatch.store.series.influxdb import InfluxDBSeriesStore

Answer = Callable[[bytes], bytes]


class Server:
    """A loopback HTTP server that records raw requests and answers what ``answer`` says;
    ``close_after`` closes each connection after that many answers."""

    def __init__(self, answer: Answer, close_after: int = 0) -> None:
        self.answer, self.close_after = answer, close_after
        self.requests: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                writer.write(self.answer(body))
                await writer.drain()
                served += 1
                if self.close_after and served >= self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., asyncio.Future[Server]]]:
    started: list[Server] = []

    async def start(answer: Answer, close_after: int = 0) -> Server:
        server = Server(answer, close_after)
        server.server = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        started.append(server)
        return server

    yield start  # type: ignore[misc]
    for server in started:
        assert server.server is not None
        server.server.close()


def no_content(_: bytes) -> bytes:
    return b"HTTP/1.1 204 No Content\r\nX-Influxdb-Version: 1.8\r\n\r\n"


async def test_the_request_and_kept_alive_connections(serve: Callable[..., object]) -> None:
    server: Server = await serve(no_content)  # type: ignore[misc]
    writer = HttpWriter(
        server.url, "/write", {"db": "my db", "precision": "ns"}, {"Authorization": "Token t"}, 5
    )
    for n in range(3):
        answer = await writer.post(f"m v={n}i\n".encode())
        assert (answer.status, answer.body) == (204, b"")
    await writer.close()
    assert server.connections == 1  # one connection for all three
    first = server.requests[0].decode()
    assert first.startswith("POST /write?db=my+db&precision=ns HTTP/1.1\r\n")
    assert "\r\nAuthorization: Token t\r\n" in first
    assert first.endswith("\r\nContent-Length: 7\r\n\r\nm v=0i\n")


async def test_a_connection_closed_while_idle_is_replaced(serve: Callable[..., object]) -> None:
    server: Server = await serve(no_content, close_after=1)  # type: ignore[misc]
    writer = HttpWriter(server.url, "/write", {"db": "x"}, {}, 5)
    for _ in range(3):
        assert (await writer.post(b"m v=1i\n")).status == 204
        await asyncio.sleep(0.05)  # the server closes the connection after each answer
    await writer.close()
    assert server.connections == 3 and len(server.requests) == 3


async def test_error_answers_with_a_length_or_chunked(serve: Callable[..., object]) -> None:
    def bad(_: bytes) -> bytes:
        body = b'{"error":"unable to parse"}'
        return b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    def chunked(_: bytes) -> bytes:
        return (
            b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4\r\nboom\r\n3\r\n!!!\r\n0\r\n\r\n"
        )

    for answer, status, body in (
        (bad, 400, b'{"error":"unable to parse"}'),
        (chunked, 500, b"boom!!!"),
    ):
        server: Server = await serve(answer)  # type: ignore[misc]
        writer = HttpWriter(server.url, "/write", {}, {}, 5)
        got = await writer.post(b"x")
        assert (got.status, got.body) == (status, body)
        assert (await writer.post(b"y")).status == status  # the connection stays usable
        await writer.close()


async def test_nothing_listening_is_an_os_error() -> None:
    writer = HttpWriter("http://127.0.0.1:9", "/write", {}, {}, 2)
    with pytest.raises(ConnectionRefusedError):
        await writer.post(b"x")


def test_only_plain_http() -> None:
    with pytest.raises(ValueError, match="plain http"):
        HttpWriter("https://influx.example", "/write", {}, {}, 2)


async def test_the_store_writes_through_it(influxdb_server: InfluxDBServer) -> None:
    store = InfluxDBSeriesStore(influxdb_server.url, f"lean_{uuid.uuid4().hex}")
    assert store._writer is not None
    await store.create_database()
    points = [
        SeriesPoint("pkg", 1_000 + t, t, {"PA1": t * 0.5}, {"dataset": "d"}, f"c{t}")
        for t in range(50)
    ]
    await store.write(points[:25])
    await store.write(points[25:])
    series = await store.query(SeriesQuery("pkg", "PA1", tags={"dataset": "d"}, limit=100))
    assert series.job_id == list(range(50)) and series.value[3] == 1.5
    await store.close()


async def test_the_store_names_what_influxdb_refused(serve: Callable[..., object]) -> None:
    def bad(_: bytes) -> bytes:
        body = b'{"error":"partial write: field type conflict"}'
        return b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    server: Server = await serve(bad)  # type: ignore[misc]
    store = InfluxDBSeriesStore(server.url, "db")
    point = SeriesPoint("pkg", 5, 5, {"PA1": 1.0}, {"dataset": "d"}, "c")
    with pytest.raises(SeriesStoreError, match=r"write failed \(400\): partial write: field"):
        await store.write([point])
    await store.close()
    unreachable = InfluxDBSeriesStore("http://127.0.0.1:9", "db", timeout_s=2)
    with pytest.raises(SeriesStoreError, match="cannot reach"):
        await unreachable.write([point])
    await unreachable.close()
