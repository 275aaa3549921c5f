"""The overview: sparklines (pure SVG), the KPM rows of a dataset (service), the page (browser)."""

from __future__ import annotations

import base64
import json
import math
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from browser import Browser

from specwatch.dashboard.pages.overview import overview_search, status_tone
from specwatch.dashboard.sparkline import sparkline_paths, sparkline_svg, sparkline_uri
from specwatch.metrics.model import Level
from specwatch.metrics.verification import Status, Verdict
from specwatch.services.context import ProcessContext
from specwatch.services.overview import OverviewService, builds_of, kpm_status

# --- sparklines ----------------------------------------------------------------------------------


def test_a_sparkline_spans_the_box_highest_value_on_top() -> None:
    [run] = sparkline_paths([1.0, 3.0, 2.0], width=100, height=20, pad=2)
    assert run == [(2.0, 18.0), (50.0, 2.0), (98.0, 10.0)]


def test_gaps_split_the_line_and_a_lone_point_is_a_dot() -> None:
    values = [1.0, 2.0, math.nan, 3.0, None, 4.0, 5.0, math.inf]
    runs = sparkline_paths(values, width=100, height=20, pad=0)
    assert [len(run) for run in runs] == [2, 1, 2]
    assert [x for run in runs for x, _ in run] == [0.0, 14.3, 42.9, 71.4, 85.7]
    svg = sparkline_svg(values, width=100, height=20)
    path = re.search(r' d="([^"]+)"', svg)
    assert path is not None and path.group(1).count("M") == 2  # two lines, one per run
    assert svg.count("<circle") == 2  # the lone point, and the last value


def test_flat_empty_and_widened_series() -> None:
    assert sparkline_paths([5.0, 5.0], width=10, height=20, pad=0) == [[(0.0, 10.0), (10.0, 10.0)]]
    assert sparkline_paths([math.nan, None]) == []
    assert "<path" not in sparkline_svg([]) and "<circle" not in sparkline_svg([])
    # A fraction drawn on 0..1: 0.5 sits half way, whatever the other values.
    [run] = sparkline_paths([0.5, 0.5], width=10, height=20, pad=0, low=0.0, high=1.0)
    assert run == [(0.0, 10.0), (10.0, 10.0)]


def test_a_sparkline_uri_holds_numbers_and_fixed_words_only() -> None:
    uri = sparkline_uri([1.5, -2.25e-7, 3e12, math.nan, 4.0], tone="bad")
    assert uri.startswith("data:image/svg+xml;base64,")
    svg = base64.b64decode(uri.split(",", 1)[1]).decode()
    assert svg.startswith("<svg ") and svg.endswith("</svg>")
    assert "script" not in svg.lower() and " on" not in svg.lower()
    # Every attribute value is a number list, a colour or a fixed keyword: nothing to escape.
    for value in re.findall(r'="([^"]*)"', svg):
        assert re.fullmatch(r"[0-9.,\- MLA-Za-z:/#]*", value), value
    assert '#b42318"' in svg  # the last value coloured by its tone


# --- pure helpers of the page and the service ----------------------------------------------------


def verdict(level: Level | None, status: Status) -> Verdict:
    return Verdict("p.M", f"p.M.{level}", level, status, 1.0, "<=", 2.0, "mmag")


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ([], "no spec"),
        ([verdict(Level.DESIGN, Status.NOT_TESTED)], "not tested"),
        ([verdict(Level.MINIMUM, Status.PASS), verdict(Level.DESIGN, Status.FAIL)], "minimum"),
        ([verdict(Level.MINIMUM, Status.PASS), verdict(Level.STRETCH, Status.PASS)], "stretch"),
        (
            [verdict(Level.MINIMUM, Status.FAIL), verdict(Level.DESIGN, Status.FAIL)],
            "below minimum",
        ),
        ([verdict(Level.DESIGN, Status.FAIL)], "below design"),
        ([verdict(None, Status.PASS)], "pass"),
        ([verdict(None, Status.FAIL), verdict(Level.DESIGN, Status.PASS)], "fail"),
    ],
)
def test_kpm_status(verdicts: list[Verdict], expected: str) -> None:
    assert kpm_status(verdicts) == expected


def test_status_tones_never_leave_a_failure_neutral() -> None:
    assert [status_tone(s) for s in ("stretch", "design", "minimum", "no spec")] == [
        "ok",
        "ok",
        "warn",
        "neutral",
    ]
    assert {status_tone(s) for s in ("below minimum", "below design", "fail")} == {"bad"}


