"""Real processes to break, a load to break them under, and the check that nothing was lost.

- ``PrivatePostgres``: a PostgreSQL cluster of our own (``initdb``/``pg_ctl`` as the
  ``postgres`` OS user when run as root) on a free loopback port, trust auth, ``fsync=on``:
  it can be restarted, unlike the shared test server.
- ``KillableInfluxDB``: tests/influxdb_server.py's ``influxd``, plus SIGKILL.
- ``Deployment``: N ``specwatch serve`` and M ``specwatch worker`` processes on one database
  (and InfluxDB), each killed with SIGKILL and restarted on the same port.
- ``Load``: W writers posting jobs (about 1 % malformed, each job with its own
  ``Idempotency-Key``, retried with the same key after a transport error or a 5xx as the
  collector does) and R readers of series, comparisons and job lists, for D seconds; every
  answer is recorded, with the fault windows a test opens.
- ``verify_exactly_once``: once the outbox is empty, every acknowledged job is in SQL exactly
  once and each of its packages is exactly one point in the series store, whole.

Blocking (subprocesses, ``time.sleep``) except ``Load.run``: call the rest from sync code or
``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import yaml
from influxdb_server import InfluxDBServer, free_port

from specwatch.store.series.influxdb import QUERY_CHUNK_ROWS, parse_query_response

SPECWATCH = str(Path(sys.executable).with_name("specwatch"))
START_TIMEOUT_S = 90.0  # a restart under load shares two cores with the load
UNITS = ("mag", "mmag", "arcsec", "mas", "s", "ct", "pix", "%", "dex", "")
MALFORMED_KINDS = ("bad_json", "unknown_unit", "wrong_type", "unknown_metric")
TRANSPORT = "transport"  # the status of an attempt that got no HTTP answer


class HarnessError(RuntimeError):
    """A process of the harness did not start or stop as it should."""


class MountError(HarnessError):
    """A tmpfs could not be mounted (not root, or no mount here)."""


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return "(no log)"


# --- PostgreSQL, privately -----------------------------------------------------------------------


class PrivatePostgres:
    """A PostgreSQL cluster on a temp dir and a free loopback port, ours to restart.

    initdb refuses root: as root, every command runs as the ``postgres`` OS user, who owns the
    temp dir.  Trust auth on 127.0.0.1 only; ``fsync`` stays on (the default), so a commit that
    was acknowledged survives ``restart("immediate")``.
    """

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="specwatch-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "postgres.log"
        self.port = free_port()
        self._ids: tuple[int, int] | None = None
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            self._ids = (owner.pw_uid, owner.pw_gid)
            os.chown(self.base, owner.pw_uid, owner.pw_gid)
        os.chmod(self.base, 0o700)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-locale",
            "-E",
            "UTF8",
            "--no-sync",
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.base}'",
            "fsync": "on",
            "max_connections": "200",
            "shared_buffers": "64MB",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _run(self, *argv: str, timeout_s: float = 120.0) -> str:
        uid, gid = self._ids or (None, None)
        env = {"PATH": os.environ["PATH"], "HOME": str(self.base), "LC_ALL": "C"}
        done = subprocess.run(
            argv,
            cwd=self.base,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            user=uid,
            group=gid,
        )
        if done.returncode != 0:
            raise HarnessError(
                f"{' '.join(argv)} failed ({done.returncode}): {done.stderr}\n{_tail(self.log)}"
            )
        return done.stdout

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, mode: str = "fast") -> None:
        """``fast``: clients disconnected, a clean shutdown; ``immediate``: as a crash
        (recovery from the WAL at start)."""
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-m",
            mode,
            "-w",
            "-t",
            "60",
            "restart",
        )

    def create_database(self, name: str) -> str:
        """A new database; its async URL."""
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.url(name).replace("postgresql://", "postgresql+asyncpg://")

    def cleanup(self) -> None:
        with contextlib.suppress(HarnessError, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def terminate_backends(admin_url: str, database: str) -> int:
    """Terminate every connection to ``database`` (as an operator or a failover would);
    returns how many were terminated."""
    with psycopg.connect(admin_url.replace("+asyncpg", ""), autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return sum(1 for (done,) in rows if done)


# --- InfluxDB ------------------------------------------------------------------------------------


class KillableInfluxDB(InfluxDBServer):
    """tests/influxdb_server.py's influxd, which can also be killed without warning."""

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye; ``start()`` serves the same data dir again."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def query(self, database: str, statement: str) -> list[dict[str, Any]]:
        response = httpx.post(
            f"{self.url}/query",
            params={
                "db": database,
                "epoch": "ns",
                "chunked": "true",
                "chunk_size": str(QUERY_CHUNK_ROWS),
            },
            data={"q": statement},
            timeout=120,
        )
        response.raise_for_status()
        return parse_query_response(response.content)


