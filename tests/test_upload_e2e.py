"""`specwatch upload` against a real `specwatch serve`: nothing lost, nothing doubled, gated.

The server is a real process on a SQLite file; it is killed (SIGKILL) in the middle of an
upload and brought back on the same port, and every job is then stored exactly once.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import lsst_data
from served import SPECWATCH, ServedSpecwatch, run_cli

METRICS = [{"name": "e2e.latency", "unit": "ms", "description": "Request latency."}]
SPECS = [
    {
        "name": "e2e.latency.minimum",
        "threshold": {"value": 200.0, "unit": "ms", "operator": "<="},
        "tags": ["minimum"],
    },
    {
        "name": "e2e.latency.design",
        "threshold": {"value": 100.0, "unit": "ms", "operator": "<="},
        "tags": ["design"],
    },
    {
        "name": "e2e.latency.stretch",
        "threshold": {"value": 50.0, "unit": "ms", "operator": "<="},
        "tags": ["stretch"],
    },
]


def latency_job(value_ms: float, commit: str, branch: str = "main", **meta: Any) -> dict[str, Any]:
    return {
        "measurements": [{"metric": "e2e.latency", "value": value_ms, "unit": "ms"}],
        "metrics": METRICS,
        "specs": SPECS,
        "meta": {"commit": commit, "branch": branch, "dataset": "e2e-set", **meta},
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedSpecwatch]:
    server = ServedSpecwatch(tmp_path_factory.mktemp("served"), SPECWATCH_DETECT_ON_INGEST="false")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def token(served: ServedSpecwatch) -> str:
    return served.token("write:jobs", "write:definitions")


def jobs_by_commit(served: ServedSpecwatch) -> Counter[str]:
    listed = served.get("/api/v1/jobs", limit=1000).json()["jobs"]
    return Counter(job["commit"] for job in listed)


def write(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document))
    return path


def test_the_real_lsst_job_with_its_github_context(
    served: ServedSpecwatch, token: str, tmp_path: Path
) -> None:
    job = lsst_data("squash", "verify_job.json")
    event = write(
        tmp_path / "event.json",
        {
            "number": 42,
            "pull_request": {
                "number": 42,
                "html_url": "https://github.com/lsst/verify/pull/42",
                "head": {
                    "sha": "a" * 40,
                    "ref": "tickets/DM-1",
                    "repo": {"full_name": "lsst/verify"},
                },
                "base": {"sha": "b" * 40, "ref": "main", "repo": {"full_name": "lsst/verify"}},
            },
        },
    )
    github = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "lsst/verify",
        "GITHUB_SHA": "c" * 40,  # the merge commit: the PR's head is in the event
        "GITHUB_REF": "refs/pull/42/merge",
        "GITHUB_HEAD_REF": "tickets/DM-1",
        "GITHUB_BASE_REF": "main",
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_RUN_ID": "987",
        "GITHUB_RUN_ATTEMPT": "1",
    }
    done = run_cli(["upload", str(job), "--server", served.url, "--token", token], tmp_path, github)
    assert done.returncode == 0, done.stderr
    assert "(stored, 30 measurements)" in done.stderr
    job_id = int(done.stderr.split("→ job ")[1].split()[0])
    stored = served.get(f"/api/v1/jobs/{job_id}").json()
    assert stored["commit"] == "a" * 40
    assert stored["pr"] == 42
    assert stored["branch"] == "tickets/DM-1"
    assert stored["build_url"] == "https://github.com/lsst/verify/actions/runs/987/attempts/1"
    assert stored["filter"] == "r"  # the job's own meta (filter_name)
    assert len(stored["measurements"]) == 30

    again = run_cli(
        ["upload", str(job), "--server", served.url, "--token", token], tmp_path, github
    )
    assert again.returncode == 0, again.stderr
    assert f"→ job {job_id} (already stored" in again.stderr
    assert jobs_by_commit(served)["a" * 40] == 1


def test_a_server_killed_mid_upload_loses_and_doubles_nothing(
    served: ServedSpecwatch, token: str, tmp_path: Path
) -> None:
    big = [{"metric": "e2e.latency", "value": 50.0 + i % 7, "unit": "ms"} for i in range(4000)]
    folder = tmp_path / "jobs"
    folder.mkdir()
    commits = [f"kill{i:03d}" for i in range(120)]
    for i, commit in enumerate(commits):
        document = latency_job(60.0, commit, time=f"2026-11-01T{i // 60:02d}:{i % 60:02d}:00Z")
        document["measurements"] = copy.deepcopy(big)
        write(folder / f"{commit}.json", document)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    command = [str(SPECWATCH), "upload", str(folder), "--server", served.url, "--token", token]
    upload = subprocess.Popen(
        [*command, "--retry-for", "2", "--no-context"],
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    assert upload.stderr is not None
    stderr = upload.stderr
    reader = threading.Thread(target=lambda: lines.extend(iter(stderr.readline, "")))
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while sum(line.startswith("uploaded ") for line in lines) < 3:
            assert time.monotonic() < deadline and upload.poll() is None, lines
            time.sleep(0.01)
        served.kill()  # the upload has more than 100 jobs still to send
        time.sleep(2)
        assert upload.poll() is None  # still retrying
        served.start()
        upload.wait(timeout=180)
    finally:
        if upload.poll() is None:
            upload.kill()
        reader.join(timeout=10)
        if served.process is None:
            served.start()
    err = "".join(lines)
    assert upload.returncode == 0, err
    assert "retrying in" in err
    counts = jobs_by_commit(served)
    assert {c: counts[c] for c in commits} == dict.fromkeys(commits, 1)


def test_unreachable_then_spooled_then_sent(
    served: ServedSpecwatch, token: str, tmp_path: Path
) -> None:
    job = write(tmp_path / "job.json", latency_job(40.0, "spooled-1"))
    served.stop()
    try:
        done = run_cli(
            ["upload", str(job), "--server", served.url, "--token", token, "--retry-for", "0.02"],
            tmp_path,
        )
    finally:
        served.start()
    assert done.returncode == 3, done.stderr
    assert jobs_by_commit(served)["spooled-1"] == 0
    sent = run_cli(["upload", "--spooled", "--server", served.url, "--token", token], tmp_path)
    assert sent.returncode == 0, sent.stderr
    assert jobs_by_commit(served)["spooled-1"] == 1
    empty = run_cli(["upload", "--spooled", "--server", served.url, "--token", token], tmp_path)
    assert (empty.returncode, "is empty" in empty.stderr) == (0, True)


@pytest.mark.parametrize(
    ("value_ms", "fail_on", "code"),
    [
        (80.0, "design", 0),  # meets design, misses stretch
        (80.0, "stretch", 1),
        (150.0, "design", 1),  # misses design, meets minimum
        (150.0, "minimum", 0),
        (250.0, "minimum", 1),
    ],
)
def test_gate_on_specification_levels(
    served: ServedSpecwatch, token: str, tmp_path: Path, value_ms: float, fail_on: str, code: int
) -> None:
    job = write(tmp_path / "job.json", latency_job(value_ms, f"gate-{value_ms}-{fail_on}"))
    summary = tmp_path / "summary.md"
    done = run_cli(
        ["upload", str(job), "--server", served.url, "--token", token, "--fail-on", fail_on],
        tmp_path,
        {"GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert done.returncode == code, done.stdout + done.stderr
    if code:
        assert "Failed specifications" in done.stdout
        assert f"{value_ms:g} ms" in done.stdout
        assert "gate failed" in done.stderr
        assert f"| {value_ms:g} ms |" in summary.read_text()
    else:
        assert f"gate passed (--fail-on {fail_on})" in done.stdout
        assert "gate passed" in summary.read_text()


def test_gate_on_a_pr_regression(served: ServedSpecwatch, token: str, tmp_path: Path) -> None:
    folder = tmp_path / "main"
    folder.mkdir()
    for i, value in enumerate([30.0, 30.4, 29.8, 30.1, 30.3, 29.9, 30.2, 30.0]):
        write(
            folder / f"{i}.json",
            latency_job(value, f"base{i}", dataset="reg-set", time=f"2026-10-0{i + 1}T00:00:00Z"),
        )
    assert (
        run_cli(
            ["upload", str(folder), "--server", served.url, "--token", token], tmp_path
        ).returncode
        == 0
    )
    pr: dict[str, Any] = {
        "branch": "feature",
        "pr": 5,
        "dataset": "reg-set",
        "time": "2026-10-20T00:00:00Z",
    }
    worse = write(tmp_path / "worse.json", latency_job(45.0, "pr-worse", **pr))
    same = write(tmp_path / "same.json", latency_job(30.1, "pr-same", **pr))
    failed = run_cli(
        ["upload", str(worse), "--server", served.url, "--token", token, "--fail-on", "regression"],
        tmp_path,
    )
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "Regressions against the baseline" in failed.stdout
    assert "e2e.latency" in failed.stdout and "+14.9 ms" in failed.stdout and "%" in failed.stdout
    passed = run_cli(
        ["upload", str(same), "--server", served.url, "--token", token, "--fail-on", "regression"],
        tmp_path,
    )
    assert passed.returncode == 0, passed.stdout + passed.stderr


SHA = "0123456789abcdef0123456789abcdef01234567"
CI_BUILDS: dict[str, tuple[dict[str, str], dict[str, Any]]] = {
    "gitlab": (
        {
            "GITLAB_CI": "true",
            "CI_PROJECT_URL": "https://gitlab.example.org/lsst/pipe_tasks",
            "CI_COMMIT_SHA": SHA,
            "CI_COMMIT_REF_NAME": "tickets/DM-7",
            "CI_MERGE_REQUEST_IID": "17",
            "CI_MERGE_REQUEST_PROJECT_URL": "https://gitlab.example.org/lsst/pipe_tasks",
            "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "tickets/DM-7",
            "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
            "CI_PIPELINE_ID": "5550",
            "CI_PIPELINE_URL": "https://gitlab.example.org/lsst/pipe_tasks/-/pipelines/5550",
            "CI_PIPELINE_CREATED_AT": "2026-11-30T10:00:00Z",
        },
        {
            "repository": "https://gitlab.example.org/lsst/pipe_tasks",
            "branch": "tickets/DM-7",
            "pr": 17,
            "pr_url": "https://gitlab.example.org/lsst/pipe_tasks/-/merge_requests/17",
            "build_url": "https://gitlab.example.org/lsst/pipe_tasks/-/pipelines/5550",
            "time": "2026-11-30T10:00:00Z",
        },
    ),
    "jenkins": (
        {
            "JENKINS_URL": "https://ci.lsst.codes/",
            "JOB_NAME": "sqre/validate_drp",
            "BUILD_ID": "1234",
            "BUILD_URL": "https://ci.lsst.codes/job/sqre/job/validate_drp/1234/",
            "PRODUCT": "validate_drp",
            "dataset": "validation_data_cfht",
            "GIT_COMMIT": SHA,
            "GIT_BRANCH": "origin/tickets/DM-12345",
            "GIT_URL": "git@github.com:lsst/validate_drp.git",
        },
        {
            "repository": "https://github.com/lsst/validate_drp",
            "branch": "tickets/DM-12345",
            "pr": None,
            "build_url": "https://ci.lsst.codes/job/sqre/job/validate_drp/1234/",
            "ci_name": "validate_drp",
            "ci_id": "1234",
        },
    ),
    "buildkite": (
        {
            "BUILDKITE": "true",
            "BUILDKITE_REPO": "git@github.com:lsst/pipe_tasks.git",
            "BUILDKITE_COMMIT": SHA,
            "BUILDKITE_BRANCH": "tickets/DM-9",
            "BUILDKITE_PULL_REQUEST": "42",
            "BUILDKITE_PULL_REQUEST_BASE_BRANCH": "main",
            "BUILDKITE_BUILD_ID": "0190f0e4-8a1c-4b6e-9a7e-3c1b2a9d5e11",
            "BUILDKITE_BUILD_NUMBER": "812",
            "BUILDKITE_BUILD_URL": "https://buildkite.com/lsst/pipe-tasks/builds/812",
            "BUILDKITE_PIPELINE_SLUG": "pipe-tasks",
        },
        {
            "repository": "https://github.com/lsst/pipe_tasks",
            "branch": "tickets/DM-9",
            "pr": 42,
            "pr_url": "https://github.com/lsst/pipe_tasks/pull/42",
            "build_url": "https://buildkite.com/lsst/pipe-tasks/builds/812",
        },
    ),
}


@pytest.mark.parametrize("ci", sorted(CI_BUILDS))
def test_each_ci_systems_context_reaches_the_stored_job(
    served: ServedSpecwatch, token: str, tmp_path: Path, ci: str
) -> None:
    env, expected = CI_BUILDS[ci]
    document = latency_job(42.0, "overridden")
    del document["meta"]["commit"], document["meta"]["branch"]
    job = write(tmp_path / "job.json", document)
    shown = run_cli(["context", "--json"], tmp_path, env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["commit"] == SHA
    done = run_cli(["upload", str(job), "--server", served.url, "--token", token], tmp_path, env)
    assert done.returncode == 0, done.stderr
    job_id = int(done.stderr.split("→ job ")[1].split()[0])
    stored = served.get(f"/api/v1/jobs/{job_id}").json()
    assert stored["commit"] == SHA
    for key, value in expected.items():
        if key == "time":
            assert stored[key].startswith(value.removesuffix("Z")), (key, stored[key])
        else:
            assert stored[key] == value, (key, stored[key])


def test_collect_catalog_uploads_faros_kpms(
    served: ServedSpecwatch, token: str, tmp_path: Path
) -> None:
    catalog = lsst_data("faro", "matchedCatalogTract_0_i.fits.gz")
    served.cli("definitions", "import", str(lsst_data("verify_metrics")), "--no-retire")
    selection = ["--dataset", "ci_hsc", "--filter", "i", "--instrument", "HSC"]
    upload = ["--upload", "--server", served.url, "--token", token, "--meta", "commit=faro-1"]
    command = ["collect", "catalog", str(catalog), *selection, "--min-phot-repeat", "10"]
    done = run_cli([*command, *upload], tmp_path)
    assert done.returncode == 0, done.stderr
    job_id = int(done.stderr.split("→ job ")[1].split()[0])
    stored = served.get(f"/api/v1/jobs/{job_id}").json()
    values = {m["metric"]: m for m in stored["measurements"]}
    assert round(values["validate_drp.PA1"]["value"], 7) == 6.8097958
    assert values["validate_drp.PA1"]["unit"] == "mmag"
    assert values["validate_drp.AM1"]["value"] == pytest.approx(7.142131192256279, rel=1e-12)
    assert (stored["dataset"], stored["filter"], stored["instrument"]) == ("ci_hsc", "i", "HSC")
    blobs = {blob["name"] for blob in stored["blobs"]}
    assert {"PA1", "AM1"} <= blobs


def test_benchmark_results_are_imported_and_uploaded(
    served: ServedSpecwatch, token: str, tmp_path: Path
) -> None:
    from test_importers import make_asv_results, pytest_benchmark_file

    results = make_asv_results(tmp_path)
    upload = ["--upload", "--server", served.url, "--token", token]
    asv = run_cli(["collect", "asv", str(results), *upload], tmp_path)
    assert asv.returncode == 0, asv.stderr
    assert asv.stderr.count("(stored, ") == 2  # one job per commit
    bench = pytest_benchmark_file(tmp_path / "bench.json", commit_id="e2e0" * 10)
    imported = run_cli(["collect", "pytest-benchmark", str(bench), *upload], tmp_path)
    assert imported.returncode == 0, imported.stderr
    job_id = int(imported.stderr.split("→ job ")[1].split()[0])
    stored = served.get(f"/api/v1/jobs/{job_id}").json()
    assert stored["commit"] == "e2e0" * 10
    metric = stored["measurements"][0]["metric"]
    definition = served.get(f"/api/v1/metrics/{metric}").json()
    assert (definition["unit"], definition["direction"]) == ("s", "lower")
    again = run_cli(["collect", "asv", str(results), *upload], tmp_path)
    assert again.stderr.count("(already stored") == 2, again.stderr
