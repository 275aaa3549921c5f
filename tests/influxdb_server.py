"""A real ``influxd`` (InfluxDB 1.x) on a temp dir and free loopback ports, for tests/benchmarks.

::

    with InfluxDBServer() as server:
        store = InfluxDBSeriesStore(server.url, "specwatch")
        ...
        server.stop()   # data stays in server.data_dir
        server.start()  # same data dir, same port

Blocking (subprocess, polling with ``time.sleep``): call it from sync fixtures, never from
``async def``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
_LOG_TAIL_CHARS = 3000


def ensure_influxd() -> str:
    """Return the ``influxd`` path, installing Debian's ``influxdb`` package if it is missing."""
    path = shutil.which("influxd")
    if path is not None:
        return path
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        raise RuntimeError("influxd is not installed and apt-get is not available")
    for argv in ([apt_get, "update"], [apt_get, "install", "-y", "influxdb"]):
        process = _spawn(argv, stdout=subprocess.PIPE)
        output, _ = process.communicate()
        if process.returncode != 0:
            tail = output.decode(errors="replace")[-_LOG_TAIL_CHARS:]
            raise RuntimeError(f"{' '.join(argv)} failed ({process.returncode}):\n{tail}")
    path = shutil.which("influxd") or shutil.which("influxd", path="/usr/bin:/usr/sbin")
    if path is None:
        raise RuntimeError("apt-get install influxdb did not provide influxd")
    return path


def _spawn(argv: list[str], stdout: IO[bytes] | int) -> subprocess.Popen[bytes]:
    # The one place that starts processes: argv lists built here, never a shell or user input.
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.STDOUT, env=env
    )


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    """Whether something listens on the loopback ``port`` (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def _config(base: Path, http_port: int, rpc_port: int) -> str:
    return f"""\
reporting-enabled = false
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{base / "meta"}"
  logging-enabled = false

[data]
  dir = "{base / "data"}"
  wal-dir = "{base / "wal"}"
  wal-fsync-delay = "0s"
  query-log-enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false
  log-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = false
  log-enabled = false
  pprof-enabled = false

[logging]
  level = "warn"
  suppress-logo = true
"""


class InfluxDBServer:
    """One ``influxd`` process with its own config, data dir and ports.

    ``stop()`` keeps the data dir; ``start()`` again serves the same data on the same port.
    ``cleanup()`` (or leaving the context manager) stops it and removes the temp dir.
    """

    def __init__(self, influxd: str | None = None) -> None:
        self.influxd = influxd or ensure_influxd()
        self.base_dir = Path(tempfile.mkdtemp(prefix="specwatch-influxd-"))
        self.data_dir = self.base_dir
        self.http_port = free_port()
        self.rpc_port = free_port()
        while self.rpc_port == self.http_port:
            self.rpc_port = free_port()
        self.config_path = self.base_dir / "influxdb.conf"
        self.config_path.write_text(_config(self.base_dir, self.http_port, self.rpc_port))
        self.log_path = self.base_dir / "influxd.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start ``influxd`` and wait until ``/ping`` answers 204.

        Raises ``RuntimeError`` with the tail of influxd's log if it exits or times out.
        """
        if self.running:
            return
        # Else another server on our port would answer the pings below for us.
        for port in (self.http_port, self.rpc_port):
            if port_in_use(port):
                raise RuntimeError(f"cannot start influxd: port {port} is already in use")
        with self.log_path.open("ab") as log:
            self._process = _spawn([self.influxd, "-config", str(self.config_path)], log)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise RuntimeError(f"influxd exited with code {code}:\n{self.log_tail()}")
            if self._ping():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"influxd did not answer /ping at {self.url} within {timeout_s} s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Stop ``influxd`` (SIGTERM, then SIGKILL); the data dir is kept."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def cleanup(self) -> None:
        """Stop ``influxd`` and remove its temp dir."""
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-_LOG_TAIL_CHARS:]
        except FileNotFoundError:
            return "(no log)"

    def _ping(self) -> bool:
        try:
            return httpx.get(f"{self.url}/ping", timeout=1.0).status_code == 204
        except httpx.HTTPError:
            return False

    def __enter__(self) -> InfluxDBServer:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.cleanup()