# --- Specwatch processes -------------------------------------------------------------------------


class SpecwatchProcess:
    """One ``specwatch serve`` (on a port of its own for its whole life) or ``specwatch worker``."""

    def __init__(self, name: str, command: str, env: Mapping[str, str], log: Path) -> None:
        self.name, self.command, self.env, self.log = name, command, dict(env), log
        self.port = free_port() if command == "serve" else 0
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        argv = [SPECWATCH, self.command]
        if self.command == "serve":
            argv += ["--host", "127.0.0.1", "--port", str(self.port)]
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                argv, env=self.env, stdout=sink, stderr=subprocess.STDOUT
            )
        self.starts += 1
        deadline = time.monotonic() + timeout_s
        while not self._ready(offset):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise HarnessError(f"{self.name} did not start:\n{_tail(self.log)}")
            time.sleep(0.1)

    def _ready(self, offset: int) -> bool:
        if self.command == "serve":
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        with self.log.open("rb") as log:  # the worker says so once its context is open
            log.seek(offset)
            return b"specwatch worker:" in log.read()

    def kill(self) -> None:
        """SIGKILL: whatever it was doing is cut off (no shutdown, no flush)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
            self.process = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def restart(self) -> None:
        """Killed, then started again on the same port."""
        self.kill()
        self.start()


@dataclass
class Deployment:
    """Specwatch processes on one database (and InfluxDB database), with a write token."""

    folder: Path
    database_url: str
    influx: KillableInfluxDB | None
    influx_database: str
    env: dict[str, str]
    apis: list[SpecwatchProcess]
    workers: list[SpecwatchProcess]
    token: str = ""

    @classmethod
    def create(
        cls,
        folder: Path,
        database_url: str,
        influx: KillableInfluxDB | None,
        *,
        apis: int = 1,
        workers: int = 0,
        settings: Mapping[str, str] | None = None,
        api_settings: Mapping[str, str] | None = None,
        worker_settings: Mapping[str, str] | None = None,
    ) -> Deployment:
        """Migrate the database and make a token; ``start()`` starts the processes."""
        folder.mkdir(parents=True, exist_ok=True)
        influx_database = f"rel_{uuid.uuid4().hex[:12]}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SPECWATCH_")},
            "SPECWATCH_DATABASE_URL": database_url,
            "SPECWATCH_LOG_FORMAT": "json",
            "SPECWATCH_OUTBOX_RETRY_INITIAL_S": "0.2",
            "SPECWATCH_OUTBOX_RETRY_MAX_S": "1",
            "SPECWATCH_INFLUXDB_TIMEOUT_S": "3",
            **(settings or {}),
        }
        if influx is not None:
            env["SPECWATCH_INFLUXDB_URL"] = influx.url
            env["SPECWATCH_INFLUXDB_DATABASE"] = influx_database
        api_env = {**env, **(api_settings or {})}
        worker_env = {**env, **(worker_settings or {})}
        deployment = cls(
            folder,
            database_url,
            influx,
            influx_database,
            env,
            [
                SpecwatchProcess(f"api{i}", "serve", api_env, folder / f"api{i}.log")
                for i in range(apis)
            ],
            [
                SpecwatchProcess(f"worker{i}", "worker", worker_env, folder / f"worker{i}.log")
                for i in range(workers)
            ],
        )
        deployment.cli("db", "upgrade")
        token = deployment.cli(
            "token",
            "create",
            "--scope",
            "write:jobs",
            "--scope",
            "write:definitions",
            "--name",
            "reliability",
        )
        deployment.token = token.split()[0]
        return deployment

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [SPECWATCH, *args], env=self.env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise HarnessError(f"specwatch {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    @property
    def processes(self) -> list[SpecwatchProcess]:
        return [*self.apis, *self.workers]

    @property
    def urls(self) -> list[str]:
        return [api.url for api in self.apis]

    def start(self) -> None:
        for process in self.processes:
            process.start()

    def stop(self) -> None:
        for process in self.processes:
            process.stop()

    def define(self, workload: Workload) -> None:
        """Import the workload's metric (and spec) definitions through the API."""
        response = httpx.post(
            f"{self.urls[0]}/api/v1/definitions",
            json={"files": workload.definition_files()},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=60,
        )
        if response.status_code != 200:
            raise HarnessError(f"definitions: {response.status_code} {response.text}")

    def health(self) -> dict[str, Any]:
        """``/healthz`` of the first API process that answers."""
        for url in self.urls:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                response = httpx.get(f"{url}/healthz", timeout=5)
                if response.status_code == 200:
                    answer: dict[str, Any] = response.json()
                    return answer
        raise HarnessError("no API process answers /healthz")

    def log_lines(self, needle: str) -> list[str]:
        """Lines of every process log holding ``needle``."""
        return [
            line
            for process in self.processes
            if process.log.exists()
            for line in process.log.read_text(errors="replace").splitlines()
            if needle in line
        ]

    def unhandled_errors(self) -> Counter[str]:
        """The errors the processes logged as unhandled (each answered 500), by path, type
        and the exception line of their traceback."""
        found: Counter[str] = Counter()
        for line in self.log_lines('"unhandled error"'):
            with contextlib.suppress(ValueError, KeyError):
                entry = orjson.loads(line)
                causes = [
                    text
                    for text in str(entry.get("exception", "")).splitlines()
                    if re.match(r"^[\w.]+(Error|Exception)\b", text)
                ]
                found[f"{entry['path']} {causes[-1][:160] if causes else entry['error_type']}"] += 1
        return found

    def __enter__(self) -> Deployment:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- The workload --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedJob:
    """One POST: its key and body; ``malformed`` names how it is wrong (None: valid)."""

    key: str
    body: bytes
    dataset: str
    malformed: str | None = None
    values: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # package -> metric
    time_ns: int = 0
    commit: str = ""


