"""Ingest and series benchmark: one ``specwatch serve`` process on PostgreSQL and a real influxd.

Run ``.venv/bin/python bench/ingest.py --jobs 2000 --runs 3``.  It starts influxd
(tests/influxdb_server.py), a fresh PostgreSQL database and the server, then per run posts jobs
of 200 measurements from 1 and 4 keep-alive clients (counted end to end: once every point is in
InfluxDB), writes the same points straight to InfluxDB as the reference (batched, 50 jobs per
request, and like for like, one job per request from as many lean clients), and times a
10,000-point series through the API beside the same InfluxQL sent to InfluxDB.  Everything is
stopped and dropped at the end, also on errors and Ctrl-C (unless ``--keep``).  CPU seconds per
phase: the server, its PostgreSQL backends, influxd and this script.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import yaml
from httpx import AsyncClient

from specwatch.store.series.base import SeriesPoint, SeriesQuery
from specwatch.store.series.influxdb import QUERY_CHUNK_ROWS, build_select, parse_query_response
from specwatch.store.series.lineprotocol import encode_point

ROOT = Path(__file__).resolve().parents[1]
SPECWATCH = str(Path(sys.executable).with_name("specwatch"))
ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PACKAGE, N_METRICS, SERIES_DB, RAW_DB = "bench", 200, "specwatch", "rawbench"
METRICS = [f"m{i:03d}" for i in range(N_METRICS)]
UNITS = ("mag", "mmag", "arcsec", "mas", "s", "ct", "pix", "%", "dex", "")
RAW_BATCH_JOBS = 50  # lines (jobs) per raw /write request
SERIES_POINTS, SERIES_DATASET, SERIES_REQUESTS, SERIES_WARMUP = 10_000, "series10k", 20, 3
QUERY_PARAMS = {"epoch": "ns", "chunked": "true", "chunk_size": str(QUERY_CHUNK_ROWS)}
DELIVERY_TIMEOUT_S = 180.0


class BenchError(Exception):
    """A failed step or verification: the figures of the run cannot be trusted."""


@dataclass
class Stack:
    url: str
    influx_url: str
    server_pid: int
    influxd_pid: int
    jobs_token: str
    db_name: str


def admin_sql(statement: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
        connection.execute(statement.encode())


def cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([SPECWATCH, *args], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise BenchError(f"specwatch {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def start_stack(
    exits: contextlib.ExitStack, keep: bool, workers: int = 1, settings: tuple[str, ...] = ()
) -> Stack:
    """Start influxd, a new database and the server; their cleanups go on ``exits``."""
    sys.path.insert(0, str(ROOT / "tests"))
    from influxdb_server import InfluxDBServer, free_port

    def on_exit(callback: Callable[..., object], *args: Any) -> None:
        if not keep:
            exits.callback(callback, *args)

    influx = InfluxDBServer()
    on_exit(influx.cleanup)
    influx.start()
    db_name = f"specwatch_bench_{os.getpid()}"
    admin_sql(f'CREATE DATABASE "{db_name}"')
    on_exit(admin_sql, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    env = {
        **os.environ,
        "SPECWATCH_DATABASE_URL": ADMIN_URL.rsplit("/", 1)[0] + f"/{db_name}",
        "SPECWATCH_INFLUXDB_URL": influx.url,
        "SPECWATCH_INFLUXDB_DATABASE": SERIES_DB,
        **dict(setting.split("=", 1) for setting in settings),
    }
    cli(env, "db", "upgrade")
    jobs_token = cli(env, "token", "create", "--scope", "write:jobs").split()[0]
    definitions_token = cli(env, "token", "create", "--scope", "write:definitions").split()[0]
    url = f"http://127.0.0.1:{free_port()}"
    log_path = Path(tempfile.gettempdir()) / f"specwatch-bench-{os.getpid()}.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [SPECWATCH, "serve", "--port", url.rsplit(":", 1)[1], "--workers", str(workers)],
            env=env,
            stdout=log,
            stderr=log,
        )
    on_exit(server.wait, 30)  # after terminate: the callbacks run last in, first out
    on_exit(server.terminate)
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        if server.poll() is not None or time.monotonic() > deadline:
            raise BenchError(f"the server did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.1)
    definitions = {
        m: {"description": "Bench.", "unit": UNITS[i % 10]} for i, m in enumerate(METRICS)
    }
    response = httpx.post(
        f"{url}/api/v1/definitions",
        json={"files": {f"metrics/{PACKAGE}.yaml": yaml.safe_dump(definitions)}},
        headers={"Authorization": f"Bearer {definitions_token}"},
        timeout=60,
    )
    if response.status_code != 200:
        raise BenchError(f"definitions: {response.status_code} {response.text}")
    influxd_pid = influx._process.pid if influx._process else 0  # no public pid: CPU accounting
    if keep:
        print(f"--keep: server {url} pid {server.pid} log {log_path}; influxd {influx.url} pid")
        print(f"  {influxd_pid} dir {influx.base_dir}; PostgreSQL database {db_name}")
    return Stack(url, influx.url, server.pid, influxd_pid, jobs_token, db_name)


class Workload:
    """Synthetic jobs with distinct times and commits (so that no two bodies are equal)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.time = datetime(2020, 1, 1, tzinfo=UTC)

    def _next(self) -> tuple[datetime, str, list[float]]:
        self.time += timedelta(seconds=1)
        values = [round(self.rng.uniform(0, 100), 6) for _ in METRICS]
        return self.time, f"{self.rng.getrandbits(160):040x}", values

    def job_bodies(self, n: int, dataset: str) -> list[bytes]:
        """``n`` lsst.verify job documents, serialised."""
        bodies = []
        for _ in range(n):
            moment, commit, values = self._next()
            measurements = [
                {"metric": f"{PACKAGE}.{m}", "value": v, "unit": UNITS[i % len(UNITS)]}
                for i, (m, v) in enumerate(zip(METRICS, values, strict=True))
            ]
            meta = {"dataset": dataset, "branch": "main", "commit": commit}
            meta["time"] = moment.isoformat()
            bodies.append(orjson.dumps({"measurements": measurements, "meta": meta}))
        return bodies

    def line_batches(self, n: int, dataset: str, batch: int = RAW_BATCH_JOBS) -> list[bytes]:
        """The server's line protocol (one line per job) for ``n`` jobs, ``batch`` per body."""
        lines = []
        for job_id in range(1, n + 1):
            moment, commit, values = self._next()
            time_ns = int(moment.timestamp()) * 1_000_000_000 + job_id % 1000
            fields, tags = (
                dict(zip(METRICS, values, strict=True)),
                {"dataset": dataset, "branch": "main"},
            )
            point = SeriesPoint(PACKAGE, time_ns, job_id, fields, tags, commit)
            lines.append(encode_point(point).encode())
        return [b"".join(lines[i : i + batch]) for i in range(0, n, batch)]


