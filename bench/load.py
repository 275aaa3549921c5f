"""Load benchmark: 50 writers and 20 readers against one ``specwatch serve`` on PostgreSQL +
InfluxDB, with exactly-once checked afterwards.

Run ``.venv/bin/python bench/load.py --runs 3`` (``--duration 60 --writers 50 --readers 20``
are the defaults).  Per run: a new PostgreSQL database and server process beside one influxd
(tests/reliability/harness.py starts them), then ``--writers`` keep-alive clients post jobs of
200 measurements (1 % malformed, each job with its own ``Idempotency-Key``, retried with it)
while ``--readers`` read series, comparisons and job lists, for ``--duration`` seconds; then
every acknowledged job is checked in SQL and InfluxDB (once each, every field of every point).
The reference, in the same run: jobs of the same workload written straight to InfluxDB, one
job per request, by as many writers for as long (lean clients, lines encoded beforehand, as
bench/ingest.py does, so that it measures InfluxDB and not this script).  Everything is
stopped and dropped at the end, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from ingest import LeanClient  # noqa: E402  (bench/ is the script's folder)
from reliability.harness import (  # noqa: E402  (tests/ is put on the path just above)
    Deployment,
    KillableInfluxDB,
    Load,
    LoadResult,
    Verification,
    Workload,
    verify_exactly_once,
)

from specwatch.store.series.base import SeriesPoint  # noqa: E402
from specwatch.store.series.lineprotocol import encode_point  # noqa: E402

ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
RAW_DB = "rawload"
READS = ("series", "compare", "jobs")


class BenchError(Exception):
    """A failed step or verification: the figures of the run cannot be trusted."""


def cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) used so far by a process; 0 if it is gone."""
    if pid is None:
        return 0.0
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def admin_sql(statement: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
        connection.execute(statement.encode())


def raw_pool(workload: Workload, size: int) -> list[list[str]]:
    """``size`` jobs of the workload as InfluxDB lines without their timestamps (one per
    package, in the server's layout), encoded before the clock starts."""
    pool = []
    for n in range(size):
        job = workload.job(n % 50, 100_000 + n, "raw")
        if job.malformed:
            continue
        tags = {"dataset": job.dataset, "branch": "main"}
        pool.append(
            [
                encode_point(SeriesPoint(package, 0, n, values, tags, job.commit)).rsplit(" ", 1)[0]
                for package, values in job.values.items()
            ]
        )
    return pool


async def raw_reference(
    influx: KillableInfluxDB, workload: Workload, writers: int, duration_s: float
) -> tuple[float, int]:
    """Jobs of the same workload written straight to InfluxDB, one job (one line per package)
    per request, by ``writers`` lean keep-alive clients (bench/ingest.py's) for
    ``duration_s``: values/s (measurements, as in the Specwatch figure) and jobs written.

    The lines are encoded beforehand (only the timestamp changes per request), so that the
    reference measures InfluxDB rather than this script's Python."""
    pool = raw_pool(workload, 1000)
    async with httpx.AsyncClient(base_url=influx.url, timeout=30) as client:
        response = await client.post("/query", data={"q": f'CREATE DATABASE "{RAW_DB}"'})
        response.raise_for_status()
    clients = [LeanClient(influx.url, {}) for _ in range(writers)]
    path, written = f"/write?db={RAW_DB}&precision=ns", [0]
    end = time.monotonic() + duration_s

    async def write(writer: int) -> None:
        n = writer
        while time.monotonic() < end:
            lines = pool[n % len(pool)]
            time_ns = 1_600_000_000_000_000_000 + n * 1_000_000_000  # a new point per request
            body = "".join(f"{line} {time_ns}\n" for line in lines).encode()
            status, text = await clients[writer].post(path, body)
            if status != 204:
                raise BenchError(f"InfluxDB write: {status} {text[:300]!r}")
            written[0] += 1
            n += writers

    started, cpu = time.monotonic(), (time.process_time(), cpu_s(influx.pid))
    try:
        await asyncio.gather(*(write(i) for i in range(writers)))
    finally:
        for lean in clients:
            lean.close()
    elapsed_s = time.monotonic() - started
    print(
        f"  raw phase CPU s: this script {time.process_time() - cpu[0]:.1f}, influxd "
        f"{cpu_s(influx.pid) - cpu[1]:.1f} (in {elapsed_s:.0f} s)"
    )
    for package in workload.metrics:
        series = influx.query(RAW_DB, f'SELECT COUNT("job_id") FROM "{package}"')
        count = series[0]["values"][0][1] if series else 0
        if count != written[0]:
            raise BenchError(f"FAILED: raw {package} holds {count} points, {written[0]} written")
    influx.query(RAW_DB, f'DROP DATABASE "{RAW_DB}"')
    return written[0] * workload.measurements_per_job / elapsed_s, written[0]


def run_once(
    run: int, influx: KillableInfluxDB, args: argparse.Namespace, folder: Path
) -> dict[str, float]:
    """One whole measurement on a new database and server process."""
    workload = Workload(seed=20261125 + run)
    db_name = f"specwatch_load_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin_sql(f'CREATE DATABASE "{db_name}"')
    try:
        url = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        deployment = Deployment.create(folder / f"run{run}", f"{url}/{db_name}", influx)
        with deployment:
            deployment.define(workload)
            load = Load(
                deployment.urls,
                deployment.token,
                workload,
                writers=args.writers,
                readers=args.readers,
                duration_s=args.duration,
                run=str(run),
            )
            pids = (deployment.apis[0].pid, influx.pid)
            cpu = (time.process_time(), cpu_s(pids[0]), cpu_s(pids[1]))
            result = asyncio.run(load.run())
            print(
                f"  load phase CPU s: server {cpu_s(pids[0]) - cpu[1]:.1f}, this script "
                f"{time.process_time() - cpu[0]:.1f}, influxd {cpu_s(pids[1]) - cpu[2]:.1f}"
            )
            verification = verify_exactly_once(deployment, workload, result)
    finally:
        admin_sql(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    raw_rate, raw_jobs = asyncio.run(raw_reference(influx, workload, args.writers, args.duration))
    figures = figures_of(result, verification, workload, raw_rate)
    print(result.summary())
    print(verification.summary())
    print(
        f"  raw InfluxDB, one job per request, {args.writers} writers: {raw_rate:,.0f} values/s "
        f"({raw_jobs} jobs); ratio {figures['ratio']:.3f}"
    )
    if not verification.ok:
        raise BenchError(f"FAILED: run {run + 1}: {verification.summary()}")
    return figures


def figures_of(
    result: LoadResult, verification: Verification, workload: Workload, raw_rate: float
) -> dict[str, float]:
    jobs_s = len(result.acked) / result.duration_s
    write_p50, write_p99 = result.latency_ms("write")
    read_p50, read_p99 = result.latency_ms(*READS)
    series_p50, series_p99 = result.latency_ms("series")
    compare_p50, compare_p99 = result.latency_ms("compare")
    measurements_s = jobs_s * workload.measurements_per_job
    return {
        "requests": len(result.samples),
        "requests_s": len(result.samples) / result.duration_s,
        "jobs_s": jobs_s,
        "measurements_s": measurements_s,
        "server_errors": result.server_errors(),
        "malformed_4xx": sum(
            1 for _, s in result.malformed.values() if isinstance(s, int) and 400 <= s < 500
        ),
        "malformed": len(result.malformed),
        "write_p50": write_p50,
        "write_p99": write_p99,
        "read_p50": read_p50,
        "read_p99": read_p99,
        "series_p50": series_p50,
        "series_p99": series_p99,
        "compare_p50": compare_p50,
        "compare_p99": compare_p99,
        "reads": sum(result.count(kind=kind) for kind in READS),
        "exactly_once": float(verification.ok),
        "raw": raw_rate,
        "ratio": measurements_s / raw_rate,
    }


ROWS: list[tuple[str, str, str, Callable[[float], bool] | None]] = [
    ("requests", "requests", "{:,.0f}", None),
    ("requests/s", "requests_s", "{:,.1f}", None),
    ("acknowledged jobs/s", "jobs_s", "{:,.1f}", None),
    ("measurements/s", "measurements_s", "{:,.0f}", None),
    ("5xx answers", "server_errors", "{:.0f}", lambda v: v == 0),
    ("malformed jobs answered 4xx", "malformed_4xx", "{:.0f}", None),
    ("malformed jobs sent", "malformed", "{:.0f}", None),
    ("write latency p50 (ms)", "write_p50", "{:.1f}", None),
    ("write latency p99 (ms)", "write_p99", "{:.1f}", None),
    ("read latency p50 (ms), all reads", "read_p50", "{:.1f}", None),
    ("read latency p99 (ms), all reads", "read_p99", "{:.1f}", None),
    ("series p50 (ms)", "series_p50", "{:.1f}", None),
    ("series p99 (ms)", "series_p99", "{:.1f}", None),
    ("compare p50 (ms)", "compare_p50", "{:.1f}", None),
    ("compare p99 (ms)", "compare_p99", "{:.1f}", None),
    ("reads", "reads", "{:,.0f}", None),
    ("exactly once (1 = every ack verified)", "exactly_once", "{:.0f}", lambda v: v == 1),
    ("raw InfluxDB, 1 job/request (values/s)", "raw", "{:,.0f}", None),
    ("ratio specwatch/raw", "ratio", "{:.3f}", None),
]


def print_table(runs: list[dict[str, float]]) -> None:
    heads = [f"run {i + 1}" for i in range(len(runs))] + ["median"]
    print(f"\n{'figure':40}" + "".join(f"{h:>11}" for h in heads))
    for label, key, fmt, check in ROWS:
        median = statistics.median(run[key] for run in runs)
        cells = [fmt.format(run[key]) for run in runs] + [fmt.format(median)]
        verdict = "" if check is None else ("  ok" if check(median) else "  MISS")
        print(f"{label:40}" + "".join(f"{c:>11}" for c in cells) + verdict)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="whole measurements; medians shown")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load per run")
    parser.add_argument("--writers", type=int, default=50)
    parser.add_argument("--readers", type=int, default=20)
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in background
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the cleanups run
    try:
        with contextlib.ExitStack() as exits:
            influx = KillableInfluxDB()
            exits.callback(influx.cleanup)
            influx.start()
            folder = Path(tempfile.mkdtemp(prefix="specwatch-load-"))
            runs = []
            for run in range(args.runs):
                print(
                    f"run {run + 1}/{args.runs}: {args.writers} writers, {args.readers} readers, "
                    f"{args.duration:.0f} s (logs in {folder})"
                )
                runs.append(run_once(run, influx, args, folder))
            print_table(runs)
            shutil.rmtree(folder, ignore_errors=True)  # kept when a run failed
    except BenchError as error:
        print(f"\n*** BENCHMARK {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: server, influxd and database cleaned up", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
