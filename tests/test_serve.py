"""`specwatch serve` as operators run it: a real uvicorn process on a free port."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from served import ServedSpecwatch


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A served SQLite database with JSON logs; yields its URL and its log file."""
    served = ServedSpecwatch(tmp_path_factory.mktemp("serve"))
    served.start()
    try:
        yield served.url, served.log
    finally:
        served.stop()


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
