"""The specwatch command line, run in process with click's runner, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from conftest import empty_postgres_database, lsst_data
from influxdb_server import free_port

from specwatch.cli import main
from specwatch.services.demo_history import demo_definition_files, demo_events


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a CLI run, on a new empty database."""
    with contextlib.ExitStack() as stack:
        url = (
            stack.enter_context(empty_postgres_database())
            if request.param == "postgresql"
            else f"sqlite:///{tmp_path / 'cli.sqlite3'}"
        )
        yield {"SPECWATCH_DATABASE_URL": url, "SPECWATCH_LOG_LEVEL": "WARNING"}


def run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_serve_refuses_an_unmigrated_database_with_one_line(env: dict[str, str]) -> None:
    result = run(env, "serve", "--port", "0")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("specwatch: error: the database is at migration none")
    assert "specwatch db upgrade" in lines[0]


def test_db_upgrade_then_check(env: dict[str, str]) -> None:
    assert run(env, "db", "check").exit_code == 1
    upgraded = run(env, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert run(env, "db", "check").exit_code == 0


def test_token_create_list_revoke(env: dict[str, str]) -> None:
    run(env, "db", "upgrade")
    created = run(
        env,
        "token",
        "create",
        "--scope",
        "write:jobs",
        "--package",
        "validate_drp",
        "--expires",
        "90d",
        "--name",
        "ci",
    )
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[0]
    assert token.startswith("sw_")
    key = token.split("_")[1]
    listing = run(env, "token", "list")
    assert key in listing.output
    assert "active" in listing.output
    assert "packages=validate_drp" in listing.output
    assert token.split("_", 2)[2] not in listing.output  # the secret is never shown again
    assert run(env, "token", "revoke", key).exit_code == 0
    assert "revoked" in run(env, "token", "list").output
    again = run(env, "token", "revoke", key)
    assert again.exit_code == 2
    assert "no active token" in again.output


def test_token_create_rejects_bad_input_with_one_line(env: dict[str, str]) -> None:
    run(env, "db", "upgrade")
    bad_scope = run(env, "token", "create", "--scope", "admin")
    assert bad_scope.exit_code == 2
    assert "scope(s) admin unknown" in bad_scope.output
    bad_expiry = run(env, "token", "create", "--scope", "read", "--expires", "soon")
    assert bad_expiry.exit_code == 2
    assert "duration 'soon'" in bad_expiry.output


def test_definitions_import_of_lsst_verify_metrics(env: dict[str, str]) -> None:
    tree = lsst_data("verify_metrics")
    run(env, "db", "upgrade")
    first = run(env, "definitions", "import", str(tree))
    assert first.exit_code == 0, first.output
    assert first.output.startswith("metrics: 1032 added, 0 updated, 0 unchanged; specs: 1705 added")
    second = run(env, "definitions", "import", str(tree))
    assert "metrics: 0 added, 0 updated, 1032 unchanged;" in second.output
    assert "specs: 0 added, 0 updated, 1705 unchanged, 0 retired" in second.output


def test_definitions_import_of_a_folder_that_is_not_a_tree(
    env: dict[str, str], tmp_path: Path
) -> None:
    run(env, "db", "upgrade")
    result = run(env, "definitions", "import", str(tmp_path))
    assert result.exit_code == 2
    assert "holds neither metrics/ nor specs/" in result.output


def test_demo_is_idempotent(env: dict[str, str], tmp_path: Path) -> None:
    run(env, "db", "upgrade")
    first = run(env, "demo")
    assert first.exit_code == 0, first.output
    assert "jobs created, 0 already there" in first.output
    created = int(first.output.split(" jobs created")[0].rsplit(" ", 1)[1])
    assert created >= 600
    # The demo's injected steps, and nothing else (not its drift, outliers or gaps), come out
    # as change points at once.
    steps = [e for e in demo_events() if e.kind == "step"]
    assert len(steps) == 8
    assert first.output.rstrip().endswith("; 8 change points")
    second = run(env, "demo")
    assert f"0 jobs created, {created} already there; 8 change points" in second.output
    # Every main series of both datasets.
    detected = run(env, "detect", "--all")
    assert detected.exit_code == 0, detected.output
    assert detected.output.strip() == "detect: 56 series, 8 change points"  # 28 metrics × 2
    # A metric whose better direction changes has its series (one per dataset) re-detected.
    tree = tmp_path / "defs"
    for name, text in demo_definition_files().items():
        if name.startswith("metrics/"):
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            if name == "metrics/validate_drp.yaml":
                text = text.replace("\nPA1:\n", "\nPA1:\n  direction: higher\n", 1)
            (tree / name).write_text(text)
    imported = run(env, "definitions", "import", "--no-retire", str(tree))
    assert imported.exit_code == 0, imported.output
    assert imported.output.rstrip().endswith("; 2 series re-detected"), imported.output


def test_help_on_every_command(env: dict[str, str]) -> None:
    for args in (
        ["--help"],
        ["serve", "--help"],
        ["db", "upgrade", "--help"],
        ["token", "create", "--help"],
        ["definitions", "import", "--help"],
        ["demo", "--help"],
    ):
        result = run(env, *args)
        assert result.exit_code == 0
        assert "Usage:" in result.output


def test_serve_answers_until_stopped(env: dict[str, str]) -> None:
    """The real server process: uvicorn, the app factory, the lifespan, one request."""
    run(env, "db", "upgrade")
    port = free_port()
    command = [str(Path(sys.executable).with_name("specwatch")), "serve", "--port", str(port)]
    server = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        assert health.status_code == 200
        assert health.json()["series_store"] == "embedded"
        assert health.headers["x-request-id"]
        # The same process serves the dashboard, where / leads.
        root = httpx.get(f"http://127.0.0.1:{port}/", follow_redirects=True, timeout=10)
        assert root.status_code == 200 and str(root.url).endswith("/dashboard/")
        assert "_dash-config" in root.text
    finally:
        server.send_signal(signal.SIGINT)
        output = server.communicate(timeout=30)[0].decode()
    assert server.returncode == 0, output
    assert f"http://127.0.0.1:{port}/dashboard/" in output


def test_requirements_import_and_report(env: dict[str, str], tmp_path: Path) -> None:
    run(env, "db", "upgrade")
    matrix = tmp_path / "matrix.csv"
    matrix.write_text("id,title,method,specs\nDMS-REQ-0029,Photometry,Test,validate_drp.PA1.*\n")
    imported = run(env, "requirements", "import", str(matrix))
    assert imported.output.strip() == "requirements: 1 added, 0 updated, 0 unchanged"
    bad = tmp_path / "bad.csv"
    bad.write_text("id,title,method,specs\nDMS-REQ-1,x,Guess,\n")
    refused = run(env, "requirements", "import", str(bad))
    assert refused.exit_code == 2
    assert "method 'Guess' is not one of" in refused.output
    report = run(env, "report", "--dataset", "HSC-RC2")
    assert report.exit_code == 0, report.output
    assert "No build of this dataset and branch yet." in report.output
    assert "| DMS-REQ-0029 | Photometry | Test | — |" in report.output
    output = tmp_path / "report.html"
    assert (
        run(
            env, "report", "--dataset", "HSC-RC2", "--format", "html", "--output", str(output)
        ).exit_code
        == 0
    )
    assert output.read_text().startswith("<!doctype html>")


def test_detect_stdin_contract(env: dict[str, str]) -> None:
    values = [10.0] * 15 + [None] + [13.0] * 15
    result = CliRunner().invoke(
        main, ["detect", "--stdin"], env=env, input=json.dumps({"values": values})
    )
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"change_points": [16]}
    bad = CliRunner().invoke(main, ["detect", "--stdin"], env=env, input="[1, 2]")
    assert bad.exit_code == 2
    assert run(env, "detect").exit_code == 2