def family(pid: int) -> list[int]:
    """A process and its children (the server's ``--workers`` processes)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if int((entry / "stat").read_text().rpartition(")")[2].split()[1]) == pid:
                    children.append(int(entry.name))
    return [pid, *children]


def cpu_seconds(stack: Stack) -> dict[str, float]:
    """CPU seconds so far of the server (with its worker processes), its PostgreSQL backends,
    influxd and this script."""

    def of(pid: int) -> float:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return 0.0

    def backend(entry: Path) -> bool:  # "postgres: postgres <database> 127.0.0.1(…) idle"
        with contextlib.suppress(OSError):
            return f" {stack.db_name} ".encode() in (entry / "cmdline").read_bytes()
        return False

    backends = [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit() and backend(e)]
    return {
        "server": sum(of(pid) for pid in family(stack.server_pid)),
        "pg": sum(of(pid) for pid in backends),
        "influxd": of(stack.influxd_pid),
        "bench": time.process_time(),
    }


def cpu_since(stack: Stack, start: dict[str, float]) -> str:
    end = cpu_seconds(stack)
    return ", ".join(f"{key} {end[key] - start[key]:.1f}" for key in end)


def memory_mb(pid: int, key: str) -> float:
    """``VmRSS`` or ``VmHWM`` (the peak) of a process, with its worker processes, in MB."""
    total = 0.0
    for member in family(pid):
        with contextlib.suppress(OSError, IndexError):
            status = Path(f"/proc/{member}/status").read_text()
            total += int(status.split(f"{key}:")[1].split()[0]) / 1024
    return total


async def influx_query(influx: AsyncClient, db: str, q: str) -> list[dict[str, Any]]:
    response = await influx.post("/query", params={"db": db, **QUERY_PARAMS}, data={"q": q})
    if response.status_code != 200:
        raise BenchError(f"InfluxDB query {q!r}: {response.status_code} {response.text}")
    return parse_query_response(response.content)


async def write_lines(influx: AsyncClient, db: str, bodies: list[bytes]) -> None:
    for body in bodies:
        response = await influx.post("/write", params={"db": db, "precision": "ns"}, content=body)
        if response.status_code != 204:
            raise BenchError(f"InfluxDB write: {response.status_code} {response.text}")


async def verify_points(influx: AsyncClient, db: str, dataset: str, n_jobs: int) -> None:
    """Fail loudly unless each of the ``n_jobs`` points holds all 200 measurements."""
    q = f'SELECT COUNT(*) FROM "{PACKAGE}" WHERE "dataset" = \'{dataset}\''
    series = await influx_query(influx, db, q)
    row = series[0]["values"][0] if series else []
    counts = dict(zip(series[0]["columns"], row, strict=True)) if series else {}
    per_metric = [counts.get(f"count_{m}") for m in METRICS]
    if counts.get("count_job_id") != n_jobs or any(c != n_jobs for c in per_metric):
        short = sum(c != n_jobs for c in per_metric)
        raise BenchError(
            f"FAILED: {db}/{dataset} should hold {n_jobs} points × {N_METRICS} fields; it has "
            f"{counts.get('count_job_id')} points and {short} fields with another count"
        )


class LeanClient:
    """A minimal keep-alive HTTP/1.1 client for the load: the load generator shares the two
    cores with the server, and httpx spends about 0.5 ms of CPU per request (wrk-like)."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.host, _, port = url.removeprefix("http://").partition(":")
        self.port = int(port)
        self.head = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        writer.write(
            b"POST %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n\r\n"
            % (path.encode(), self.host.encode(), self.head, len(body))
            + body
        )
        header = await reader.readuntil(b"\r\n\r\n")
        status = int(header[9:12])
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in header.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,  # a 204 (InfluxDB's /write) has no body
        )
        return status, await reader.readexactly(length)

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()


