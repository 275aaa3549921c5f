"""A lean HTTP/1.1 POST for InfluxDB's ``/write``, on kept-alive connections of its own.

The write is the hot path of every ingest (a few lines of line protocol, an empty 204 back);
a general client spends more CPU on it than InfluxDB does (httpx: about 0.4 ms a request here,
a tenth of an ingest's whole budget).  This one does only what ``/write`` needs: one request
line, fixed headers, a body of known length; the answer's status, headers and a body of
``Content-Length`` (or chunked).  Plain ``http://`` only; the store falls back to httpx for
``https://``.  A kept-alive connection the server closed meanwhile is retried once on a new
one: writes are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlencode, urlsplit

_MAX_IDLE = 8
_MAX_HEADER_LINES = 100


class WriteAnswer:
    __slots__ = ("body", "status")

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


class HttpWriter:
    """``POST <path>?<params>`` with a body, to one ``http://host:port`` server."""

    def __init__(
        self, url: str, path: str, params: dict[str, str], headers: dict[str, str], timeout_s: float
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"not a plain http URL: {url!r}")
        self._host = parts.hostname
        self._port = parts.port or 80
        base = parts.path.rstrip("/")
        host_header = parts.netloc.rsplit("@", 1)[-1]
        head = [f"POST {base}{path}?{urlencode(params)} HTTP/1.1", f"Host: {host_header}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        self._head = ("\r\n".join(head) + "\r\nContent-Length: ").encode("latin-1")
        self._timeout_s = timeout_s
        self._idle: list[_Connection] = []

    async def post(self, body: bytes) -> WriteAnswer:
        """Send; the answer.  Raises ``OSError``/``TimeoutError`` when the server cannot be
        reached or answers nothing (after one retry on a new connection)."""
        async with asyncio.timeout(self._timeout_s):
            while self._idle:
                connection = self._idle.pop()
                try:
                    return await self._exchange(connection, body)
                except (OSError, asyncio.IncompleteReadError, _Garbled):
                    connection.close()  # closed by the server while idle: try a new one
            connection = _Connection(*await asyncio.open_connection(self._host, self._port))
            try:
                return await self._exchange(connection, body)
            except asyncio.IncompleteReadError as error:
                connection.close()
                raise ConnectionResetError("InfluxDB closed the connection") from error
            except _Garbled as error:
                connection.close()
                raise ConnectionError(f"InfluxDB answered garbled HTTP: {error}") from error
            except BaseException:
                connection.close()
                raise

    async def _exchange(self, connection: _Connection, body: bytes) -> WriteAnswer:
        writer, reader = connection.writer, connection.reader
        writer.write(self._head + str(len(body)).encode() + b"\r\n\r\n" + body)
        await writer.drain()
        status_line = await reader.readuntil(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise _Garbled(status_line[:80].decode("latin-1"))
        status = int(parts[1])
        length: int | None = None
        chunked, keep_alive = False, True
        for _ in range(_MAX_HEADER_LINES):
            line = await reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value
            elif name == b"connection":
                keep_alive = value != b"close"
        else:
            raise _Garbled("too many header lines")
        if chunked:
            payload = await _read_chunked(reader)
        elif length is not None:
            payload = await reader.readexactly(length)
        elif status in (204, 304) or 100 <= status < 200:
            payload = b""
        else:  # the body runs to the end of the connection
            payload, keep_alive = await reader.read(), False
        if keep_alive and len(self._idle) < _MAX_IDLE:
            self._idle.append(connection)
        else:
            connection.close()
        return WriteAnswer(status, payload)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
            with contextlib.suppress(OSError):
                await connection.writer.wait_closed()


class _Garbled(Exception):
    """The server's answer is not HTTP/1.x as expected."""


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError as error:
            raise _Garbled(f"bad chunk size {size_line[:20]!r}") from error
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