class Workload:
    """Jobs of ``packages × metrics_per_package`` measurements (200 by default), each with a
    distinct time, commit and ``Idempotency-Key``; ``malformed_fraction`` of them malformed
    (spread evenly over writers and time, cycling through ``MALFORMED_KINDS``).  Writer ``w``
    posts to dataset ``<prefix>-d<w % datasets>`` (on ``main``): each metric of each dataset
    is a series, which change detection goes through after its debounce.

    ``failing_spec``: each job also measures ``al.PA1`` at 9 mmag, above its 8 mmag minimum:
    the ``spec-level`` rule opens one alert per dataset once two of its builds fail.
    """

    def __init__(
        self,
        *,
        seed: int = 20261125,
        packages: Sequence[str] = ("rela", "relb"),
        metrics_per_package: int = 100,
        malformed_fraction: float = 0.01,
        dataset_prefix: str = "rel",
        datasets: int = 5,
        failing_spec: bool = False,
    ) -> None:
        self.seed = seed
        self.metrics = {
            package: [f"m{i:03d}" for i in range(metrics_per_package)] for package in packages
        }
        self.malformed_fraction = malformed_fraction
        self.dataset_prefix = dataset_prefix
        self.datasets = datasets
        self.failing_spec = failing_spec
        self._rngs: dict[int, random.Random] = {}
        self._start = datetime(2021, 1, 1, tzinfo=UTC)

    @property
    def packages(self) -> list[str]:
        return [*self.metrics, *(["al"] if self.failing_spec else [])]

    @property
    def measurements_per_job(self) -> int:
        return sum(len(metrics) for metrics in self.metrics.values()) + self.failing_spec

    def unit(self, index: int) -> str:
        return UNITS[index % len(UNITS)]

    def definition_files(self) -> dict[str, str]:
        files = {
            f"metrics/{package}.yaml": yaml.safe_dump(
                {
                    m: {"description": "Reliability.", "unit": self.unit(i)}
                    for i, m in enumerate(metrics)
                }
            )
            for package, metrics in self.metrics.items()
        }
        if self.failing_spec:
            files["metrics/al.yaml"] = "PA1:\n  unit: mmag\n  tags: [kpm]\n"
            files["specs/al/PA1.yaml"] = (
                "name: minimum\nmetric: PA1\nlevel: minimum\n"
                "threshold: {value: 8.0, unit: mmag, operator: '<='}\n"
            )
        return files

    def dataset(self, writer: int) -> str:
        return f"{self.dataset_prefix}-d{writer % self.datasets:02d}"

    def job(self, writer: int, seq: int, run: str = "") -> PlannedJob:
        """Job ``seq`` of ``writer``: deterministic for a seed."""
        rng = self._rngs.setdefault(writer, random.Random(self.seed * 1000 + writer))
        key = f"rel{run}-{self.dataset_prefix}-{writer}-{seq}-{uuid.uuid4().hex[:8]}"
        moment = self._start + timedelta(days=writer * 1000, seconds=seq)
        commit = f"{rng.getrandbits(160):040x}"
        values = {
            package: {m: round(rng.uniform(0, 100), 6) for m in metrics}
            for package, metrics in self.metrics.items()
        }
        measurements: list[dict[str, Any]] = [
            {"metric": f"{package}.{m}", "value": v, "unit": self.unit(i)}
            for package, metric_values in values.items()
            for i, (m, v) in enumerate(metric_values.items())
        ]
        if self.failing_spec:
            measurements.append({"metric": "al.PA1", "value": 9.0 + seq % 7 / 10, "unit": "mmag"})
            values["al"] = {"PA1": measurements[-1]["value"]}
        meta = {
            "dataset": self.dataset(writer),
            "branch": "main",
            "commit": commit,
            "time": moment.isoformat(),
        }
        document: dict[str, Any] = {"measurements": measurements, "meta": meta}
        malformed = None
        period = round(1 / self.malformed_fraction) if self.malformed_fraction > 0 else 0
        if period and (seq + writer * 37) % period == 0:  # spread over writers and time
            malformed = MALFORMED_KINDS[(writer + seq // period) % len(MALFORMED_KINDS)]
            if malformed == "unknown_unit":
                measurements[0]["unit"] = "bogon"
            elif malformed == "wrong_type":
                measurements[0]["value"] = "fast"
            elif malformed == "unknown_metric":
                measurements[0]["metric"] = "nosuchpackage.nosuchmetric"
        body = orjson.dumps(document)
        if malformed == "bad_json":
            body = body[: len(body) // 2]
        time_ns = int(moment.timestamp()) * 1_000_000_000
        return PlannedJob(key, body, self.dataset(writer), malformed, values, time_ns, commit)


# --- The load ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One HTTP attempt: its kind, when it started and ended (monotonic), and its status
    (``TRANSPORT`` when no answer came); ``problem``: the body was a problem document."""

    kind: str
    started: float
    ended: float
    status: int | str
    problem: bool = False
    detail: str = ""

    @property
    def failed(self) -> bool:
        """A server error or no answer at all."""
        return self.status == TRANSPORT or (isinstance(self.status, int) and self.status >= 500)


@dataclass
class FaultWindow:
    """While a fault is in force (plus a settling time): the failures it excuses, as
    ``(kind, status)`` pairs (kind ``"*"``: any; status ``TRANSPORT``: no answer)."""

    name: str
    started: float
    ended: float = float("inf")
    allowed: frozenset[tuple[str, int | str]] = frozenset()

    def covers(self, sample: Sample) -> bool:
        return sample.started <= self.ended and sample.ended >= self.started

    def excuses(self, sample: Sample) -> bool:
        return self.covers(sample) and bool(
            {(sample.kind, sample.status), ("*", sample.status)} & self.allowed
        )


@dataclass
class LoadResult:
    duration_s: float
    samples: list[Sample]
    acked: dict[str, int]  # Idempotency-Key -> job id, of every acknowledged job
    acked_jobs: dict[str, PlannedJob]
    malformed: dict[str, tuple[str, int | str | None]]  # key -> (kind, final status)
    unacked: list[str]  # valid jobs still unacknowledged when the run ended
    windows: list[FaultWindow]
    errors: list[str]  # what no fault can excuse: a valid job refused, a replay that created

    def unexcused(self) -> list[Sample]:
        """5xx and transport errors outside the fault windows, or of a kind no window allows."""
        return [s for s in self.samples if s.failed and not any(w.excuses(s) for w in self.windows)]

    def in_windows(self) -> dict[str, Counter[str]]:
        """Per fault window: its failures by kind and status."""
        return {
            w.name: Counter(
                f"{s.kind} {s.status}" for s in self.samples if s.failed and w.covers(s)
            )
            for w in self.windows
        }

    def count(self, *, kind: str | None = None, status: int | str | None = None) -> int:
        return sum(
            1
            for s in self.samples
            if (kind is None or s.kind == kind) and (status is None or s.status == status)
        )

    def latency_ms(self, *kinds: str) -> tuple[float, float]:
        """p50 and p99 (ms) of the answered attempts of these kinds."""
        times = [
            (s.ended - s.started) * 1000
            for s in self.samples
            if s.kind in kinds and s.status != TRANSPORT
        ]
        if len(times) < 2:
            return (times[0], times[0]) if times else (float("nan"), float("nan"))
        q = statistics.quantiles(times, n=100, method="inclusive")
        return q[49], q[98]

    def server_errors(self) -> int:
        return sum(1 for s in self.samples if isinstance(s.status, int) and s.status >= 500)

    def summary(self) -> str:
        kinds = sorted({s.kind for s in self.samples})
        lines = [
            f"{len(self.samples)} requests in {self.duration_s:.1f} s; {len(self.acked)} jobs "
            f"acknowledged ({len(self.acked) / self.duration_s:.1f}/s), {len(self.unacked)} "
            f"unacknowledged at the end, {len(self.malformed)} malformed; "
            f"{self.server_errors()} 5xx, {self.count(status=TRANSPORT)} transport errors"
        ]
        for kind in kinds:
            p50, p99 = self.latency_ms(kind)
            statuses = Counter(str(s.status) for s in self.samples if s.kind == kind)
            lines.append(
                f"  {kind:10} {sum(statuses.values()):6} p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  "
                + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
            )
        if self.malformed:
            answers = Counter(f"{kind} {status}" for kind, status in self.malformed.values())
            lines.append(f"  malformed answers: {dict(sorted(answers.items()))}")
        for name, failures in self.in_windows().items():
            lines.append(f"  fault {name!r}: {dict(failures) or 'no failures'}")
        return "\n".join(lines)


class Load:
    """W writers and R readers against the API processes at ``urls`` for ``duration_s``."""

    def __init__(
        self,
        urls: Sequence[str],
        token: str,
        workload: Workload,
        *,
        writers: int = 50,
        readers: int = 20,
        duration_s: float = 15.0,
        replay_fraction: float = 0.01,
        read_pause_s: float = 0.05,
        retry_initial_s: float = 0.05,
        retry_max_s: float = 1.0,
        request_timeout_s: float = 20.0,
        run: str = "",
    ) -> None:
        self.urls = list(urls)
        self.token = token
        self.workload = workload
        self.writers, self.readers, self.duration_s = writers, readers, duration_s
        self.replay_fraction = replay_fraction
        self.read_pause_s = read_pause_s
        self.retry_initial_s, self.retry_max_s = retry_initial_s, retry_max_s
        self.request_timeout_s = request_timeout_s
        self.run_label = run
        self.samples: list[Sample] = []
        self.windows: list[FaultWindow] = []
        self.acked: dict[str, int] = {}
        self.acked_jobs: dict[str, PlannedJob] = {}
        self.malformed: dict[str, tuple[str, int | str | None]] = {}
        self.unacked: list[str] = []
        self.errors: list[str] = []
        self.start = self.end = 0.0
        self._client: httpx.AsyncClient | None = None

    @contextlib.asynccontextmanager
    async def fault(
        self, name: str, allowed: Mapping[str, Sequence[int | str]], settle_s: float = 2.0
    ) -> AsyncIterator[FaultWindow]:
        """A window in which the failures ``allowed`` (kind → statuses; kind ``"*"``: any;
        ``TRANSPORT``: no answer) are excused, from its start until ``settle_s`` after the
        block ends."""
        pairs = frozenset(
            (kind, status) for kind, statuses in allowed.items() for status in statuses
        )
        window = FaultWindow(name, time.monotonic(), allowed=pairs)
        self.windows.append(window)
        try:
            yield window
        finally:
            window.ended = time.monotonic() + settle_s

    def remaining_s(self) -> float:
        return self.end - time.monotonic()

    async def run(self, fault: Callable[[Load], Awaitable[None]] | None = None) -> LoadResult:
        """Run the load (and ``fault(self)`` beside it); the record of every answer."""
        # Idle connections are dropped before uvicorn's 5 s keep-alive timeout would close
        # them under a request (a race that no retry policy should have to cover).
        connections = self.writers + self.readers + 10
        limits = httpx.Limits(
            max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=2
        )
        headers = {"Authorization": f"Bearer {self.token}"}
        async with httpx.AsyncClient(
            limits=limits, timeout=self.request_timeout_s, headers=headers
        ) as client:
            self._client = client
            self.start = time.monotonic()
            self.end = self.start + self.duration_s
            tasks: list[Awaitable[None]] = [self._writer(i) for i in range(self.writers)]
            tasks += [self._reader(i) for i in range(self.readers)]
            if fault is not None:
                tasks.append(fault(self))
            await asyncio.gather(*tasks)
            self._client = None
        return LoadResult(
            duration_s=self.duration_s,
            samples=self.samples,
            acked=self.acked,
            acked_jobs=self.acked_jobs,
            malformed=self.malformed,
            unacked=self.unacked,
            windows=self.windows,
            errors=self.errors,
        )

    async def _attempt(
        self, kind: str, method: str, url: str, **kwargs: Any
    ) -> httpx.Response | None:
        assert self._client is not None
        started = time.monotonic()
        try:
            response = await self._client.request(method, url, **kwargs)
        except httpx.TransportError as error:
            self.samples.append(
                Sample(kind, started, time.monotonic(), TRANSPORT, detail=type(error).__name__)
            )
            return None
        problem = response.headers.get("content-type", "").startswith("application/problem+json")
        detail = response.text[:300] if response.status_code >= 400 else ""
        self.samples.append(
            Sample(kind, started, time.monotonic(), response.status_code, problem, detail)
        )
        return response

    async def _post_job(self, writer: int, job: PlannedJob, *, replay: bool = False) -> None:
        """POST until answered for good (or the run ends), with the same key every time."""
        kind = "replay" if replay else ("malformed" if job.malformed else "write")
        rng = random.Random(job.key)
        delay_s, target = self.retry_initial_s, writer % len(self.urls)
        headers = {"Idempotency-Key": job.key, "Content-Type": "application/json"}
        status: int | str | None = None
        while True:
            response = await self._attempt(
                kind, "POST", f"{self.urls[target]}/api/v1/jobs", content=job.body, headers=headers
            )
            status = TRANSPORT if response is None else response.status_code
            if response is not None and response.status_code < 500 and status not in (408, 429):
                self._settle(job, kind, response)
                return
            if self.remaining_s() <= 0:
                break
            if response is None:  # as a load balancer would: the next process
                target = (target + 1) % len(self.urls)
            await asyncio.sleep(rng.uniform(0, delay_s))  # full jitter
            delay_s = min(delay_s * 2, self.retry_max_s)
        if job.malformed:
            self.malformed[job.key] = (job.malformed, status)
        elif not replay:
            self.unacked.append(job.key)

    def _settle(self, job: PlannedJob, kind: str, response: httpx.Response) -> None:
        status = response.status_code
        if job.malformed:
            self.malformed[job.key] = (job.malformed, status)
            if not 400 <= status < 500:
                self.errors.append(f"malformed ({job.malformed}) {job.key}: {status}")
            return
        if status not in (200, 201):
            self.errors.append(f"{kind} {job.key} refused: {status} {response.text[:300]}")
            return
        job_id = int(response.json()["id"])
        if kind == "replay":
            if status != 200 or job_id != self.acked.get(job.key):
                self.errors.append(
                    f"replay of {job.key} (job {self.acked.get(job.key)}): {status} job {job_id}"
                )
            return
        self.acked[job.key] = job_id
        self.acked_jobs[job.key] = job

    async def _writer(self, writer: int) -> None:
        seq, rng = 0, random.Random(writer)
        while self.remaining_s() > 0:
            job = self.workload.job(writer, seq, self.run_label)
            seq += 1
            await self._post_job(writer, job)
            if job.key in self.acked and rng.random() < self.replay_fraction:
                await self._post_job(writer, job, replay=True)

    async def _reader(self, reader: int) -> None:
        rng = random.Random(10_000 + reader)
        workload = self.workload
        while self.remaining_s() > 0:
            url = self.urls[rng.randrange(len(self.urls))]
            dataset = workload.dataset(rng.randrange(self.writers))
            choice = rng.random()
            if choice < 0.6 or not self.acked:
                package = rng.choice(list(workload.metrics))
                metric = f"{package}.{rng.choice(workload.metrics[package])}"
                params = {"dataset": dataset, "branch": "main", "limit": "1000"}
                await self._attempt(
                    "series", "GET", f"{url}/api/v1/metrics/{metric}/series", params=params
                )
            elif choice < 0.85:
                head = rng.choice(list(self.acked.values()))
                await self._attempt(
                    "compare",
                    "GET",
                    f"{url}/api/v1/compare",
                    params={"head": str(head), "base": "auto"},
                )
            else:
                await self._attempt(
                    "jobs", "GET", f"{url}/api/v1/jobs", params={"dataset": dataset, "limit": "50"}
                )
            await asyncio.sleep(self.read_pause_s)


def run_load(load: Load, fault: Callable[[Load], Awaitable[None]] | None = None) -> LoadResult:
    """``load.run(fault)`` from sync code."""
    return asyncio.run(load.run(fault))


# --- Verification --------------------------------------------------------------------------------


@dataclass
class Verification:
    acked: int
    stored: int  # jobs in SQL (acknowledged or not: a 201 lost in a crash is fine)
    points: dict[str, int]  # series points per package
    outbox_wait_s: float
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        verdict = "OK" if self.ok else f"FAILED ({len(self.problems)} problems)"
        head = (
            f"exactly-once: {verdict}: {self.acked} acknowledged, {self.stored} stored in SQL, "
            f"points {self.points}; outbox empty after {self.outbox_wait_s:.1f} s"
        )
        return "\n".join([head, *(f"  - {p}" for p in self.problems[:30])])


def wait_outbox_empty(deployment: Deployment, timeout_s: float) -> float:
    """Seconds until ``/healthz`` says ``outbox_pending == 0``; raises on timeout."""
    start = time.monotonic()
    pending: Any = None
    while time.monotonic() - start < timeout_s:
        with contextlib.suppress(HarnessError):
            pending = deployment.health()["outbox_pending"]
            if pending == 0:
                return time.monotonic() - start
        time.sleep(0.25)
    raise HarnessError(f"the outbox still holds {pending} jobs after {timeout_s:.0f} s")


def sql_rows(database_url: str, statement: str) -> list[tuple[Any, ...]]:
    """Rows of a query on the deployment's database (SQLite or PostgreSQL), synchronously."""
    if database_url.startswith("sqlite"):
        path = database_url.split(":///", 1)[1]
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as connection:
            return list(connection.execute(statement).fetchall())
    plain = database_url.replace("postgresql+asyncpg://", "postgresql://")
    with psycopg.connect(plain) as connection:
        return list(connection.execute(statement.encode()).fetchall())


def verify_exactly_once(
    deployment: Deployment, workload: Workload, result: LoadResult, *, outbox_timeout_s: float = 90
) -> Verification:
    """Nothing acknowledged lost, nothing doubled, in SQL and in the series store.

    Waits for the outbox to empty, then: every acknowledged key is one job row, with the id
    its answer gave; no two rows share a body; no malformed job was stored; every stored job
    is exactly one point per package in InfluxDB (no point without its job), and every point
    holds every metric of its package (counted field by field); with the embedded store,
    exactly its measurements in ``series_point``.
    """
    problems: list[str] = []
    try:
        waited_s = wait_outbox_empty(deployment, outbox_timeout_s)
    except HarnessError as error:
        problems.append(str(error))
        waited_s = outbox_timeout_s
    url = deployment.database_url
    rows = sql_rows(url, "SELECT id, idempotency_key, body_sha256, n_measurements FROM job")
    by_key: dict[str, list[int]] = {}
    for job_id, key, _, _ in rows:
        by_key.setdefault(key, []).append(int(job_id))
    for key, job_id in result.acked.items():
        ids = by_key.get(key, [])
        if ids != [job_id]:
            problems.append(f"acknowledged {key} (job {job_id}) is stored as {ids or 'nothing'}")
    doubled = [(d, n) for d, n in Counter(row[2] for row in rows).items() if n > 1]
    problems += [f"body {d[:12]}… stored {n} times" for d, n in doubled[:10]]
    problems += [f"malformed {key} stored" for key in result.malformed if key in by_key]
    job_ids = {int(row[0]): int(row[3]) for row in rows}
    points: dict[str, int] = {}
    if deployment.influx is not None:
        for package in workload.packages:
            problems += _check_package(deployment, workload, package, job_ids, points)
    else:
        problems += _check_embedded(url, job_ids, points)
    return Verification(len(result.acked), len(rows), points, waited_s, problems)


def _check_package(
    deployment: Deployment,
    workload: Workload,
    package: str,
    job_ids: Mapping[int, int],
    points: dict[str, int],
) -> list[str]:
    assert deployment.influx is not None
    influx, db = deployment.influx, deployment.influx_database
    series = influx.query(db, f'SELECT "job_id" FROM "{package}"')
    seen = Counter(int(row[1]) for s in series for row in s["values"])
    points[package] = sum(seen.values())
    problems = [f"{package}: job {j} is {n} points" for j, n in seen.items() if n > 1][:10]
    problems += [f"{package}: no point of job {j}" for j in job_ids if j not in seen][:10]
    problems += [f"{package}: point of job {j}, not in SQL" for j in seen if j not in job_ids][:10]
    counted = influx.query(db, f'SELECT COUNT(*) FROM "{package}"')
    counts = (
        dict(zip(counted[0]["columns"], counted[0]["values"][0], strict=True)) if counted else {}
    )
    metrics = ["PA1"] if package == "al" else workload.metrics[package]
    short = [m for m in metrics if counts.get(f"count_{m}") != points[package]]
    if short:
        problems.append(
            f"{package}: {len(short)} fields not in every one of its {points[package]} points "
            f"(e.g. {short[0]}: {counts.get(f'count_{short[0]}')})"
        )
    return problems


def _check_embedded(url: str, job_ids: Mapping[int, int], points: dict[str, int]) -> list[str]:
    per_job = dict(sql_rows(url, "SELECT job_id, COUNT(*) FROM series_point GROUP BY job_id"))
    doubled = sql_rows(
        url,
        "SELECT job_id, package, metric, COUNT(*) FROM series_point "
        "GROUP BY job_id, package, metric HAVING COUNT(*) > 1",
    )
    points["series_point"] = sum(int(n) for n in per_job.values())
    problems = [f"job {j} {p}.{m} is {n} points" for j, p, m, n in doubled[:10]]
    problems += [
        f"job {j}: {per_job.get(j, 0)} of its {n} measurements in the series store"
        for j, n in job_ids.items()
        if per_job.get(j, 0) != n
    ][:10]
    problems += [f"points of job {j}, not in SQL" for j in per_job if j not in job_ids][:10]
    return problems


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Callable[[str], None]]:
    """A tmpfs of ``size`` at ``path`` (root only); yields ``resize(size)``.  Unmounted after."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise MountError(f"mount -t tmpfs failed: {done.stderr.strip() or done.returncode}")

    def resize(new_size: str) -> None:
        subprocess.run(
            ["mount", "-o", f"remount,size={new_size}", str(path)], check=True, capture_output=True
        )

    try:
        yield resize
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)
