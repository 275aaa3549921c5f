"""The requirements page: the VCD table, its trend and drill-in (service, render, browser)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from browser import Browser
from test_dashboard_overview import START, N, noise, post_overview_history

from specwatch.dashboard.pages.overview import overview
from specwatch.dashboard.pages.requirements import (
    fraction_status,
    level_badges,
    requirements,
    requirements_search,
)
from specwatch.dashboard.registry import PageRequest, parse_query
from specwatch.exceptions import NotFoundError
from specwatch.metrics.requirements import LevelCounts
from specwatch.metrics.verification import Status
from specwatch.services.context import ProcessContext
from specwatch.services.overview import OverviewService


def text_of(component: Any) -> str:
    """The text a component tree renders (its string children, depth first)."""
    if component is None:
        return ""
    if isinstance(component, str | int | float):
        return str(component)
    if isinstance(component, list | tuple):
        return "".join(text_of(child) for child in component)
    return text_of(getattr(component, "children", None))


# --- pure ----------------------------------------------------------------------------------------


def test_fraction_words_never_rely_on_colour() -> None:
    assert fraction_status(1.0) == ("pass", "verified")
    assert fraction_status(0.8) == ("minimum", "partly verified")
    assert fraction_status(0.0) == ("fail", "not verified")
    assert fraction_status(None) == ("no data", "not tested")


def test_level_badges_count_each_level_with_specs() -> None:
    levels = {
        "minimum": LevelCounts(2, 0, 0),
        "design": LevelCounts(1, 1, 0),
        "stretch": LevelCounts(0, 0, 0),
    }
    badges = level_badges(levels)
    assert [text_of(b) for b in badges] == ["minimum 2/2", "design 1/2"]
    classes = [getattr(b, "className", "") for b in badges]
    assert "badge-ok" in classes[0] and "badge-bad" in classes[1]
    assert "1 fail" in getattr(badges[1], "title", "")
    assert text_of(level_badges({})) == "no spec tested"


def test_a_dataset_choice_keeps_the_drill_in() -> None:
    search = "?dataset=A&req=DMS-REQ-0029"
    assert requirements_search(search, shown="A", dataset="A") == search
    assert requirements_search(search, shown="A", dataset="B") == "?dataset=B&req=DMS-REQ-0029"
    assert requirements_search("", shown="A", dataset="B") == "?dataset=B"


# --- service and render on every stack -----------------------------------------------------------


async def test_requirement_trends_and_detail(context: ProcessContext) -> None:
    await post_overview_history(context)
    service = OverviewService(context.sessionmaker)
    trends = await service.requirement_trends(dataset="D1")
    assert len(trends.times) == N and trends.times[-1] == START + timedelta(hours=N - 1)
    # PA1 passes design (5 mmag) until its step at build 8; AM1 never does.
    assert trends.fractions["REQ-PA"] == (1.0,) * 8 + (0.0,) * 8
    assert trends.fractions["REQ-AM"] == (0.0,) * N
    assert len((await service.requirement_trends(dataset="D1", builds=4)).times) == 4
    # The same functions as the VCD table: the trend ends where the table stands.
    status = await context.verification().requirements(dataset="D1", branch="main")
    assert {s.requirement.id: s.fraction for s in status.requirements} == {
        "REQ-AM": 0.0,
        "REQ-PA": 0.0,
    }
    detail = await service.requirement_detail("REQ-PA", dataset="D1")
    assert detail.requirement.title == "Photometry"
    assert [(c.spec.name, c.filter, c.verdict and c.verdict.status) for c in detail.checks] == [
        ("minimum", "r", Status.PASS),
        ("design", "r", Status.FAIL),
        ("stretch", "r", Status.FAIL),
    ]
    measured = detail.checks[0].verdict
    assert measured is not None and measured.value == pytest.approx(6.0 + noise(N - 1))
    assert (measured.threshold, measured.unit) == (8.0, "mmag")
    # A dataset without builds: every spec listed, none verified.
    empty = await service.requirement_detail("REQ-PA", dataset="nope")
    assert [c.verdict for c in empty.checks] == [None, None, None] and empty.jobs == []
    with pytest.raises(NotFoundError, match="no requirement 'REQ-NOPE'"):
        await service.requirement_detail("REQ-NOPE", dataset="D1")


async def test_the_pages_say_what_to_do_when_empty(context: ProcessContext) -> None:
    page = text_of(await requirements(PageRequest(context, {}, {})))
    assert "No requirements yet" in page and "specwatch requirements import" in page
    page = text_of(await overview(PageRequest(context, {}, {})))
    assert "No builds yet" in page
    assert "specwatch upload job.json" in page and "specwatch demo" in page


async def test_the_requirements_page_renders_the_table_and_the_drill_in(
    context: ProcessContext,
) -> None:
    await post_overview_history(context)
    query = parse_query("?dataset=D1&req=REQ-PA")
    page = text_of(await requirements(PageRequest(context, {}, query)))
    assert "REQ-PA · Photometry" in page
    assert "≤ 5 mmag" in page and f"{6.0 + noise(N - 1):.4g} mmag" in page
    assert "REQ-AMAstrometryAnalysis2 specs" in page  # the VCD row
    assert "minimum 0/1design 0/1" in page and "not verified" in page


# --- the page in a browser -----------------------------------------------------------------------


def _vcd(browser: Browser) -> dict[str, str]:
    rows = browser.find_all("#requirements-table tbody tr")
    return {row.text.split("\n", 1)[0].split(" ", 1)[0]: row.text for row in rows}


def test_requirements_page_shows_the_vcd_and_drills_in(demo_browser: Browser) -> None:
    demo_browser.open("/dashboard/requirements")
    rows = _vcd(demo_browser)
    assert set(rows) == {
        "DMS-REQ-0029",
        "DMS-REQ-0030",
        "DMS-REQ-0070",
        "OSS-REQ-0127",
        "OSS-REQ-0353",
        "OSS-REQ-0387",
    }
    assert "Test" in rows["DMS-REQ-0029"] and "6 specs" in rows["DMS-REQ-0029"]
    assert "design 2/2" in rows["DMS-REQ-0029"] and "100%" in rows["DMS-REQ-0029"]
    assert "verified" in rows["DMS-REQ-0029"]
    assert "not tested" in rows["OSS-REQ-0353"]  # its specs select CI-HiTS only
    assert "HSC-RC2" in demo_browser.text(".page-header")
    # A trend per requirement tested on HSC-RC2 (OSS-REQ-0353's specs select CI-HiTS only).
    trends = demo_browser.find_all("#requirements-table img.spark")
    assert len(trends) == 5
    assert "100% … 100% verified" in (trends[0].get_attribute("title") or "")
    demo_browser.screenshot("requirements")
    # Drill into a requirement: its specs, thresholds and latest verdicts, with units.
    demo_browser.find("#requirements-table a.req-id").click()
    demo_browser.wait_until(lambda: "req=DMS-REQ-0029" in demo_browser.path(), what="the URL")
    demo_browser.wait_for("#requirements-detail")
    demo_browser.wait_drawn()
    detail = demo_browser.text("#requirements-req")
    assert "DMS-REQ-0029 · Science Data Quality Assessment" in detail
    assert "validate_drp.PA1.design_gri" in detail and "≤ 5 mmag" in detail
    assert re.search(r"\d\.\d+ mmag", detail) and "pass" in detail and "fail" in detail
    link = demo_browser.find("#requirements-detail td:nth-child(2) a").get_attribute("href") or ""
    assert link.endswith("/dashboard/metric/validate_drp.PA1?dataset=HSC-RC2&filter=HSC-I")
    demo_browser.screenshot("requirements-drill-in")
    # Another dataset: the URL says so, the drill-in stays, the statuses change.
    demo_browser.choose("#requirements-dataset", "CI-HiTS")
    demo_browser.wait_until(lambda: "dataset=CI-HiTS" in demo_browser.path(), what="the URL")
    demo_browser.wait_until(lambda: "CI-HiTS" in demo_browser.text(".page-header"), what="redraw")
    demo_browser.wait_drawn()
    assert "req=DMS-REQ-0029" in demo_browser.path()
    hits = _vcd(demo_browser)
    # On CI-HiTS validate_drp.AM1 crossed its design threshold (the demo's step at build 205).
    assert "80%" in hits["DMS-REQ-0030"] and "partly verified" in hits["DMS-REQ-0030"]
    assert "design 1/2" in hits["OSS-REQ-0353"]


def test_an_unknown_requirement_says_so(demo_browser: Browser) -> None:
    demo_browser.open("/dashboard/requirements?req=NOPE-1")
    assert "no requirement 'NOPE-1'" in demo_browser.text()
