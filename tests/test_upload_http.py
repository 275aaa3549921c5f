"""`specwatch upload` against a scripted receiver: what is retried, what is not, and when.

The CLI runs as a user runs it (a subprocess); the receiver records every request whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from receiver import Answer, created, receiver
from served import run_cli as run

from specwatch.collectors.client import BACKOFF_MAX_S, Deadline, SpecwatchClient
from specwatch.collectors.errors import RefusedError, UnreachableError
from specwatch.retry_after import retry_after_s

JOB = {
    "measurements": [{"metric": "demo.latency", "value": 12.5, "unit": "ms"}],
    "meta": {"commit": "abc123", "branch": "main"},
}


def write_job(path: Path, document: object = JOB) -> Path:
    path.write_text(json.dumps(document))
    return path


def test_a_job_is_sent_once_with_its_idempotency_key(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job.json")
    with receiver(created(7)) as server:
        done = run(["upload", str(job), "--server", server.url, "--token", "t0k"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "job 7 (stored, 1 measurements)" in done.stderr
    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/api/v1/jobs")
    assert request.headers["Authorization"] == "Bearer t0k"
    assert (
        request.headers["Idempotency-Key"] == "sha256:" + hashlib.sha256(request.body).hexdigest()
    )
    sent = request.json()
    assert sent["measurements"] == JOB["measurements"]
    assert sent["meta"]["commit"] == "abc123"


def test_a_refusal_is_not_retried_and_says_why(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job.json")
    problem = {
        "title": "Unprocessable",
        "detail": "metric demo.latency: unit 'kg' cannot be converted to 'ms'",
    }
    with receiver(default=Answer(422, problem)) as server:
        done = run(["upload", str(job), "--server", server.url], tmp_path)
    assert done.returncode == 2
    assert len(server.requests) == 1
    assert "unit 'kg' cannot be converted to 'ms'" in done.stderr
    assert not (tmp_path / "cache" / "specwatch" / "spool").exists()


@pytest.mark.parametrize("status", [401, 403, 404, 409, 413])
def test_other_client_errors_fail_at_once(tmp_path: Path, status: int) -> None:
    job = write_job(tmp_path / "job.json")
    with receiver(default=Answer(status, {"detail": f"no ({status})"})) as server:
        done = run(["upload", str(job), "--server", server.url], tmp_path)
    assert (done.returncode, len(server.requests)) == (2, 1)
    assert f"{status} no ({status})" in done.stderr


def test_429_waits_as_long_as_retry_after_says(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job.json")
    with receiver(Answer(429, {"detail": "slow down"}, {"Retry-After": "2"})) as server:
        done = run(["upload", str(job), "--server", server.url], tmp_path)
    assert done.returncode == 0, done.stderr
    first, second = server.requests
    assert second.at - first.at >= 2.0
    assert "retrying in 2.0 s: 429 slow down" in done.stderr


def test_5xx_and_408_are_retried_with_the_same_body_and_key(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job.json")
    answers = (Answer(503, {}), Answer(502, {}), Answer(408, {}), created(3))
    with receiver(*answers) as server:
        done = run(["upload", str(job), "--server", server.url], tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(server.requests) == 4
    assert len({r.body for r in server.requests}) == 1
    assert len({r.headers["Idempotency-Key"] for r in server.requests}) == 1


def test_unreachable_spools_and_exits_3(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job.json")
    with receiver() as server:
        url = server.url  # then closed: nothing listens there any more
    started = time.monotonic()
    done = run(["upload", str(job), "--server", url, "--retry-for", "0.03"], tmp_path)
    assert done.returncode == 3, done.stderr
    assert time.monotonic() - started < 30
    spool = tmp_path / "cache" / "specwatch" / "spool"
    [kept] = [p for p in spool.glob("*.json") if not p.name.endswith(".meta.json")]
    spooled = kept.read_bytes()
    assert json.loads(spooled)["measurements"] == JOB["measurements"]
    assert "1 job(s) spooled in" in done.stderr and "upload --spooled" in done.stderr
    assert done.stderr.count("\n") <= 8  # a few retry lines, then one error line

    with receiver(created(11)) as server:
        again = run(["upload", "--spooled", "--server", server.url], tmp_path)
    assert again.returncode == 0, again.stderr
    [request] = server.requests
    assert request.body == spooled  # the very bytes, so the same idempotency key
    assert not list(spool.glob("*.json"))
    assert request.headers["Idempotency-Key"].endswith(kept.stem)


def test_no_spool_still_exits_3(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job.json")
    with receiver() as server:
        url = server.url
    done = run(["upload", str(job), "--server", url, "--retry-for", "0", "--no-spool"], tmp_path)
    assert done.returncode == 3
    assert "nothing spooled (--no-spool)" in done.stderr
    assert not (tmp_path / "cache").exists()


def test_a_bad_file_fails_before_anything_is_sent(tmp_path: Path) -> None:
    good = write_job(tmp_path / "a.json")
    bad = tmp_path / "b.json"
    bad.write_text('{"measurements": [')
    with receiver() as server:
        done = run(["upload", str(good), str(bad), "--server", server.url], tmp_path)
    assert done.returncode == 2
    assert server.requests == []
    assert done.stderr.startswith(f"specwatch: error: {bad}: not JSON")
    assert done.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([1, 2], "not a job: the document is not a JSON object"),
        ({"meta": {}}, "not an lsst.verify job: no 'measurements' list"),
        ({"measurements": [], "meta": [1]}, "'meta' is not an object"),
    ],
)
def test_documents_that_are_not_jobs(tmp_path: Path, document: object, message: str) -> None:
    job = write_job(tmp_path / "job.json", document)
    done = run(["upload", str(job), "--server", "http://127.0.0.1:9"], tmp_path)
    assert (done.returncode, done.stderr.strip()) == (2, f"specwatch: error: {job}: {message}")


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run(["upload"], tmp_path).returncode == 2
    assert run(["upload", str(tmp_path / "missing.json")], tmp_path).returncode == 2
    no_server = run(["upload", str(write_job(tmp_path / "j.json"))], tmp_path)
    assert no_server.returncode == 2
    assert "give --server URL or set SPECWATCH_SERVER" in no_server.stderr
    bad_url = run(["upload", str(tmp_path / "j.json"), "--server", "ftp://x"], tmp_path)
    assert (bad_url.returncode, "is not an http:// or https:// URL" in bad_url.stderr) == (2, True)


def test_server_and_token_from_the_environment(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job.json")
    with receiver() as server:
        done = run(
            ["upload", str(job)],
            tmp_path,
            {"SPECWATCH_SERVER": server.url, "SPECWATCH_TOKEN": "env-t"},
        )
    assert done.returncode == 0, done.stderr
    assert server.requests[0].headers["Authorization"] == "Bearer env-t"


def test_a_directory_sends_every_json_under_it(tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    (folder / "deeper").mkdir(parents=True)
    for i, where in enumerate(["a.json", "deeper/b.json", "c.json"]):
        write_job(folder / where, {**JOB, "meta": {"commit": f"c{i}"}})
    (folder / "notes.txt").write_text("not a job")
    with receiver() as server:
        done = run(["upload", str(folder), "--server", server.url], tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(r.json()["meta"]["commit"] for r in server.requests) == ["c0", "c1", "c2"]
    assert done.stderr.count("uploaded ") == 3  # one line per file when not a terminal


def test_dry_run_sends_nothing_and_shows_the_meta(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job.json")
    done = run(
        ["upload", str(job), "--dry-run", "--meta", "dataset=HSC-RC2", "--meta", "pr=12"],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "would send" in done.stdout and "1 measurements" in done.stdout
    meta = json.loads(done.stdout[done.stdout.index("{") :])
    assert meta["dataset"] == "HSC-RC2" and meta["pr"] == 12 and meta["commit"] == "abc123"


def test_quiet_prints_nothing_on_success(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job.json")
    with receiver() as server:
        done = run(["upload", str(job), "--server", server.url, "-q"], tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


# --- the client's schedule, in process ---------------------------------------------------------


def test_back_off_doubles_to_its_cap_then_gives_up_at_the_deadline() -> None:
    waits: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    with receiver(default=Answer(503, {"detail": "down"})) as server:
        client = SpecwatchClient(
            server.url,
            None,
            deadline=Deadline(120.0, clock=lambda: now[0]),
            sleep=sleep,
            jitter=lambda: 1.0,
        )
        with client, pytest.raises(UnreachableError, match="503 down"):
            client.post_job(b"{}")
    assert waits[:6] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    assert max(waits) == BACKOFF_MAX_S
    assert sum(waits) <= 120.0 < sum(waits) + BACKOFF_MAX_S
    assert len(server.requests) == len(waits) + 1


def never(seconds: float) -> None:
    raise AssertionError(f"slept {seconds} s")


def test_a_retry_after_past_the_deadline_gives_up_at_once() -> None:
    with receiver(default=Answer(429, {}, {"Retry-After": "3600"})) as server:
        client = SpecwatchClient(server.url, None, deadline=Deadline(60.0), sleep=never)
        with client, pytest.raises(UnreachableError, match="1 attempt"):
            client.post_job(b"{}")


def test_refused_carries_the_status() -> None:
    with receiver(default=Answer(403, {"detail": "token lacks write:jobs"})) as server:
        client = SpecwatchClient(server.url, "t", deadline=Deadline(60.0))
        with client, pytest.raises(RefusedError) as caught:
            client.post_job(b"{}")
    assert caught.value.status == 403
    assert "token lacks write:jobs" in str(caught.value)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("5", 5.0),
        ("0", 0.0),
        ("-3", 0.0),
        ("Wed, 02 Dec 2026 10:00:30 GMT", 30.0),
        ("soon", None),
        (None, None),
        ("nan", None),
    ],
)
def test_retry_after_values(header: str | None, seconds: float | None) -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)
    assert retry_after_s(header, now) == seconds


def test_on_a_terminal_a_progress_bar_then_one_summary_line(tmp_path: Path) -> None:
    import pty
    import subprocess

    from served import SPECWATCH

    for i in range(3):
        write_job(tmp_path / f"job{i}.json", {**JOB, "meta": {"commit": f"tty{i}"}})
    primary, secondary = pty.openpty()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TERM": "xterm", "COLUMNS": "120"}
    with receiver() as server:
        files = [str(tmp_path / f"job{i}.json") for i in range(3)]
        process = subprocess.Popen(
            [SPECWATCH, "upload", *files, "--server", server.url, "--no-context"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=secondary,
        )
        process.wait(timeout=60)
    os.close(secondary)
    shown = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the terminal's other end is closed: all read
            break
        if not chunk:
            break
        shown += chunk
    os.close(primary)
    text = shown.decode(errors="replace")
    assert process.returncode == 0, text
    assert "uploading 3 job(s)" in text  # rich's bar, drawn on the terminal
    assert "uploaded 3 job(s): 3 stored, 0 already stored" in text
    assert text.count("→ job") == 0  # no line per file under the bar
