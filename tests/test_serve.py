"""`specwatch serve` as operators run it: a real uvicorn process on a free port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

SPECWATCH = Path(sys.executable).with_name("specwatch")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A served SQLite database with JSON logs; yields its URL and its log file."""
    folder = tmp_path_factory.mktemp("serve")
    env = {
        **os.environ,
        "SPECWATCH_DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
        "SPECWATCH_LOG_FORMAT": "json",
    }
    subprocess.run([SPECWATCH, "db", "upgrade"], env=env, check=True, capture_output=True)
    port = _free_port()
    log = folder / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [SPECWATCH, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"specwatch serve did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield url, log
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_served_answers_announce_no_server_and_forbid_sniffing(server: tuple[str, Path]) -> None:
    url, _ = server
    for response in (httpx.get(f"{url}/healthz"), httpx.get(f"{url}/api/v1/nope")):
        assert "server" not in response.headers
        assert response.headers["x-content-type-options"] == "nosniff"


def test_served_requests_are_logged_once_as_json(server: tuple[str, Path]) -> None:
    url, log = server
    httpx.get(f"{url}/api/v1/metrics", headers={"X-Request-ID": "served-1"})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        mine = [entry for entry in lines if entry.get("request_id") == "served-1"]
        if mine:
            break
        time.sleep(0.1)
    (entry,) = mine
    assert entry["event"] == "request" and entry["status"] == 200
    assert entry["path"] == "/api/v1/metrics" and entry["method"] == "GET"
    assert "duration_ms" in entry
