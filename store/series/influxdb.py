"""The InfluxDB backend of the time-series store, over the v1 HTTP API.

Only ``/write`` (line protocol), ``/query`` (InfluxQL) and ``/ping`` are used: InfluxDB 1.x
serves them, and 2.x/3.x serve them for compatibility (there, create the database/bucket
mapping out of band: ``create_database`` is 1.x only).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

import httpx
import orjson

from specwatch.exceptions import SeriesStoreError
from specwatch.telemetry import observe_series_write

from .base import NAN_SUFFIX, Series, SeriesPoint, SeriesQuery
from .http_writer import HttpWriter
from .lineprotocol import COMMIT_FIELD, JOB_ID_FIELD, encode_batches, is_storable_name

MAX_BATCH_POINTS = 5000
MAX_BATCH_BYTES = 5_000_000
# Rows per chunk of a chunked /query response.  Chunked responses are never cut by the
# server's ``max-row-limit`` (a non-chunked one is, silently but for a "partial" flag).
QUERY_CHUNK_ROWS = 10_000
STATEMENTS_PER_QUERY = 100  # SELECTs sent in one /query request by ``query_many``
_ERROR_TEXT_CHARS = 500

_IDENTIFIER_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", "'": "\\'", "\n": "\\n"})


def quote_identifier(name: str) -> str:
    """An InfluxQL double-quoted identifier (``"PA1.nan"``), escaping ``"`` and ``\\``."""
    return '"' + name.translate(_IDENTIFIER_ESCAPES) + '"'


def quote_string(value: str) -> str:
    """An InfluxQL single-quoted string literal, escaping ``'`` and ``\\``."""
    return "'" + value.translate(_STRING_ESCAPES) + "'"


def _answerable(query: SeriesQuery) -> bool:
    """False when a name in the query could never have been written (a carriage return
    in a tag value, say): nothing matches, and InfluxQL could not even parse it."""
    names = (query.package, query.metric, *query.tags.values())
    return all(is_storable_name(name) for name in names if name)


def build_select(query: SeriesQuery) -> str:
    """The InfluxQL for ``query``: newest ``limit`` rows holding the metric or its NaN marker.

    The field condition sits in WHERE so that LIMIT counts only rows of this metric (rows of
    the package's other metrics are not returned).  ``<= 0 OR > 0`` matches every stored
    float: InfluxQL 1.x cannot parse exponents such as ``-1.7976931348623157e308``.  An empty
    tag value matches points without that tag.
    """
    metric = quote_identifier(query.metric)
    nan = quote_identifier(query.metric + NAN_SUFFIX)
    conditions = [
        f"{quote_identifier(key)} = {quote_string(value)}"
        for key, value in sorted(query.tags.items())
    ]
    conditions.append(f"({metric} <= 0 OR {metric} > 0 OR {nan} = true)")
    if query.since_ns is not None:
        conditions.append(f"time >= {int(query.since_ns)}")
    if query.until_ns is not None:
        conditions.append(f"time < {int(query.until_ns)}")
    columns = f"{metric}, {nan}, {quote_identifier(JOB_ID_FIELD)}, {quote_identifier(COMMIT_FIELD)}"
    return (
        f"SELECT {columns} FROM {quote_identifier(query.package)}"
        f" WHERE {' AND '.join(conditions)} ORDER BY time DESC LIMIT {int(query.limit)}"
    )


def parse_query_response(body: bytes) -> list[dict[str, Any]]:
    """The series of a (possibly chunked) /query JSON response, chunks of one series merged.

    Raises ``SeriesStoreError`` with InfluxDB's message if a statement failed.
    """
    return [series for by_statement in parse_statements(body).values() for series in by_statement]


def parse_statements(body: bytes) -> dict[int, list[dict[str, Any]]]:
    """The series of each statement (by ``statement_id``) of a (possibly chunked) /query
    response of one or more statements, chunks of one series merged.

    Raises ``SeriesStoreError`` with InfluxDB's message if a statement failed.
    """
    merged: dict[int, dict[str, dict[str, Any]]] = {}
    for line in body.splitlines():
        if not line.strip():
            continue
        document = orjson.loads(line)
        if "error" in document:
            raise SeriesStoreError(f"InfluxDB query failed: {document['error']}")
        for result in document.get("results", ()):
            if "error" in result:
                raise SeriesStoreError(f"InfluxDB query failed: {result['error']}")
            statement = merged.setdefault(int(result.get("statement_id", 0)), {})
            for series in result.get("series", ()):
                key = orjson.dumps([series.get("name"), series.get("tags")]).decode()
                if key in statement:
                    statement[key]["values"].extend(series.get("values", ()))
                else:
                    statement[key] = {**series, "values": list(series.get("values", ()))}
    return {sid: list(series.values()) for sid, series in merged.items()}


