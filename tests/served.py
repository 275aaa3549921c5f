"""A real ``specwatch serve`` process for tests that drive the product as users do.

It keeps its port and its database across ``kill()`` and ``start()``, so a test can take the
server away in the middle of an upload and bring it back.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

SPECWATCH = Path(sys.executable).with_name("specwatch")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ServedSpecwatch:
    """``specwatch serve`` on a SQLite file in ``folder``, on one port for its whole life."""

    def __init__(self, folder: Path, **settings: str) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "serve.log"
        self.env = {
            **os.environ,
            "SPECWATCH_DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
            "SPECWATCH_LOG_FORMAT": "json",
            **settings,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.cli("db", "upgrade")

    def cli(self, *args: str) -> str:
        """Run a server-side ``specwatch`` command on this database; its stdout."""
        done = subprocess.run(
            [SPECWATCH, *args], env=self.env, check=True, capture_output=True, text=True
        )
        return done.stdout

    def token(self, *scopes: str) -> str:
        arguments = [item for scope in scopes for item in ("--scope", scope)]
        return self.cli("token", "create", *arguments).strip()

    def start(self, timeout_s: float = 30.0, extra_args: Sequence[str] = ()) -> None:
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [SPECWATCH, "serve", "--host", "127.0.0.1", "--port", str(self.port), *extra_args],
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"specwatch serve did not start:\n{self.log.read_text()}")
            time.sleep(0.1)

    def kill(self) -> None:
        """Take the server away at once (SIGKILL: no graceful end of what it was doing)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
            self.process = None

    def get(self, path: str, **params: str | int) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params, timeout=10)


def run_cli(
    args: Sequence[str],
    home: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``specwatch ARGS`` as a CI step runs it: a clean environment (no CI variables of this
    machine), its own home and cache, in ``home`` (not a git checkout unless made one)."""
    clean = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / "cache"),
        **(env or {}),
    }
    return subprocess.run(
        [SPECWATCH, *args], env=clean, cwd=home, capture_output=True, text=True, timeout=timeout
    )
