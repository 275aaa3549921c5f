"""The job page: pure helpers, the service on every stack, the page in a real browser."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from browser import Browser
from selenium.webdriver.remote.webelement import WebElement
from served import ServedSpecwatch

from specwatch.dashboard.pages.job import commit_url, parse_job_id
from specwatch.exceptions import InvalidInputError, NotFoundError
from specwatch.metrics.formatting import format_number
from specwatch.metrics.model import Direction
from specwatch.metrics.records import PackageVersion
from specwatch.services.builds import BuildService, change_of, package_versions
from specwatch.services.context import ProcessContext


def attr(element: WebElement, name: str) -> str:
    """An attribute of an element ("" when absent)."""
    return element.get_attribute(name) or ""


# --- pure helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delta", "direction", "expected"),
    [
        (0.5, Direction.LOWER, "worse"),
        (-0.5, Direction.LOWER, "better"),
        (0.5, Direction.HIGHER, "better"),
        (-0.5, Direction.HIGHER, "worse"),
        (0.5, Direction.NONE, "changed"),
        (0.0, Direction.HIGHER, "unchanged"),
        (None, Direction.LOWER, ""),
        (math.nan, Direction.LOWER, ""),
    ],
)
def test_a_change_is_worse_or_better_by_the_metrics_direction(
    delta: float | None, direction: Direction, expected: str
) -> None:
    assert change_of(delta, direction) == expected


def test_package_versions_read_dispatch_verify_entries_and_bare_versions() -> None:
    packages = package_versions(
        {
            "pipe_tasks": {
                "name": "pipe_tasks",
                "git_sha": "abc123",
                "git_url": "https://github.com/lsst/pipe_tasks.git",
                "eups_version": "w.2026.47",
            },
            "afw": "26.0.1",
            "numpy": {"version": "1.26.4", "eups_version": None},
        }
    )
    assert packages == [
        PackageVersion("afw", "26.0.1", None, None),
        PackageVersion("numpy", "1.26.4", None, None),
        PackageVersion(
            "pipe_tasks", "w.2026.47", "abc123", "https://github.com/lsst/pipe_tasks.git"
        ),
    ]
    assert package_versions(None) == []


def test_a_commit_links_to_its_page_on_the_forge() -> None:
    assert commit_url("https://github.com/lsst/afw.git", "abc123") == (
        "https://github.com/lsst/afw/commit/abc123"
    )
    assert commit_url("https://gitlab.org/g/p/", "x/../?y#") == (
        "https://gitlab.org/g/p/commit/x%2F..%2F%3Fy%23"
    )


@pytest.mark.parametrize("text", ["abc", "-1", "0", "1.5", "99999999999999999999", " 7"])
def test_a_job_id_is_a_positive_whole_number(text: str) -> None:
    with pytest.raises(InvalidInputError, match="is not a job id"):
        parse_job_id(text)
    assert parse_job_id("42") == 42


# --- the service on every stack ----------------------------------------------------------------

DEFINITIONS = {
    "metrics/bj.yaml": """
PA1: {unit: mmag, description: photometric repeatability}
COMP: {unit: '%', description: completeness, direction: higher}
WALL: {unit: s, description: wall time}
AM1: {unit: marcsec, description: astrometric repeatability}
""",
    "specs/bj/PA1.yaml": """
metric: PA1
name: minimum
level: minimum
threshold: {value: 8.0, unit: mmag, operator: '<='}
---
metric: PA1
name: design
level: design
threshold: {value: 5.0, unit: mmag, operator: '<='}
---
metric: PA1
name: stretch
level: stretch
threshold: {value: 3.0, unit: mmag, operator: '<='}
""",
    "specs/bj/AM1.yaml": """