def series_from_rows(columns: Sequence[str], rows: list[list[Any]], metric: str) -> Series:
    """Columns of ``rows`` (newest first, as queried) as a ``Series``, oldest first."""
    if not rows:
        return Series()
    index = {name: i for i, name in enumerate(columns)}
    table = list(zip(*reversed(rows), strict=True))  # transposed in C: one tuple per column
    n = len(rows)

    def column(name: str) -> tuple[Any, ...]:
        i = index.get(name)
        return table[i] if i is not None else (None,) * n

    return Series(
        time_ns=[int(t) for t in table[index["time"]]],
        # InfluxDB writes 5.0 as 5; NaN-marker rows have no value (None).
        value=[None if v is None else float(v) for v in column(metric)],
        job_id=[0 if j is None else int(j) for j in column(JOB_ID_FIELD)],
        commit=list(column(COMMIT_FIELD)),
    )


class InfluxDBSeriesStore:
    """``TimeSeriesStore`` on an InfluxDB server.

    Auth: ``token`` is sent as ``Authorization: Token …`` (2.x's v1 compatibility);
    ``username``/``password`` as the ``u``/``p`` parameters of InfluxDB 1.x.  A ``client``
    passed in is shared and left open by ``close()``.
    """

    name = "influxdb"

    def __init__(
        self,
        url: str,
        database: str,
        *,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        client: httpx.AsyncClient | None = None,
        timeout_s: float = 10.0,
        max_batch_points: int = MAX_BATCH_POINTS,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        lean_writes: bool = True,
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self._params: dict[str, str] = {"db": database}
        if username is not None:
            self._params["u"] = username
            self._params["p"] = password or ""
        # Uncompressed answers: InfluxDB usually sits on the same network, where gzip costs
        # both sides more CPU than the bytes it saves.
        self._headers: dict[str, str] = {"Accept-Encoding": "identity"}
        if token is not None:
            self._headers["Authorization"] = f"Token {token}"
        self._timeout = httpx.Timeout(timeout_s)
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=self._timeout)
        self._max_batch_points = max_batch_points
        self._max_batch_bytes = max_batch_bytes
        # The ingest's hot path: writes on connections of their own (plain http), else httpx.
        self._writer: HttpWriter | None = None
        if lean_writes and self.url.startswith("http://"):
            self._writer = HttpWriter(
                self.url,
                "/write",
                {**self._params, "precision": "ns"},
                {**self._headers, "Content-Type": "text/plain; charset=utf-8"},
                timeout_s,
            )

    async def ping(self) -> None:
        """Check that the server answers ``/ping`` (204).  Raises ``SeriesStoreError``."""
        response = await self._send("GET", "/ping", "ping", params={}, headers=self._headers)
        if response.status_code != 204:
            raise _status_error("ping", response.status_code, response.content)

    async def create_database(self) -> None:
        """Create the database if missing (InfluxDB 1.x; idempotent)."""
        await self._query(f"CREATE DATABASE {quote_identifier(self.database)}")

    async def write(self, points: Sequence[SeriesPoint]) -> None:
        """Store ``points`` in batches of at most ``max_batch_points``/``max_batch_bytes``.

        Raises ``InvalidInputError`` for a point InfluxDB cannot store (before sending any),
        ``SeriesStoreError`` when InfluxDB refuses a batch or cannot be reached; earlier
        batches stay written, which is harmless since writes are idempotent.
        """
        batches = encode_batches(
            points, max_points=self._max_batch_points, max_bytes=self._max_batch_bytes
        )
        started = time.perf_counter()
        try:
            await self._write_batches(batches)
        except SeriesStoreError:
            observe_series_write(self.name, time.perf_counter() - started, failed=True)
            raise
        observe_series_write(self.name, time.perf_counter() - started)

    async def _write_batches(self, batches: Iterable[bytes]) -> None:
        for body in batches:
            status, content = await self._post_write(body)
            if status == 404 and b"database not found" in content:
                # A new or wiped server: create the database (1.x) and write again.
                await self.create_database()
                status, content = await self._post_write(body)
            if status != 204:
                raise _status_error("write", status, content)

    async def _post_write(self, body: bytes) -> tuple[int, bytes]:
        if self._writer is None:
            response = await self._send(
                "POST",
                "/write",
                "write",
                params={**self._params, "precision": "ns"},
                headers={**self._headers, "Content-Type": "text/plain; charset=utf-8"},
                content=body,
            )
            return response.status_code, response.content
        try:
            answer = await self._writer.post(body)
        except (OSError, TimeoutError) as exc:
            raise SeriesStoreError(
                f"InfluxDB write failed: cannot reach {self.url}: {type(exc).__name__}: {exc}"
            ) from exc
        return answer.status, answer.body

    async def query(self, query: SeriesQuery) -> Series:
        """The ``limit`` most recent points of one metric, oldest first (see ``build_select``)."""
        if query.limit <= 0 or not _answerable(query):  # LIMIT 0 means no limit in InfluxQL
            return Series()
        merged = await self._query(build_select(query))
        if not merged:
            return Series()
        first = merged[0]
        return series_from_rows(first["columns"], first["values"], query.metric)

    async def query_many(self, queries: Sequence[SeriesQuery]) -> list[Series]:
        """Several series, ``STATEMENTS_PER_QUERY`` InfluxQL statements per /query request."""
        found: list[Series] = []
        for start in range(0, len(queries), STATEMENTS_PER_QUERY):
            chunk = queries[start : start + STATEMENTS_PER_QUERY]
            wanted = [(i, q) for i, q in enumerate(chunk) if q.limit > 0 and _answerable(q)]
            by_statement: dict[int, list[dict[str, Any]]] = {}
            if wanted:
                statements = "; ".join(build_select(q) for _, q in wanted)
                by_statement = parse_statements(await self._query_body(statements))
            series = [Series() for _ in chunk]
            for statement_id, (i, query) in enumerate(wanted):
                result = by_statement.get(statement_id)
                if result:
                    first = result[0]
                    series[i] = series_from_rows(first["columns"], first["values"], query.metric)
            found.extend(series)
        return found

    async def count_points(self, package: str) -> int:
        """How many points the package's measurement holds (for tests and checks)."""
        merged = await self._query(
            f"SELECT COUNT({quote_identifier(JOB_ID_FIELD)}) FROM {quote_identifier(package)}"
        )
        if not merged or not merged[0]["values"]:
            return 0
        return int(merged[0]["values"][0][1])

    async def close(self) -> None:
        """Close the HTTP client if this store created it, and the write connections."""
        if self._writer is not None:
            await self._writer.close()
        if self._owns_client:
            await self._client.aclose()

    async def _query(self, statement: str) -> list[dict[str, Any]]:
        return parse_query_response(await self._query_body(statement))

    async def _query_body(self, statement: str) -> bytes:
        params = {
            **self._params,
            "epoch": "ns",
            "chunked": "true",
            "chunk_size": str(QUERY_CHUNK_ROWS),
        }
        response = await self._send(
            "POST", "/query", "query", params=params, headers=self._headers, data={"q": statement}
        )
        if response.status_code != 200:
            raise _status_error("query", response.status_code, response.content)
        return response.content

    async def _send(
        self,
        method: str,
        path: str,
        action: str,
        *,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        content: bytes | None = None,
        data: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        try:
            return await self._client.request(
                method,
                f"{self.url}{path}",
                params=params,
                headers=headers,
                content=content,
                data=data,
                timeout=self._timeout,
            )
        except httpx.HTTPError as exc:
            # The message names the server but never the URL with its u/p parameters.
            raise SeriesStoreError(
                f"InfluxDB {action} failed: cannot reach {self.url}: {type(exc).__name__}: {exc}"
            ) from exc


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "unknown status"


def _status_error(action: str, status: int, content: bytes) -> SeriesStoreError:
    """A ``SeriesStoreError`` with the status and InfluxDB's error text."""
    text = content.decode("utf-8", "replace")
    try:
        document = orjson.loads(content)
        if isinstance(document, dict) and isinstance(document.get("error"), str):
            text = document["error"]
    except orjson.JSONDecodeError:
        pass
    text = text.strip()[:_ERROR_TEXT_CHARS] or _phrase(status)
    return SeriesStoreError(f"InfluxDB {action} failed ({status}): {text}")