def test_filters_write_the_query_string() -> None:
    search = "?dataset=A&filter=r&instrument=HSC&branch=dev"
    same = overview_search(search, shown="A", dataset="A", instrument="HSC", filter="r", tag="x")
    assert same == "?dataset=A&instrument=HSC&filter=r&tag=x&branch=dev"
    # Another dataset has its own instruments and filters: they go, the branch and tag stay.
    other = overview_search(search, shown="A", dataset="B", instrument="HSC", filter="r", tag="x")
    assert other == "?dataset=B&tag=x&branch=dev"
    # The default dataset (none in the URL yet) is the one shown: a tag keeps the filter.
    first = overview_search("", shown="A", dataset="A", instrument=None, filter="r", tag=None)
    assert first == "?dataset=A&filter=r"


# --- the service on every stack -----------------------------------------------------------------

DEFINITIONS = {
    "metrics/ov.yaml": """
PA1: {unit: mmag, description: photometric repeatability, tags: [photometry]}
AM1: {unit: marcsec, description: astrometric repeatability, tags: [astrometry]}
WALL: {unit: s, description: wall time of a build, tags: [timing]}
""",
    "specs/ov/PA1.yaml": """
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
    "specs/ov/AM1.yaml": """
metric: AM1
name: minimum
level: minimum
threshold: {value: 10.0, unit: marcsec, operator: '<='}
---
metric: AM1
name: design
level: design
threshold: {value: 5.0, unit: marcsec, operator: '<='}
""",
}
MATRIX = """
requirements:
  - {id: REQ-PA, title: Photometry, method: Test, specs: ["ov.PA1.*"]}
  - {id: REQ-AM, title: Astrometry, method: Analysis, specs: ["ov.AM1.*"]}
"""
N = 16  # main builds of D1; PA1 steps from 4 to 6 mmag (worse) at build 8
START = datetime(2026, 6, 1, tzinfo=UTC)


def noise(n: int) -> float:
    return 0.03 * ((n * 7) % 5 - 2)


def ov_job(n: int, measurements: list[dict[str, Any]], **meta: Any) -> bytes:
    defaults = {
        "dataset": "D1",
        "instrument": "HSC",
        "filter": "r",
        "branch": "main",
        "commit": f"{n:040x}",
        "time": (START + timedelta(hours=n)).isoformat(),
    }
    return json.dumps({"measurements": measurements, "meta": {**defaults, **meta}}).encode()


async def post_overview_history(context: ProcessContext) -> list[int]:
    """Definitions, a matrix, 16 main builds of D1, a PR build, and 2 newer builds of D2."""
    await context.definitions().import_files(DEFINITIONS)
    await context.verification().import_requirements(MATRIX, source="matrix.yaml")
    jobs = context.jobs()
    ids = []
    for n in range(N):
        measurements = [{"metric": "ov.PA1", "value": (4.0 if n < 8 else 6.0) + noise(n)}]
        if n != 12:  # a build that did not measure AM1: a gap in its sparkline
            measurements.append({"metric": "ov.AM1", "value": 12.0 + noise(n)})
        # WALL in minutes on the last build: stored (and shown) in seconds.
        wall = {"value": 0.5, "unit": "min"} if n == N - 1 else {"value": 30.0 + noise(n)}
        measurements.append({"metric": "ov.WALL", **wall})
        ids.append((await jobs.ingest(ov_job(n, measurements))).id)
    # A pull request on D1 (never part of main), then a newer dataset D2 in DECam g.
    pr = [{"metric": "ov.PA1", "value": 99.0}]
    await jobs.ingest(ov_job(100, pr, branch="tickets/x", pr=5))
    for n in (N, N + 1):
        d2 = [{"metric": "ov.PA1", "value": 2.5}, {"metric": "ov.WALL", "value": 10.0}]
        await jobs.ingest(ov_job(n, d2, dataset="D2", instrument="DECam", filter="g"))
    await context.deliverer.drain()
    regressions = context.regressions()
    await regressions.detect_many(await regressions.all_keys())
    return ids


async def test_the_overview_rows_of_a_dataset(context: ProcessContext) -> None:
    ids = await post_overview_history(context)
    service = OverviewService(context.sessionmaker)
    overview = await service.overview(dataset="D1")
    assert [d.name for d in overview.datasets] == ["D2", "D1"]  # the newest first
    assert (overview.jobs, overview.instruments, overview.filters) == (N, ("HSC",), ("r",))
    assert overview.last_time == START + timedelta(hours=N - 1)
    assert overview.tags == ("astrometry", "photometry", "timing")
    # The open regression first, then the failing KPM, then by name.
    assert [row.metric for row in overview.rows] == ["ov.PA1", "ov.AM1", "ov.WALL"]
    pa1, am1, wall = overview.rows
    assert pa1.value == pytest.approx(6.0 + noise(N - 1)) and pa1.unit == "mmag"
    assert pa1.status == "minimum" and not pa1.failing
    assert pa1.open_change is not None and pa1.open_change.verdict == "worse"
    assert pa1.open_change.job_id == ids[8] and pa1.regressed
    assert pa1.description == "photometric repeatability" and pa1.tags == ("photometry",)
    assert am1.status == "below minimum" and am1.failing and am1.open_change is None
    assert wall.value == pytest.approx(30.0) and wall.unit == "s" and wall.status == "no spec"
    assert (pa1.job_id, pa1.time) == (ids[-1], START + timedelta(hours=N - 1))
    assert (overview.n_failing, overview.n_regressions, overview.n_open_changes) == (1, 1, 1)
    # The sparkline holds the last builds in order; the build without AM1 is a gap.
    assert len(pa1.history) == N and pa1.history[0] == pytest.approx(4.0 + noise(0))
    assert math.isnan(am1.history[12]) and sum(math.isnan(v) for v in am1.history) == 1
    assert [v.spec for v in pa1.verdicts] == ["ov.PA1.design", "ov.PA1.minimum", "ov.PA1.stretch"]


async def test_defaults_filters_and_fewer_builds(context: ProcessContext) -> None:
    await post_overview_history(context)
    service = OverviewService(context.sessionmaker)
    newest = await service.overview()
    assert newest.dataset == "D2" and newest.instruments == ("DECam",)
    assert [(r.metric, r.status) for r in newest.rows] == [
        ("ov.PA1", "stretch"),
        ("ov.WALL", "no spec"),
    ]
    tagged = await service.overview(dataset="D1", tag="photometry")
    assert [row.metric for row in tagged.rows] == ["ov.PA1"]
    assert tagged.tags == ("astrometry", "photometry", "timing")  # the choices stay
    assert (await service.overview(dataset="D1", filter="g")).rows == []
    short = await service.overview(dataset="D1", builds=5)
    assert {len(row.history) for row in short.rows} == {5}
    unknown = await service.overview(dataset="nope")
    assert unknown.rows == [] and unknown.last_time is None and len(unknown.datasets) == 2
    assert (await service.overview(branch="nowhere")).datasets == []


async def test_a_dataset_in_several_filters_has_a_row_per_series(context: ProcessContext) -> None:
    await context.definitions().import_files(DEFINITIONS)
    await context.verification().import_requirements(MATRIX, source="matrix.yaml")
    jobs = context.jobs()
    for n in range(3):  # three builds, each one job per filter (same commit)
        for band, value in (("r", 4.0), ("i", 7.0 + n)):
            pa1 = [{"metric": "ov.PA1", "value": value}]
            await jobs.ingest(ov_job(n, pa1, dataset="D3", filter=band))
    service = OverviewService(context.sessionmaker)
    overview = await service.overview(dataset="D3")
    assert (overview.jobs, overview.jobs_are_builds, overview.filters) == (6, False, ("i", "r"))
    # The failing series first (i: 9 mmag, past the minimum of 8 mmag).
    assert [(r.metric, r.filter, r.status, r.value) for r in overview.rows] == [
        ("ov.PA1", "i", "below minimum", 9.0),
        ("ov.PA1", "r", "design", 4.0),
    ]
    assert overview.rows[0].history == (7.0, 8.0, 9.0)
    only_r = await service.overview(dataset="D3", filter="r")
    assert [(r.filter, r.value) for r in only_r.rows] == [("r", 4.0)]
    # A requirement counts a build once, failing where any of its jobs fails.
    trends = await service.requirement_trends(dataset="D3")
    assert len(trends.times) == 3 and trends.fractions["REQ-PA"] == (0.0, 0.0, 0.0)
    detail = await service.requirement_detail("REQ-PA", dataset="D3")
    design = [c for c in detail.checks if c.spec.name == "design"]
    assert [(c.filter, c.verdict and c.verdict.status) for c in design] == [
        ("i", Status.FAIL),
        ("r", Status.PASS),
    ]


async def test_jobs_without_a_dataset_are_a_dataset_too(context: ProcessContext) -> None:
    await context.definitions().import_files(DEFINITIONS)
    pa1 = [{"metric": "ov.PA1", "value": 2.0}]
    await context.jobs().ingest(ov_job(0, pa1, dataset=None, instrument=None, filter=None))
    overview = await OverviewService(context.sessionmaker).overview()
    assert [d.name for d in overview.datasets] == [None] and overview.dataset is None
    assert [(r.metric, r.status, r.filter) for r in overview.rows] == [("ov.PA1", "stretch", None)]


def test_builds_group_jobs_by_commit() -> None:
    from specwatch.metrics.model import JobContext
    from specwatch.metrics.records import StoredJob

    def job(job_id: int, commit: str | None, hour: int) -> StoredJob:
        when = START + timedelta(hours=hour)
        return StoredJob(job_id, str(job_id), when, when, 0, JobContext(commit=commit), 0)

    jobs = [job(1, "a", 0), job(2, "a", 1), job(3, None, 2), job(4, "b", 3), job(5, None, 4)]
    assert [[j.id for j in b] for b in builds_of(jobs, 10)] == [[1, 2], [3], [4], [5]]
    assert [[j.id for j in b] for b in builds_of(jobs, 2)] == [[4], [5]]


# --- the page in a browser -----------------------------------------------------------------------


def _rows(browser: Browser) -> dict[str, str]:
    """Metric name -> the text of its row."""
    rows = {}
    for row in browser.find_all("#overview-table tbody tr"):
        text = row.text
        rows[text.split("\n", 1)[0]] = text
    return rows


def test_overview_lists_the_kpms_with_units_and_statuses(demo_browser: Browser) -> None:
    demo_browser.open("/dashboard/")
    rows = _rows(demo_browser)
    assert len(rows) == 28, rows.keys()
    # Drawn once: the dropdowns reporting their value as they mount is not a choice that
    # rewrites the URL (and draws the page again).  A moment for such a round trip:
    time.sleep(0.5)
    assert demo_browser.path() == "/dashboard/" and not demo_browser.loading()
    pa1 = rows["validate_drp.PA1"]
    assert " mmag" in pa1 and "design" in pa1 and "UTC" in pa1
    assert "improvement" in pa1  # its open change (the demo's step at build 96)
    assert "validate_drp.AM1" in rows and "marcsec" in rows["validate_drp.AM1"]
    # Open regressions first: the demo's worse steps on HSC-RC2 lead the table.
    first = list(rows)[:3]
    assert set(first) == {
        "ap_association.DiaPipelineMemory",
        "ip_diffim.fracDiaSourcesToSciSources",
        "pipe_tasks.processCcd_wallTime",
    }, first
    text = demo_browser.text()
    assert "28 KPMs" in text and "3 open regressions" in text and "builds of HSC-RC2" in text
    assert "outbox pending" in text and "detection pending" in text
    sparks = demo_browser.find_all("#overview-table img.spark")
    assert len(sparks) == 28
    assert all(
        (s.get_attribute("src") or "").startswith("data:image/svg+xml;base64,") for s in sparks
    )
    assert demo_browser.script("return arguments[0].naturalWidth", sparks[0]) == 120
    # A regression badge opens the metric page at its change.
    badge = demo_browser.find("#overview-table tbody tr:first-child td:last-child a")
    assert re.search(
        r"/dashboard/metric/[\w.]+\?dataset=HSC-RC2&filter=HSC-I&change=\d+$",
        badge.get_attribute("href") or "",
    )
    demo_browser.screenshot("overview")


def test_switching_dataset_and_tag_rewrites_the_url_and_the_rows(demo_browser: Browser) -> None:
    demo_browser.open("/dashboard/")
    hsc = _rows(demo_browser)
    demo_browser.choose("#overview-dataset", "CI-HiTS")
    demo_browser.wait_until(lambda: "dataset=CI-HiTS" in demo_browser.path(), what="the URL")
    demo_browser.wait_until(lambda: "builds of CI-HiTS" in demo_browser.text(), what="redraw")
    demo_browser.wait_drawn()
    hits = _rows(demo_browser)
    assert "ap_association.numNewDiaObjects" in hits
    assert hits["ap_association.numNewDiaObjects"] != hsc["ap_association.numNewDiaObjects"]
    # CI-HiTS' own regression leads: validate_drp.AM1 stepped up (worse) at build 205.
    assert "validate_drp.AM1" in list(hits)[:4]
    assert "Instrument / filter" not in demo_browser.text("#overview-table thead")  # one only
    demo_browser.choose("#overview-tag", "astrometry")
    demo_browser.wait_until(lambda: "tag=astrometry" in demo_browser.path(), what="the URL")
    demo_browser.wait_until(lambda: len(_rows(demo_browser)) < len(hits), what="fewer rows")
    demo_browser.wait_drawn()
    narrowed = _rows(demo_browser)
    assert set(narrowed) == {
        f"validate_drp.{m}" for m in ("AM1", "AM2", "AM3", "AD1_design", "AF1_design")
    }
    assert demo_browser.path() == "/dashboard/?dataset=CI-HiTS&tag=astrometry"
    # The URL restores the view.
    demo_browser.open("/dashboard/?dataset=CI-HiTS&tag=astrometry")
    assert set(_rows(demo_browser)) == set(narrowed)


def test_an_unknown_dataset_says_so(demo_browser: Browser) -> None:
    demo_browser.open("/dashboard/?dataset=nope")
    assert "No build of dataset nope on main" in demo_browser.text()