async def post_jobs(client: LeanClient, bodies: list[bytes], latencies: list[float]) -> None:
    for body in bodies:
        start = time.perf_counter()
        status, text = await client.post("/api/v1/jobs", body)
        latencies.append(time.perf_counter() - start)
        if status != 201:
            raise BenchError(f"POST /api/v1/jobs: {status} {text[:500]!r}")


class Bench:
    """The phases of one run, with keep-alive clients: 4 to the API, 1 to InfluxDB."""

    def __init__(self, stack: Stack, exits: contextlib.AsyncExitStack) -> None:
        self.stack, self.exits = stack, exits
        headers = {
            "Authorization": f"Bearer {stack.jobs_token}",
            "Content-Type": "application/json",
        }
        self.api = [self.client(stack.url, headers) for _ in range(1)]
        self.load = [LeanClient(stack.url, headers) for _ in range(4)]
        for lean in self.load:
            exits.callback(lean.close)
        # Uncompressed, as the server asks for: the reference query gets the same treatment.
        self.influx = self.client(stack.influx_url, {"Accept-Encoding": "identity"})

    def client(self, url: str, headers: dict[str, str]) -> AsyncClient:
        return self.exits.push_async_exit(AsyncClient(base_url=url, headers=headers, timeout=60))

    async def ingest(self, n: int, bodies: list[bytes], dataset: str) -> dict[str, float]:
        """Post ``bodies`` from ``n`` clients; the clock stops once InfluxDB has every point."""
        latencies, peak_mb, pid = list[float](), [0.0], self.stack.server_pid

        async def sample_rss() -> None:
            while True:
                peak_mb[0] = max(peak_mb[0], memory_mb(pid, "VmRSS"))
                await asyncio.sleep(0.1)

        cpu, sampler = cpu_seconds(self.stack), asyncio.create_task(sample_rss())
        q = f'SELECT COUNT("job_id") FROM "{PACKAGE}" WHERE "dataset" = \'{dataset}\''
        start = time.perf_counter()
        try:
            await asyncio.gather(
                *(post_jobs(self.load[i], bodies[i::n], latencies) for i in range(n))
            )
            answered_s = time.perf_counter() - start
            while True:
                health = orjson.loads((await self.api[0].get("/healthz")).content)
                if health["outbox_pending"] == 0:
                    series = await influx_query(self.influx, SERIES_DB, q)
                    if series and series[0]["values"][0][1] == len(bodies):
                        break
                if time.perf_counter() - start > DELIVERY_TIMEOUT_S:
                    raise BenchError(f"FAILED: {dataset}: {health['outbox_pending']} in outbox")
                await asyncio.sleep(0.02)
            elapsed_s = time.perf_counter() - start
        finally:
            sampler.cancel()
        cpu_text = cpu_since(self.stack, cpu)
        await verify_points(self.influx, SERIES_DB, dataset, len(bodies))
        q_s = statistics.quantiles(latencies, n=100, method="inclusive")
        rate = len(bodies) * N_METRICS / elapsed_s
        print(
            f"  ingest, {n} client(s): {rate:,.0f} meas/s ({elapsed_s:.2f} s, all answered at "
            f"{answered_s:.2f} s); RSS ≤ {peak_mb[0]:.0f} MB; CPU s: {cpu_text}"
        )
        return {"rate": rate, "rss": peak_mb[0], "p50": q_s[49] * 1e3, "p99": q_s[98] * 1e3}

    async def raw(self, writers: int, batches: list[bytes], dataset: str) -> float:
        """Write ``batches`` straight to InfluxDB from ``writers`` clients; points per second."""
        clients = [self.client(self.stack.influx_url, {}) for _ in range(writers)]
        n_jobs = sum(body.count(b"\n") for body in batches)
        cpu, start = cpu_seconds(self.stack), time.perf_counter()
        await asyncio.gather(
            *(write_lines(c, RAW_DB, batches[i::writers]) for i, c in enumerate(clients))
        )
        rate = n_jobs * N_METRICS / (time.perf_counter() - start)
        cpu_text = cpu_since(self.stack, cpu)
        await verify_points(self.influx, RAW_DB, dataset, n_jobs)
        print(f"  raw InfluxDB, {writers} writer(s): {rate:,.0f} points/s; CPU s: {cpu_text}")
        return rate

    async def raw_per_job(self, writers: int, lines: list[bytes], dataset: str) -> float:
        """One /write per job (the API's request shape) from ``writers`` lean clients, as the
        like-for-like reference; points per second."""
        clients = [LeanClient(self.stack.influx_url, {}) for _ in range(writers)]
        for lean in clients:
            self.exits.callback(lean.close)
        path = f"/write?db={RAW_DB}&precision=ns"

        async def write(client: LeanClient, bodies: list[bytes]) -> None:
            for body in bodies:
                status, text = await client.post(path, body)
                if status != 204:
                    raise BenchError(f"InfluxDB write: {status} {text[:500]!r}")

        cpu, start = cpu_seconds(self.stack), time.perf_counter()
        await asyncio.gather(*(write(c, lines[i::writers]) for i, c in enumerate(clients)))
        rate = len(lines) * N_METRICS / (time.perf_counter() - start)
        cpu_text = cpu_since(self.stack, cpu)
        await verify_points(self.influx, RAW_DB, dataset, len(lines))
        print(
            f"  raw InfluxDB, one job per request, {writers} writer(s): {rate:,.0f} points/s; "
            f"CPU s: {cpu_text}"
        )
        return rate

    async def series(self) -> dict[str, float]:
        """Median and p90 (ms) of the 10,000-point series via the API and via InfluxQL."""
        tags = {"dataset": SERIES_DATASET, "branch": "main"}
        statement = build_select(SeriesQuery(PACKAGE, "m000", tags, limit=SERIES_POINTS))
        path, params = f"/api/v1/metrics/{PACKAGE}.m000/series", {"db": SERIES_DB, **QUERY_PARAMS}
        times: dict[str, list[float]] = {"api": [], "raw": []}
        for i in range(SERIES_WARMUP + SERIES_REQUESTS):  # interleaved: both see the same load
            start = time.perf_counter()
            response = await self.api[0].get(path, params={**tags, "limit": str(SERIES_POINTS)})
            api_s = time.perf_counter() - start
            start = time.perf_counter()
            raw = await self.influx.post("/query", params=params, data={"q": statement})
            raw_s = time.perf_counter() - start
            values = orjson.loads(response.content).get("value", [])
            rows = sum(len(s["values"]) for s in parse_query_response(raw.content))
            if len(values) != SERIES_POINTS or rows != SERIES_POINTS:
                raise BenchError(f"FAILED: the series has {len(values)} (API), {rows} (InfluxDB)")
            if i >= SERIES_WARMUP:
                times["api"].append(api_s * 1000)
                times["raw"].append(raw_s * 1000)
        figures = {}
        for key, values_ms in times.items():
            figures[f"series_{key}"] = statistics.median(values_ms)
            figures[f"series_{key}_p90"] = statistics.quantiles(values_ms, n=10)[8]
        figures["series_ratio"] = figures["series_api"] / figures["series_raw"]
        print(
            f"  series of {SERIES_POINTS:,}: API {figures['series_api']:.1f} ms, InfluxDB "
            f"{figures['series_raw']:.1f} ms (medians)"
        )
        return figures