metric: AM1
name: minimum
level: minimum
threshold: {value: 20.0, unit: marcsec, operator: '<='}
""",
}
START = datetime(2026, 6, 1, tzinfo=UTC)


def build(n: int, measurements: list[dict[str, Any]], **meta: Any) -> bytes:
    defaults = {
        "dataset": "D",
        "instrument": "HSC",
        "filter": "r",
        "branch": "main",
        "commit": f"{n:040x}",
        "repository": "https://github.com/org/repo",
        "time": (START + timedelta(hours=n)).isoformat(),
    }
    return json.dumps({"measurements": measurements, "meta": {**defaults, **meta}}).encode()


def pa1(value: float) -> dict[str, Any]:
    return {"metric": "bj.PA1", "value": value, "unit": "mmag"}


async def test_a_job_is_compared_with_the_previous_main_build(context: ProcessContext) -> None:
    await context.definitions().import_files(DEFINITIONS)
    jobs = context.jobs()

    async def post(body: bytes) -> int:
        return (await jobs.ingest(body)).id

    first = await post(build(0, [pa1(3.5), {"metric": "bj.WALL", "value": 50.0}]))
    # Build 1 measures COMP; build 2 does not: build 3's COMP is compared with build 1's.
    one = await post(build(1, [pa1(3.8), {"metric": "bj.COMP", "value": 90.0, "unit": "%"}]))
    two = await post(build(2, [pa1(4.0), {"metric": "bj.WALL", "value": 40.0}]))
    await post(build(2, [pa1(1.0)], filter="g", commit="f" * 40))  # another filter
    target_body = json.loads(
        build(
            3,
            [
                {**pa1(4.5), "blob_refs": ["b1"]},
                {"metric": "bj.COMP", "value": 92.0, "unit": "%"},
                {"metric": "bj.WALL", "value": 0.5, "unit": "min"},  # stored as 30 s
            ],
            packages={
                "pipe_tasks": {"git_sha": "abc123", "eups_version": "w.2026.22"},
                "afw": "26.0.1",
            },
        )
    )
    target_body["blobs"] = [{"identifier": "b1", "name": "bj.PA1", "data": {"x": [1, 2]}}]
    target = await post(json.dumps(target_body).encode())
    await post(build(4, [pa1(9.0)]))  # a later main build is never "previous"
    service = BuildService(context.sessionmaker)

    page = await service.job_page(target)
    assert page.job.id == target and page.previous is not None
    assert page.previous.id == two and not page.at_merge_base
    rows = {row.metric: row for row in page.rows}
    assert list(rows) == ["bj.COMP", "bj.PA1", "bj.WALL"]  # by name
    photometry = rows["bj.PA1"]
    assert (photometry.previous, photometry.previous_job_id) == (4.0, two)
    assert photometry.delta == pytest.approx(0.5)
    assert photometry.delta_pct == pytest.approx(12.5)
    assert photometry.change == "worse"  # lower is better
    assert photometry.drilldown and not rows["bj.WALL"].drilldown
    assert [(v.spec, v.status.value) for v in photometry.verdicts] == [
        ("bj.PA1.minimum", "pass"),
        ("bj.PA1.design", "pass"),
        ("bj.PA1.stretch", "fail"),
    ]
    assert photometry.status == "design" and photometry.level is not None
    completeness = rows["bj.COMP"]
    assert (completeness.previous, completeness.previous_job_id) == (90.0, one)
    assert completeness.change == "better"  # higher is better
    assert completeness.delta_pct == pytest.approx(100 * 2 / 90)
    wall = rows["bj.WALL"]
    assert (wall.measurement.value, wall.measurement.unit) == (30.0, "s")
    assert wall.delta == pytest.approx(-10.0) and wall.change == "better"
    assert wall.status == "no spec" and wall.verdicts == ()
    # AM1 has a spec that applies but was not measured.
    assert [v.spec for v in page.untested] == ["bj.AM1.minimum"]
    assert [p.name for p in page.packages] == ["afw", "pipe_tasks"]
    assert page.packages[1].version == "w.2026.22" and page.packages[1].sha == "abc123"
    assert page.blobs == 1

    # The first build has nothing to compare with.
    oldest = await service.job_page(first)
    assert oldest.previous is None
    assert all(row.delta is None and row.change == "" for row in oldest.rows)

    # A pull request's job is compared with the build of its merge base.
    pr = await post(
        build(5, [pa1(6.0)], branch="tickets/x", pr=12, base_commit=f"{1:040x}", commit="b" * 40)
    )
    pull = await service.job_page(pr)
    assert pull.previous is not None and pull.previous.id == one and pull.at_merge_base
    assert pull.rows[0].delta == pytest.approx(6.0 - 3.8)

    with pytest.raises(NotFoundError, match="no job 999999"):
        await service.job_page(999999)


# --- the page in a browser ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_jobs(demo_server: ServedSpecwatch) -> dict[str, Any]:
    """The newest main build of the demo and the one before it (same dataset), in full."""
    newest = demo_server.get("/api/v1/jobs", branch="main", limit=1).json()["jobs"][0]
    listed = demo_server.get(
        "/api/v1/jobs", branch="main", dataset=newest["dataset"], limit=2
    ).json()["jobs"]
    assert listed[0]["id"] == newest["id"] and listed[1]["filter"] == newest["filter"]
    return {
        "job": demo_server.get(f"/api/v1/jobs/{newest['id']}").json(),
        "previous": demo_server.get(f"/api/v1/jobs/{listed[1]['id']}").json(),
        "pr_job": demo_server.get("/api/v1/jobs", pr=1063, limit=1).json()["jobs"][0],
    }


def _value(job: dict[str, Any], metric: str) -> float:
    found: float = next(m["value"] for m in job["measurements"] if m["metric"] == metric)
    return found


def test_a_job_page_shows_context_measurements_verdicts_and_the_change(
    demo_browser: Browser, demo_jobs: dict[str, Any]
) -> None:
    job, previous = demo_jobs["job"], demo_jobs["previous"]
    demo_browser.open(f"/dashboard/job/{job['id']}")
    text = demo_browser.text()
    assert f"Job {job['id']}" in text
    context = demo_browser.text("#job-context")
    for expected in (
        f"{job['ci_name']} #{job['ci_id']}",
        job["repository"],
        job["commit"][:10],
        job["dataset"],
        job["instrument"],
        job["filter"],
        "UTC",
        "succeeded (0)",
    ):
        assert expected in context, expected
    ci = demo_browser.find("#job-context a[href^='https://ci.example.org/']")
    assert attr(ci, "href") == job["ci_url"]
    commit = demo_browser.find(f"#job-context a[href$='/commit/{job['commit']}']")
    assert attr(commit, "href") == f"{job['repository']}/commit/{job['commit']}"
    # The previous main build of the same dataset and filter, linked.
    link = demo_browser.find("#job-previous-link")
    assert attr(link, "href").endswith(f"/dashboard/job/{previous['id']}")
    # The packages are folded away until asked for.
    assert not demo_browser.find("#job-packages").is_displayed()

    rows = {
        row.find_element("css selector", "td").text: row
        for row in demo_browser.find_all("#job-measurements tbody tr")
    }
    assert len(rows) == job["n_measurements"]
    pa1 = rows["validate_drp.PA1"].text
    now, before = _value(job, "validate_drp.PA1"), _value(previous, "validate_drp.PA1")
    assert format_number(now) + " mmag" in pa1
    assert format_number(before) + " mmag" in pa1
    assert format_number(now - before, 3, signed=True) + " mmag" in pa1
    assert ("worse" if now > before else "better") in pa1  # lower is better
    badges = rows["validate_drp.PA1"].find_elements("css selector", ".job-verdict .badge")
    assert {b.text for b in badges} <= {"pass", "fail"} and "pass" in {b.text for b in badges}
    assert "drill down" in pa1
    # A metric with no spec says so; its value still carries its unit.
    memory = rows["pipe_tasks.processCcd_maxRSS"].text
    assert "no spec" in memory
    assert format_number(_value(job, "pipe_tasks.processCcd_maxRSS")) + " MB" in memory
    metric_link = rows["validate_drp.AM1"].find_element("css selector", "a.job-metric")
    assert "/dashboard/metric/validate_drp.AM1?dataset=" in attr(metric_link, "href")
    demo_browser.screenshot("job", full_page=True)


def test_the_pr_link_of_a_pr_job_opens_the_pr_page(
    demo_browser: Browser, demo_jobs: dict[str, Any]
) -> None:
    demo_browser.open(f"/dashboard/job/{demo_jobs['pr_job']['id']}")
    assert "the merge base" in demo_browser.text("#job-context")
    external = demo_browser.find("#job-context a[href$='/pull/1063']")
    assert attr(external, "target") == "_blank"
    demo_browser.find("#job-pr-link").click()
    demo_browser.wait_until(lambda: demo_browser.path() == "/dashboard/pr/1063", what="PR page")
    demo_browser.wait_drawn("#pr-comparison")
    assert "Pull request #1063" in demo_browser.text()


def test_a_bad_or_unknown_job_id_is_a_message(demo_browser: Browser) -> None:
    demo_browser.open("/dashboard/job/abc")
    assert "'abc' is not a job id" in demo_browser.text()
    demo_browser.open("/dashboard/job/987654321")
    assert "no job 987654321" in demo_browser.text()
