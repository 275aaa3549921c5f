"""The metric page: its figure (pure), its use cases (on every stack) and the page in a browser.

Figure tests build a ``Trend`` by hand; service tests post jobs through the services and read
them back as the page does; browser tests drive the demo server's page as people do.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import plotly.io as pio
import pytest
from browser import Browser
from dash import no_update
from selenium.webdriver import ActionChains

from specwatch.dashboard.figures import LEVEL_COLOURS
from specwatch.dashboard.pages.metric import (
    click_target,
    controls_search,
    metric_page,
    range_search,
)
from specwatch.dashboard.registry import PageRequest, parse_query
from specwatch.dashboard.trend import EXCLUDED_COLOUR, change_label, trend_figure
from specwatch.exceptions import InvalidInputError, NotFoundError
from specwatch.metrics.model import Direction, Metric
from specwatch.metrics.records import ChangeRecord, SeriesKey
from specwatch.services.context import ProcessContext
from specwatch.services.trends import (
    SeriesSelection,
    SpecThreshold,
    Trend,
    TrendPoints,
    TrendRequest,
    TrendService,
    compare_url,
    package_changes,
)

HOUR_NS = 3600 * 10**9
T0_NS = 1_785_000_000 * 10**9  # 2026-07-25 UTC


# --- figures (pure) --------------------------------------------------------------------------


def points(
    n: int,
    *,
    values: Sequence[float | None] | None = None,
    missing: Collection[int] = (),
    excluded: Collection[int] = (),
    first_id: int = 11,
    times_ns: list[int] | None = None,
    branch: str = "main",
    pr: int | None = None,
) -> TrendPoints:
    found = TrendPoints(SeriesSelection("D", "r", "I"), "main")
    for i in range(n):
        found.time_ns.append(times_ns[i] if times_ns else T0_NS + i * HOUR_NS)
        found.value.append(None if i in missing else (values[i] if values else 5.0))
        found.job_id.append(first_id + i)
        found.commit.append(f"{first_id + i:x}".ljust(40, "c"))
        found.branch_of.append(branch)
        found.pr.append(pr)
        found.ci.append(f"ci_hsc #{100 + i}")
        found.ci_url.append(f"https://ci.example.org/{100 + i}")
        found.missing.append(i in missing)
        found.excluded.append(i in excluded)
    return found


def a_change(job_id: int = 14) -> ChangeRecord:
    return ChangeRecord(
        key=SeriesKey("demo.PA1", "D", "r", "I", "main"),
        job_id=job_id,
        previous_job_id=job_id - 1,
        time=datetime(2026, 7, 25, 3, tzinfo=UTC),
        commit_before="a" * 40,
        commit_after="b" * 40,
        before=4.9,
        after=5.39,
        delta=0.49,
        delta_pct=10.0,
        delta_sigma=3.3,
        sigma=0.15,
        verdict="worse",
        id=7,
        unit="mmag",
    )


def a_trend(
    *,
    direction: Direction = Direction.LOWER,
    main: TrendPoints | None = None,
    prs: TrendPoints | None = None,
    changes: tuple[ChangeRecord, ...] | None = None,
) -> Trend:
    """Six builds: a NaN (1), one without the metric (2), one excluded (4); a PR build
    between builds 3 and 4; design ≤ 5 and minimum ≤ 8 mmag; a worse change at build 3."""
    if main is None:
        main = points(6, values=[4.9, None, None, 5.1, 7.0, 4.2], missing={2}, excluded={4})
    if prs is None:
        prs = points(
            1,
            values=[5.6],
            first_id=21,
            times_ns=[T0_NS + 3 * HOUR_NS + HOUR_NS // 2],
            branch="tickets/<b>x</b>",
            pr=7,
        )
    return Trend(
        metric=Metric("demo", "PA1", unit="mmag", direction=direction),
        selection=SeriesSelection("D", "r", "I"),
        branch="main",
        main=main,
        prs=prs,
        overlays=(),
        specs=(
            SpecThreshold("demo.PA1.minimum", "minimum", "<=", 8.0),
            SpecThreshold("demo.PA1.design", "design", "<=", 5.0),
        ),
        changes=(a_change(),) if changes is None else changes,
        choices=(),
        branches=("main",),
        limit=2000,
        truncated=False,
    )


def trace(figure: Any, name: str) -> Any:
    return next(t for t in figure.data if t.name == name)


def test_builds_are_webgl_traces_whose_customdata_are_job_ids() -> None:
    figure = trend_figure(a_trend())
    main = figure.data[0]
    assert main.type == "scattergl" and main.mode == "lines+markers"
    assert list(main.customdata) == [11, 12, 13, 14, 16]  # 15 is excluded: not on the line
    prs = trace(figure, "pull-request builds")
    assert prs.type == "scattergl" and list(prs.customdata) == [21]
    assert prs.marker.symbol == "diamond" and prs.marker.color != main.marker.color
    # Times are UTC milliseconds on a date axis.
    assert main.x[0] == T0_NS // 10**6 and figure.layout.xaxis.type == "date"


def test_nan_and_unmeasured_builds_are_gaps_in_the_line() -> None:
    main = trend_figure(a_trend()).data[0]
    assert main.connectgaps is False
    y = np.asarray(main.y, dtype=float)
    assert math.isnan(y[1]) and math.isnan(y[2])  # the NaN value, the build without it
    assert y[0] == 4.9 and y[3] == 5.1 and y[4] == 4.2


def test_a_ci_outage_breaks_the_line_in_time_but_not_in_order() -> None:
    times = [T0_NS + i * HOUR_NS for i in range(5)] + [T0_NS + 200 * HOUR_NS]
    main = points(6, values=[5.0] * 6, times_ns=times)
    by_time = trend_figure(a_trend(main=main, changes=())).data[0]
    assert len(by_time.y) == 7 and math.isnan(by_time.y[5]) and by_time.customdata[5] == -1
    by_order = trend_figure(a_trend(main=main, changes=()), mode="order").data[0]
    assert len(by_order.y) == 6 and not np.isnan(np.asarray(by_order.y, dtype=float)).any()


def test_excluded_builds_are_greyed_markers_off_the_line() -> None:
    excluded = trace(trend_figure(a_trend()), "excluded (bad data)")
    assert excluded.type == "scattergl" and excluded.mode == "markers"
    assert excluded.marker.color == EXCLUDED_COLOUR and list(excluded.customdata) == [15]
    assert list(excluded.y) == [7.0]


def test_spec_thresholds_are_labelled_lines_with_units_and_bands_per_level() -> None:
    figure = trend_figure(a_trend())
    labels = {a.text for a in figure.layout.annotations}
    assert {"design ≤ 5 mmag", "minimum ≤ 8 mmag", "↓ lower is better"} <= labels
    lines = {
        (s.y0, s.line.color) for s in figure.layout.shapes if s.type == "line" and s.y0 == s.y1
    }
    assert (5.0, LEVEL_COLOURS["design"]) in lines and (8.0, LEVEL_COLOURS["minimum"]) in lines
    bands = sorted(
        (round(s.y0, 6), round(s.y1, 6), s.fillcolor)
        for s in figure.layout.shapes
        if s.type == "rect"
    )
    low = figure.layout.yaxis.range[0]
    # A value in a band meets that level and no stricter one: design below 5, minimum 5 … 8.
    assert bands == [
        (round(low, 6), 5.0, LEVEL_COLOURS["design"]),
        (5.0, 8.0, LEVEL_COLOURS["minimum"]),
    ]
    assert low < 4.2 and figure.layout.yaxis.range[1] > 8.0
    assert figure.layout.yaxis.title.text == "mmag"


def test_which_way_is_better_is_shown() -> None:
    higher = {a.text for a in trend_figure(a_trend(direction=Direction.HIGHER)).layout.annotations}
    assert "↑ higher is better" in higher
    neither = {a.text for a in trend_figure(a_trend(direction=Direction.NONE)).layout.annotations}
    assert not any("better" in text for text in neither)


def test_change_points_are_marked_with_their_size_and_open_their_culprits() -> None:
    figure = trend_figure(a_trend())
    assert change_label(a_change()) == "+0.49 mmag (+10 %, 3.3σ) worse"
    marks = trace(figure, "change points")
    assert list(marks.text) == ["+0.49 mmag (+10 %, 3.3σ) worse"]
    assert list(marks.customdata) == ["change:7"]
    x = (T0_NS + 3 * HOUR_NS) // 10**6  # the first build after the change (job 14)
    assert list(marks.x) == [x]
    verticals = [s for s in figure.layout.shapes if s.type == "line" and s.x0 == s.x1]
    assert [(s.x0, s.line.dash) for s in verticals] == [(x, "dot")]


def test_hover_shows_value_with_unit_commit_branch_pr_and_ci_build_escaped() -> None:
    figure = trend_figure(a_trend())
    main = figure.data[0]
    assert "%{y:,.4~g} mmag" in main.hovertemplate and "job %{customdata}" in main.hovertemplate
    assert main.text[0] == "commit bccccccccc · CI ci_hsc #100"
    pr = trace(figure, "pull-request builds")
    assert pr.text[0] == (
        "commit 15cccccccc · branch tickets/&lt;b&gt;x&lt;/b&gt; · PR #7 · CI ci_hsc #100"
    )


def test_build_order_puts_builds_at_their_index_and_pr_builds_between() -> None:
    figure = trend_figure(a_trend(), mode="order")
    assert list(figure.data[0].x) == [0, 1, 2, 3, 5]
    assert list(trace(figure, "pull-request builds").x) == [3.5]
    assert list(trace(figure, "change points").x) == [3]
    assert figure.layout.xaxis.type is None and "build" in figure.layout.xaxis.title.text
    assert "UTC" in figure.data[0].text[0]  # the build time moves into the hover text


def test_twenty_thousand_builds_make_a_lean_figure_quickly() -> None:
    n = 20_000
    rng = np.random.default_rng(1)
    values = [float(v) for v in 5 + rng.normal(0, 0.2, n)]
    main = points(n, values=values, missing={500}, excluded={700})
    started = time.perf_counter()
    figure = trend_figure(a_trend(main=main, changes=()))
    text = pio.to_json(figure, validate=False)
    took_s = time.perf_counter() - started
    assert len(figure.data[0].x) == n - 1
    body = json.loads(text)
    assert body["data"][0]["x"].keys() == {"dtype", "bdata"}  # a typed array, not a list
    assert len(text) < 1.5e6, len(text)
    assert took_s < 1.0, took_s


def test_a_click_opens_a_build_or_a_change_points_culprits() -> None:
    click = {"points": [{"curveNumber": 0, "pointNumber": 3, "customdata": 42}]}
    assert click_target(click, "/dashboard/metric/demo.PA1", "?x=order") == "/dashboard/job/42"
    change = {"points": [{"customdata": "change:7"}]}
    assert (
        click_target(change, "/dashboard/metric/demo.PA1", "?x=order")
        == "/dashboard/metric/demo.PA1?x=order&change=7"
    )
    assert click_target({"points": []}, "/", "") is no_update
    assert click_target({"points": [{"customdata": "javascript:x"}]}, "/", "") is no_update


def test_controls_and_zoom_write_the_query_string() -> None:
    search = controls_search(
        "?change=3", "CI-HiTS|g|DECam", "main", ["HSC-RC2|HSC-I|HSC"], "order", ["1"], 5000
    )
    assert parse_query(search) == {
        "dataset": ["CI-HiTS"],
        "filter": ["g"],
        "instrument": ["DECam"],
        "x": ["order"],
        "overlay": ["HSC-RC2|HSC-I|HSC"],
        "limit": ["5000"],
    }  # another series: the change of the previous one is closed
    same = "?dataset=D&filter=r&instrument=I&x=order"
    assert controls_search(same, "D|r|I", "main", [], "order", ["1"], 2000) is no_update
    assert parse_query(controls_search(same, "D|r|I", "main", [], "time", [], 2000)) == {
        "dataset": ["D"],
        "filter": ["r"],
        "instrument": ["I"],
        "prs": ["0"],
    }
    zoomed = {"xaxis.range[0]": "2026-07-01 10:20:33.5", "xaxis.range[1]": "2026-07-03 08:00"}
    assert parse_query(range_search(zoomed, "?x=time")) == {
        "x": ["time"],
        "since": ["2026-07-01T10:20"],
        "until": ["2026-07-03T08:01"],
    }
    assert range_search({"autosize": True}, "") is no_update


def test_package_changes_list_changed_added_and_removed_with_links() -> None:
    url = "https://github.com/lsst/afw.git"
    before = {
        "afw": {"git_sha": "1" * 40, "eups_version": "w.1", "git_url": url},
        "same": {"git_sha": "2" * 40, "eups_version": "w.1"},
        "gone": {"git_sha": "3" * 40, "eups_version": "w.1", "git_url": "ftp://x/gone"},
    }
    after = {
        "afw": {"git_sha": "4" * 40, "eups_version": "w.2", "git_url": url},
        "same": {"git_sha": "2" * 40, "eups_version": "w.1"},
        "new": {"version": "1.0", "url": "https://gitlab.example.org/new"},
    }
    changes, unchanged = package_changes(before, after)
    assert unchanged == 1
    assert [(p.name, p.change) for p in changes] == [
        ("afw", "changed"),
        ("new", "added"),
        ("gone", "removed"),
    ]
    afw, new, gone = changes
    assert (afw.version_before, afw.version_after) == ("w.1", "w.2")
    assert afw.compare_url == f"https://github.com/lsst/afw/compare/{'1' * 40}...{'4' * 40}"
    assert afw.url == f"https://github.com/lsst/afw/commit/{'4' * 40}"
    assert new.url == "https://gitlab.example.org/new" and new.compare_url is None
    assert gone.url is None  # not an http(s) URL: no link
    assert compare_url("git@github.com:lsst/pipe_tasks.git", "a", "b") == (
        "https://github.com/lsst/pipe_tasks/compare/a...b"
    )
    assert compare_url("https://gitlab.example.org/x/y", "a", "b") is None


# --- the use cases, on every stack -----------------------------------------------------------

DEFINITIONS = {
    "metrics/tw.yaml": (
        "PA1:\n  unit: mmag\n  description: photometric repeatability\n"
        "AM1:\n  unit: marcsec\n"
        "EMPTY:\n  unit: s\n"
    ),
    "specs/tw/PA1.yaml": (
        "name: design_r\nmetric: PA1\nlevel: design\n"
        "threshold: {value: 5.5, unit: mmag, operator: '<='}\nmetadata_query: {filter: r}\n"
        "---\n"
        "name: design_g\nmetric: PA1\nlevel: design\n"
        "threshold: {value: 4.0, unit: mmag, operator: '<='}\nmetadata_query: {filter: g}\n"
        "---\n"
        "name: minimum\nmetric: PA1\nlevel: minimum\n"
        "threshold: {value: 8.0, unit: mmag, operator: '<='}\n"
    ),
}
STEP, NAN_BUILD, UNMEASURED, EXCLUDED, N = 15, 5, 8, 20, 30


def packages(n: int) -> dict[str, Any]:
    """pipe_tasks moves every build; afw changes, obs goes and newpkg comes at ``STEP``."""
    found: dict[str, Any] = {
        "pipe_tasks": {
            "git_sha": f"{n:040x}",
            "eups_version": f"w.2026.30-g{n:07x}",
            "git_url": "https://github.com/lsst/pipe_tasks.git",
        },
        "afw": {
            "git_sha": ("a" if n < STEP else "b") * 40,
            "eups_version": "w.1" if n < STEP else "w.2",
            "git_url": "https://github.com/lsst/afw.git",
        },
        "base": {"git_sha": "c" * 40, "eups_version": "w.1"},
    }
    if n < STEP:
        found["obs"] = {"git_sha": "d" * 40, "eups_version": "w.1"}
    else:
        found["newpkg"] = {"git_sha": "e" * 40, "eups_version": "w.1"}
    return found


def body(n: float, values: dict[str, float | None], **meta: Any) -> bytes:
    moment = datetime(2026, 8, 1, tzinfo=UTC) + timedelta(hours=n)
    document = {
        "measurements": [
            {"metric": k, "value": "NaN" if v is None else v, "unit": ""} for k, v in values.items()
        ],
        "meta": {
            "dataset": "D",
            "filter": "r",
            "instrument": "I",
            "branch": "main",
            "commit": f"{int(n):040x}",
            "repository": "https://github.com/lsst/pipe_tasks",
            "time": moment.isoformat(),
            "env": {
                "ci_name": "ci_x",
                "ci_id": str(1000 + int(n)),
                "ci_url": f"https://ci.example.org/{int(n)}",
            },
            "packages": packages(int(n)),
            **meta,
        },
    }
    return json.dumps(document).encode()


async def post_history(context: ProcessContext) -> list[int]:
    """D·r·I: PA1 steps up (worse) at ``STEP``, NaN at ``NAN_BUILD``, not measured at
    ``UNMEASURED`` (AM1 only), job ``EXCLUDED`` excluded; a PR build; dataset E (older)."""
    await context.definitions().import_files(DEFINITIONS)
    jobs = context.jobs()
    rng = np.random.default_rng(3)
    for n in range(12):  # dataset E, between D's builds (D's last is the newest: the default)
        await jobs.ingest(
            body(
                2 * n + 0.5,
                {"tw.PA1": 6.0 + float(rng.normal(0, 0.05))},
                dataset="E",
                filter="g",
                instrument=None,
                commit=f"e{n:039x}",
            )
        )
    ids = []
    for n in range(N):
        pa1: float | None = 5.0 + (1.0 if n >= STEP else 0.0) + float(rng.normal(0, 0.05))
        values: dict[str, float | None] = {"tw.PA1": pa1, "tw.AM1": 10.0}
        if n == NAN_BUILD:
            values["tw.PA1"] = None
        if n == UNMEASURED:
            del values["tw.PA1"]
        ids.append((await jobs.ingest(body(n, values))).id)
    pr_values: dict[str, float | None] = {"tw.PA1": 9.0}
    pr = body(N + 1, pr_values, branch="tickets/<b>X</b>", pr=7, commit="f" * 40)
    ids.append((await jobs.ingest(pr)).id)
    await context.deliverer.drain()
    regressions = context.regressions()
    await regressions.detect_many(await regressions.all_keys())
    await regressions.exclude(ids[EXCLUDED], "bad data")
    return ids


async def test_the_trend_holds_builds_context_gaps_prs_changes_and_specs(
    context: ProcessContext,
) -> None:
    ids = await post_history(context)
    service = TrendService(context.sessionmaker, context.series)
    trend = await service.trend("tw.PA1", TrendRequest())
    main = trend.main
    assert trend.selection == SeriesSelection("D", "r", "I") and trend.branch == "main"
    assert [c.selection.key for c in trend.choices] == ["D|r|I", "E|g|"]
    assert main.job_id == ids[:N]  # every build of D, the one without PA1 included
    assert [i for i, m in enumerate(main.missing) if m] == [UNMEASURED]
    assert main.value[UNMEASURED] is None and main.value[NAN_BUILD] is None
    assert not main.missing[NAN_BUILD]
    assert [i for i, e in enumerate(main.excluded) if e] == [EXCLUDED]
    assert main.commit[3] == f"{3:040x}" and main.ci[3] == "ci_x #1003"
    assert main.ci_url[3] == "https://ci.example.org/3" and main.branch_of[3] == "main"
    assert trend.prs.job_id == [ids[N]] and trend.prs.pr == [7]
    assert trend.prs.branch_of == ["tickets/<b>X</b>"] and trend.prs.value == [9.0]
    worse = [c for c in trend.changes if c.verdict == "worse"]
    assert [c.job_id for c in worse] == [ids[STEP]]
    assert worse[0].delta == pytest.approx(1.0, abs=0.15) and worse[0].unit == "mmag"
    # The filter-r design spec and the spec for every filter apply; the filter-g one does not.
    assert [(s.name, s.level, s.threshold) for s in trend.specs] == [
        ("tw.PA1.minimum", "minimum", 8.0),
        ("tw.PA1.design_r", "design", 5.5),
    ]
    assert not trend.truncated

    overlaid = await service.trend("tw.PA1", TrendRequest(overlays=("E|g",), prs=False))
    assert [o.selection.key for o in overlaid.overlays] == ["E|g|"]
    assert len(overlaid.overlays[0]) == 12 and len(overlaid.prs) == 0
    other = await service.trend("tw.PA1", TrendRequest(dataset="E"))
    assert other.selection == SeriesSelection("E", "g", "") and len(other.main) == 12
    assert [(s.name, s.threshold) for s in other.specs] == [
        ("tw.PA1.minimum", 8.0),
        ("tw.PA1.design_g", 4.0),
    ]
    last = await service.trend("tw.PA1", TrendRequest(limit=10))
    assert last.main.job_id[-1] == ids[N - 1] and last.truncated
    assert len(last.main) - sum(last.main.missing) == 10
    by_change = await service.trend("tw.PA1", TrendRequest(change_id=worse[0].id))
    assert by_change.selection == SeriesSelection("D", "r", "I")


async def test_culprits_are_the_commit_range_and_the_packages_that_moved(
    context: ProcessContext,
) -> None:
    ids = await post_history(context)
    service = TrendService(context.sessionmaker, context.series)
    trend = await service.trend("tw.PA1", TrendRequest())
    change = next(c for c in trend.changes if c.job_id == ids[STEP])
    assert change.id is not None
    culprits = await service.culprits(change.id)
    before, after = f"{STEP - 1:040x}", f"{STEP:040x}"
    assert culprits.before is not None and culprits.before.id == ids[STEP - 1]
    assert culprits.after is not None and culprits.after.id == ids[STEP]
    assert culprits.repository == "https://github.com/lsst/pipe_tasks"
    assert culprits.compare_url == f"https://github.com/lsst/pipe_tasks/compare/{before}...{after}"
    assert culprits.known and culprits.unchanged == 1  # base
    assert [(p.name, p.change) for p in culprits.packages] == [
        ("afw", "changed"),
        ("pipe_tasks", "changed"),
        ("newpkg", "added"),
        ("obs", "removed"),
    ]
    afw = culprits.packages[0]
    assert (afw.version_before, afw.version_after) == ("w.1", "w.2")
    assert afw.compare_url == f"https://github.com/lsst/afw/compare/{'a' * 40}...{'b' * 40}"
    with pytest.raises(NotFoundError):
        await service.culprits(10**9)


async def test_bad_requests_are_refused_with_the_reason(context: ProcessContext) -> None:
    await context.definitions().import_files(DEFINITIONS)
    service = TrendService(context.sessionmaker, context.series)
    with pytest.raises(NotFoundError, match="no metric"):
        await service.trend("tw.NOPE", TrendRequest())
    for limit in (0, 20_001):
        with pytest.raises(InvalidInputError, match="limit"):
            await service.trend("tw.PA1", TrendRequest(limit=limit))
    empty = await service.trend("tw.EMPTY", TrendRequest())
    assert len(empty.main) == 0 and empty.changes == () and empty.choices == ()


def text_of(component: Any) -> str:
    """Every string of a component tree, space-separated (what React renders as text)."""
    if component is None:
        return ""
    if isinstance(component, str | int | float):
        return str(component)
    if isinstance(component, list | tuple):
        return " ".join(text_of(child) for child in component)
    return text_of(getattr(component, "children", None))


def ids_of(component: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(component, list | tuple):
        for child in component:
            found |= ids_of(child)
    elif component is not None and not isinstance(component, str | int | float):
        identifier = getattr(component, "id", None)
        if isinstance(identifier, str):
            found.add(identifier)
        found |= ids_of(getattr(component, "children", None))
    return found


async def test_the_page_says_what_to_do_without_builds(context: ProcessContext) -> None:
    await context.definitions().import_files(DEFINITIONS)
    page = await metric_page(PageRequest(context, {"name": "tw.EMPTY"}, {}))
    text = text_of(page)
    assert "No builds yet" in text and "specwatch upload <job.json>" in text
    assert "/api/v1/metrics/tw.EMPTY/series" in text
    assert "metric-graph" not in ids_of(page)
    with pytest.raises(InvalidInputError, match="since"):
        await metric_page(PageRequest(context, {"name": "tw.PA1"}, {"since": ["yesterday"]}))


async def test_the_page_lists_change_points_and_opens_culprits(context: ProcessContext) -> None:
    ids = await post_history(context)
    trend = await TrendService(context.sessionmaker, context.series).trend("tw.PA1", TrendRequest())
    change = next(c for c in trend.changes if c.job_id == ids[STEP])
    page = await metric_page(
        PageRequest(context, {"name": "tw.PA1"}, parse_query(f"?change={change.id}&x=order"))
    )
    text = text_of(page)
    assert {"metric-graph", "metric-changes", "metric-culprits", "metric-packages"} <= ids_of(page)
    assert "30 builds of D · r · I on main" in text and "1 NaN, 1 without this metric" in text
    assert change_label(change) in text and "culprit candidates" in text
    assert "compare on GitHub" in text and "afw" in text and "newpkg" in text
    assert f"job {ids[STEP]}" in text


# --- in a browser, on the demo --------------------------------------------------------------

PA1 = "/dashboard/metric/validate_drp.PA1"
_GRAPH = "document.querySelector('#metric-graph .js-plotly-plot')"


@pytest.fixture
def metric_browser(demo_browser: Browser) -> Browser:
    demo_browser.open(PA1)
    demo_browser.wait_until(
        lambda: demo_browser.script(f"const gd = {_GRAPH}; return !!(gd && gd._fullData)"),
        what="the plot",
    )
    return demo_browser


def test_the_metric_page_shows_a_change_point_and_its_culprit_candidates(
    metric_browser: Browser,
) -> None:
    browser = metric_browser
    text = browser.text()
    assert "validate_drp.PA1" in text and "lower is better" in text
    assert "HSC-RC2 · HSC-I · HSC" in text
    assert "design ≤ 5 mmag" in text and "minimum ≤ 8 mmag" in text  # labelled thresholds
    changes = browser.text("#metric-changes")
    assert "better" in changes and "mmag" in changes and "σ" in changes
    browser.find("#metric-changes a.metric-change-link").click()
    browser.wait_for("#metric-culprits")
    browser.wait_drawn()
    assert "change=" in browser.path()
    culprits = browser.text("#metric-culprits")
    assert "Commit range" in culprits and "compare on GitHub" in culprits
    packages = browser.text("#metric-packages")
    assert "pipe_tasks" in packages and "changed" in packages
    compare = browser.find("#metric-culprits a[href*='/compare/']").get_attribute("href")
    assert compare is not None
    assert compare.startswith("https://github.com/lsst/pipe_tasks/compare/")
    browser.script("document.getElementById('metric-culprits').scrollIntoView()")
    browser.screenshot("metric-culprits")


def test_switching_x_to_build_order_changes_the_url_and_the_plot(metric_browser: Browser) -> None:
    browser = metric_browser
    assert browser.script(f"return {_GRAPH}.layout.xaxis.type") == "date"
    browser.find("#metric-x input[value='order']").click()
    browser.wait_until(lambda: "x=order" in browser.path(), what="x=order in the URL")
    browser.wait_until(
        lambda: browser.script(
            f"const gd = {_GRAPH}; return gd && gd.layout.xaxis.type !== 'date'"
            " && gd._fullLayout.xaxis.type === 'linear'"
        ),
        what="the plot by build order",
    )
    title = browser.script(f"return {_GRAPH}.layout.xaxis.title.text")
    assert title == "build (oldest → newest)"
    first = browser.script(f"return Number({_GRAPH}._fullData[0].x[0])")
    assert first == 0


def test_a_zoom_is_kept_in_the_link(metric_browser: Browser) -> None:
    browser = metric_browser
    drag = browser.find("#metric-graph .nsewdrag")
    width = drag.rect["width"]
    ActionChains(browser.driver).move_to_element_with_offset(
        drag, -width // 4, 0
    ).click_and_hold().move_by_offset(width // 3, 0).release().perform()
    browser.find("#metric-keep-range").click()
    browser.wait_until(lambda: "until=" in browser.path(), what="since and until in the URL")
    browser.wait_drawn()
    query = parse_query(browser.path().partition("?")[2])
    since = datetime.fromisoformat(query["since"][0])
    until = datetime.fromisoformat(query["until"][0])
    assert timedelta(days=20) < until - since < timedelta(days=120)  # a third of 6 months
    facts = browser.text(".metric-page .card .hint")
    assert "builds of HSC-RC2 · HSC-I · HSC on main" in facts
    shown = int(facts.split(" builds")[0].replace(",", ""))
    assert 50 < shown < 250  # of 343: only the zoomed window's builds
    assert "whole history" in browser.text()


def test_a_click_on_a_build_opens_its_job_page(metric_browser: Browser) -> None:
    browser = metric_browser
    job_id = browser.script(
        f"const gd = {_GRAPH}; const id = Number(gd._fullData[0].customdata[3]);"
        "gd.emit('plotly_click', {points: [{curveNumber: 0, pointNumber: 3, pointIndex: 3,"
        " customdata: id, x: gd._fullData[0].x[3], y: gd._fullData[0].y[3],"
        " data: gd.data[0], fullData: gd._fullData[0]}]}); return id;"
    )
    assert isinstance(job_id, int) and job_id > 0
    browser.wait_until(
        lambda: browser.path() == f"/dashboard/job/{job_id}", what="the job page's path"
    )


def test_the_plot_draws_with_webgl_and_is_screenshotted(metric_browser: Browser) -> None:
    browser = metric_browser
    browser.screenshot("metric")
    # plotly's WebGL traces compile their shaders at run time (regl): the page's CSP must let
    # them, else plotly shows this message instead of the builds.
    assert "WebGL is not supported" not in browser.text("#metric-graph")
    drawn = browser.script(f"return {_GRAPH}._fullData[0].x.length")
    assert drawn > 300