async def run_once(stack: Stack, workload: Workload, run: int, n_jobs: int) -> dict[str, float]:
    """One whole measurement: warm-up, ingest from 1 and 4 clients, raw writes, series."""
    figures: dict[str, float] = {}
    async with contextlib.AsyncExitStack() as exits:
        bench, warmup = Bench(stack, exits), f"warmup-r{run}"
        await post_jobs(bench.load[0], workload.job_bodies(max(20, n_jobs // 20), warmup), [])
        for n in (1, 4):
            dataset = f"ingest-r{run}-c{n}"
            phase = await bench.ingest(n, workload.job_bodies(n_jobs, dataset), dataset)
            figures.update({f"{key}_{n}": value for key, value in phase.items()})
        await influx_query(bench.influx, RAW_DB, f'CREATE DATABASE "{RAW_DB}"')
        await bench.raw(1, workload.line_batches(RAW_BATCH_JOBS, warmup), warmup)
        for n in (1, 4):
            dataset = f"raw-r{run}-w{n}"
            figures[f"raw_{n}"] = await bench.raw(
                n, workload.line_batches(n_jobs, dataset), dataset
            )
            figures[f"ratio_{n}"] = figures[f"rate_{n}"] / figures[f"raw_{n}"]
            dataset = f"rawjob-r{run}-w{n}"
            figures[f"rawjob_{n}"] = await bench.raw_per_job(
                n, workload.line_batches(n_jobs, dataset, batch=1), dataset
            )
            figures[f"ratio_job_{n}"] = figures[f"rate_{n}"] / figures[f"rawjob_{n}"]
        figures.update(await bench.series())
    figures["hwm"] = memory_mb(stack.server_pid, "VmHWM")
    return figures


async def load_series(stack: Stack, workload: Workload) -> None:
    """10,000 jobs of one dataset and branch, straight into InfluxDB in the server's layout."""
    async with AsyncClient(base_url=stack.influx_url, timeout=60) as influx:
        await influx_query(influx, SERIES_DB, f'CREATE DATABASE "{SERIES_DB}"')
        await write_lines(influx, SERIES_DB, workload.line_batches(SERIES_POINTS, SERIES_DATASET))
        await verify_points(influx, SERIES_DB, SERIES_DATASET, SERIES_POINTS)


# (label, figure, format, target, check of the median)
ROWS: list[tuple[str, str, str, str, Callable[[float], bool] | None]] = [
    ("ingest, 1 client (meas/s)", "rate_1", "{:,.0f}", ">= 100,000", lambda v: v >= 100_000),
    ("ingest, 4 clients (meas/s)", "rate_4", "{:,.0f}", ">= 100,000", lambda v: v >= 100_000),
    ("raw InfluxDB, 1 writer (points/s)", "raw_1", "{:,.0f}", "", None),
    ("raw InfluxDB, 4 writers (points/s)", "raw_4", "{:,.0f}", "", None),
    ("ratio specwatch/raw, 1 client", "ratio_1", "{:.3f}", ">= 0.25", lambda v: v >= 0.25),
    ("ratio specwatch/raw, 4 clients", "ratio_4", "{:.3f}", ">= 0.25", lambda v: v >= 0.25),
    ("raw, 1 job/request, 1 writer (points/s)", "rawjob_1", "{:,.0f}", "", None),
    ("raw, 1 job/request, 4 writers (points/s)", "rawjob_4", "{:,.0f}", "", None),
    (
        "ratio specwatch/raw per job, 1 client",
        "ratio_job_1",
        "{:.3f}",
        ">= 0.25",
        lambda v: v >= 0.25,
    ),
    (
        "ratio specwatch/raw per job, 4 clients",
        "ratio_job_4",
        "{:.3f}",
        ">= 0.25",
        lambda v: v >= 0.25,
    ),
    ("job latency p50, 1 client (ms)", "p50_1", "{:.1f}", "", None),
    ("job latency p99, 1 client (ms)", "p99_1", "{:.1f}", "", None),
    ("job latency p50, 4 clients (ms)", "p50_4", "{:.1f}", "", None),
    ("job latency p99, 4 clients (ms)", "p99_4", "{:.1f}", "", None),
    ("server RSS, max in 4-client ingest (MB)", "rss_4", "{:.0f}", "< 300", lambda v: v < 300),
    ("server peak RSS, VmHWM (MB)", "hwm", "{:.0f}", "< 300", lambda v: v < 300),
    ("series 10k via API, median (ms)", "series_api", "{:.1f}", "< 50", lambda v: v < 50),
    ("series 10k via API, p90 (ms)", "series_api_p90", "{:.1f}", "", None),
    ("series 10k InfluxDB, median (ms)", "series_raw", "{:.1f}", "", None),
    ("series 10k InfluxDB, p90 (ms)", "series_raw_p90", "{:.1f}", "", None),
    ("series ratio API/InfluxDB", "series_ratio", "{:.2f}", "", None),
]


def print_table(runs: list[dict[str, float]]) -> None:
    heads = [f"run {i + 1}" for i in range(len(runs))] + ["median", "target"]
    print(f"\n{'figure':40}" + "".join(f"{h:>11}" for h in heads))
    for label, key, fmt, target, check in ROWS:
        median = statistics.median(run[key] for run in runs)
        cells = [fmt.format(run[key]) for run in runs] + [fmt.format(median), target]
        verdict = "" if check is None else ("  ok" if check(median) else "  MISS")
        print(f"{label:40}" + "".join(f"{c:>11}" for c in cells) + verdict)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per phase (200 meas each)")
    parser.add_argument("--runs", type=int, default=3, help="whole measurements; medians shown")
    parser.add_argument("--keep", action="store_true", help="leave server, influxd, database")
    parser.add_argument("--workers", type=int, default=1, help="server processes (serve --workers)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SPECWATCH_X=value",
        help="a setting of the server (repeat)",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in background
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the cleanups run
    workload = Workload(seed=20261125)
    try:
        with contextlib.ExitStack() as exits:
            stack = start_stack(exits, args.keep, args.workers, tuple(args.set))
            print(f"server: serve --workers {args.workers} {' '.join(args.set)}".rstrip())
            asyncio.run(load_series(stack, workload))
            runs = []
            for run in range(args.runs):
                print(f"run {run + 1}/{args.runs}: {args.jobs} jobs × {N_METRICS} per phase")
                runs.append(asyncio.run(run_once(stack, workload, run, args.jobs)))
            print_table(runs)
    except BenchError as error:
        print(f"\n*** BENCHMARK {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: server, influxd and database cleaned up", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
