"""The pull-request page: the compare figure (pure), the service on every stack, the page in a
real browser."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from browser import Browser
from selenium.webdriver.remote.webelement import WebElement
from served import ServedSpecwatch

from specwatch.dashboard.compare_figures import comparison_figure
from specwatch.dashboard.pages.pr import choose_base, parse_number
from specwatch.exceptions import InvalidInputError, NotFoundError
from specwatch.metrics.compare import Outcome
from specwatch.services.builds import BuildService, BuildValue
from specwatch.services.context import ProcessContext

START = datetime(2026, 6, 1, tzinfo=UTC)


def attr(element: WebElement, name: str) -> str:
    """An attribute of an element ("" when absent)."""
    return element.get_attribute(name) or ""


# --- the figure --------------------------------------------------------------------------------


def values(*pairs: tuple[int, float], commit: str = "c0ffee") -> list[BuildValue]:
    return [BuildValue(job, START + timedelta(hours=job), value, commit) for job, value in pairs]


def test_the_compare_figure_draws_baseline_band_and_pr_builds() -> None:
    base = values((1, 4.0), (2, 4.2), (3, 3.8))
    head = values((10, 6.0), (11, 6.2), commit="badc0de")
    figure = comparison_figure(
        "validate_drp.PA1",
        "mmag",
        context="HSC-RC2 · HSC-I",
        base=base,
        head=head,
        mean=4.0,
        std=0.2,
        delta_sigma=10.0,
    )
    band, mean, baseline, pr = figure.data
    # The band is where a value is within noise: mean ± 3σ, across every build shown.
    assert min(band.y) == pytest.approx(3.4) and max(band.y) == pytest.approx(4.6)
    assert band.fill == "toself" and "3σ" in band.name
    assert set(band.x) == {"2026-06-01 01:00:00", "2026-06-01 11:00:00"}
    assert list(mean.y) == [4.0, 4.0]
    assert list(baseline.y) == [4.0, 4.2, 3.8] and list(baseline.customdata) == [1, 2, 3]
    assert baseline.x[0] == "2026-06-01 01:00:00"  # UTC, as plotly's date axis reads it
    assert list(pr.y) == [6.0, 6.2] and list(pr.customdata) == [10, 11]
    assert pr.marker.symbol == "diamond" and pr.marker.color != baseline.marker.color
    assert pr.name == "PR builds" and baseline.name == "baseline builds"
    assert "6 mmag" in pr.text[0] and "badc0de" in pr.text[0]
    title = figure.layout.title.text
    assert "validate_drp.PA1 [mmag]" in title and "HSC-RC2 · HSC-I" in title and "+10σ" in title
    assert figure.layout.yaxis.title.text == "mmag"


def test_the_compare_figure_without_spread_has_no_band_and_a_bare_unit() -> None:
    figure = comparison_figure(
        "p.RATIO", "", context="D", base=values((1, 0.5)), head=values((2, 0.9)), mean=0.5, std=None
    )
    assert [trace.name for trace in figure.data] == [
        "baseline mean",
        "baseline builds",
        "PR builds",
    ]
    assert figure.layout.title.text.startswith("p.RATIO<br>")
    assert figure.layout.yaxis.title.text == "value"


def test_the_compare_figure_escapes_untrusted_text() -> None:
    figure = comparison_figure(
        "x.<b>PA1</b>",
        "<i>mmag</i>",
        context="<img src=x onerror=alert(1)>",
        base=values((1, 1.0), commit="<script>"),
        head=values((2, 2.0)),
        mean=1.0,
        std=0.1,
    )
    title = figure.layout.title.text
    assert "<b>PA1" not in title and "&lt;b&gt;PA1&lt;/b&gt;" in title
    assert "<img" not in title and "&lt;img src=x" in title
    assert "<i>" not in figure.layout.yaxis.title.text
    hover = " ".join(figure.data[2].text)
    assert "<script>" not in hover and "&lt;script&gt;" in hover
    assert "&lt;i&gt;mmag" in hover


# --- the page's helpers ------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["abc", "-3", "1.5", "12345678901", ""])
def test_a_pr_number_is_a_positive_whole_number(text: str) -> None:
    with pytest.raises(InvalidInputError, match="is not a pull request number"):
        parse_number(text)
    assert parse_number("1063") == 1063


async def test_choosing_a_base_writes_the_query_string(context: ProcessContext) -> None:
    assert await choose_base(context, 1, None, " 1234 ", "?x=1") == "?x=1&base=1234"
    assert await choose_base(context, 1, None, "auto", "?base=1234&x=1") == "?x=1"
    assert await choose_base(context, None, 1, "", "?base=1234") == ""


# --- the service on every stack ----------------------------------------------------------------

DEFINITIONS = {
    "metrics/bp.yaml": "PA1: {unit: mmag}\nCOMP: {unit: '%', direction: higher}\n",
}
BASELINE = [4.0, 4.1, 3.9, 4.05, 3.95, 4.0]


def job(n: int, pa1: float, comp: float | None, **meta: Any) -> bytes:
    measurements: list[dict[str, Any]] = [{"metric": "bp.PA1", "value": pa1}]
    if comp is not None:
        measurements.append({"metric": "bp.COMP", "value": comp})
    defaults = {
        "dataset": "D",
        "filter": "r",
        "branch": "main",
        "commit": f"{n:040x}",
        "time": (START + timedelta(hours=n)).isoformat(),
    }
    return json.dumps({"measurements": measurements, "meta": {**defaults, **meta}}).encode()


async def test_the_pr_page_plots_each_regressed_metric(context: ProcessContext) -> None:
    await context.definitions().import_files(DEFINITIONS)
    jobs = context.jobs()
    base_ids = [
        (await jobs.ingest(job(n, value, 90.0 + n / 10))).id for n, value in enumerate(BASELINE)
    ]
    pr = {"branch": "tickets/DM-1", "pr": 77, "pr_url": "https://example.org/pull/77"}
    # Two builds of the PR; the newest is compared: PA1 regressed, COMP no longer measured.
    first = (await jobs.ingest(job(20, 5.5, 90.0, commit="a" * 40, **pr))).id
    newest = (await jobs.ingest(job(21, 6.0, None, commit="b" * 40, **pr))).id
    service = BuildService(context.sessionmaker)

    page = await service.pull_request_page(77)
    assert page.number == 77 and page.branches == ["tickets/DM-1"]
    assert page.pr_url == "https://example.org/pull/77"
    assert [j.id for j in page.result.head_jobs] == [newest]
    assert [j.id for j in page.builds] == [first, newest]
    assert page.counts == {Outcome.REGRESSED: 1, Outcome.MISSING: 1}
    [plot] = page.plots
    assert plot.item.metric == "bp.PA1" and plot.item.unit == "mmag"
    assert [v.job_id for v in plot.base] == base_ids  # oldest first
    assert [v.value for v in plot.base] == BASELINE
    assert [(v.job_id, v.value) for v in plot.head] == [(first, 5.5), (newest, 6.0)]
    assert plot.noise_k == 3.0

    # An explicit base: one build.
    given = await service.pull_request_page(77, str(base_ids[2]))
    assert [j.id for j in given.result.base_jobs] == [base_ids[2]]
    assert given.result.baseline == [f"D/r: {base_ids[2]} (given)"]

    with pytest.raises(NotFoundError) as missing:
        await service.pull_request_page(78)
    assert missing.value.location == ["query", "head"]
    with pytest.raises(InvalidInputError):
        await service.pull_request_page(0)


# --- the page in a browser ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_pr(demo_server: ServedSpecwatch) -> dict[str, Any]:
    compare: dict[str, Any] = demo_server.get("/api/v1/compare", head="pr:1063").json()
    return compare


def test_the_demo_pr_shows_its_regression_first_with_a_plot(
    demo_browser: Browser, demo_pr: dict[str, Any]
) -> None:
    demo_browser.open("/dashboard/pr/1063")
    demo_browser.wait_for("#pr-regressed .js-plotly-plot")
    assert "Pull request #1063" in demo_browser.text()
    assert "tickets/DM-47311" in demo_browser.text(".page-header")
    pr_link = demo_browser.find(".page-header a")
    assert attr(pr_link, "href") == "https://github.com/lsst/pipe_tasks/pull/1063"
    # Worst first: the demo's regression leads the table, with its word and its units.
    rows = demo_browser.find_all("#pr-table tbody tr")
    first = rows[0].text
    assert first.startswith("regressed") and "validate_drp.PA1" in first
    assert " mmag" in first and "%" in first and "σ" in first
    regressed = {r["dataset"] for r in demo_pr["metrics"] if r["verdict"] == "regressed"}
    pa1_rows = [r.text for r in rows if "validate_drp.PA1" in r.text]
    assert {d for d in regressed if any(d in text for text in pa1_rows)} == regressed
    head = next(r for r in demo_pr["metrics"] if r["verdict"] == "regressed")
    assert f"job {head['head_job']}" in " ".join(pa1_rows)
    metric = rows[0].find_element("css selector", "a.pr-metric")
    assert "/dashboard/metric/validate_drp.PA1?dataset=" in attr(metric, "href")
    # One small plot per regressed metric, titled with the metric and its unit.
    plots = demo_browser.find_all("#pr-regressed .js-plotly-plot")
    assert len(plots) == len(regressed)
    titles = demo_browser.script(
        "return Array.from(document.querySelectorAll('#pr-regressed .gtitle'))"
        ".map(t => t.textContent)"
    )
    assert all("validate_drp.PA1 [mmag]" in title for title in titles), titles
    # The CI runs of the PR's newest build, and the baseline it was compared with.
    runs = demo_browser.find_all(".pr-summary a[href^='https://ci.example.org/']")
    assert runs and all("stack-os-matrix" in attr(a, "href") for a in runs)
    assert "main builds up to merge base" in demo_browser.text(".pr-summary")
    # The rest (within noise) is folded away.
    assert not demo_browser.find("#pr-table-quiet").is_displayed()
    demo_browser.screenshot("pr", full_page=True)


def test_a_click_on_a_plotted_build_opens_its_job(demo_browser: Browser) -> None:
    demo_browser.open("/dashboard/pr/1063")
    demo_browser.wait_for("#pr-regressed .js-plotly-plot")
    job_id = demo_browser.script(
        "const gd = document.querySelector('#pr-regressed .js-plotly-plot');"
        "const trace = gd.data[gd.data.length - 1];"
        "gd.emit('plotly_click', {points: [{curveNumber: gd.data.length - 1, pointNumber: 0,"
        " x: trace.x[0], y: trace.y[0], customdata: trace.customdata[0]}]});"
        "return trace.customdata[0];"
    )
    demo_browser.wait_until(
        lambda: demo_browser.path() == f"/dashboard/job/{job_id}", what="the job page"
    )
    demo_browser.wait_drawn("#job-context")
    assert f"Job {job_id}" in demo_browser.text()


def test_an_explicit_base_is_chosen_in_the_page(
    demo_browser: Browser, demo_server: ServedSpecwatch
) -> None:
    base = demo_server.get("/api/v1/jobs", branch="main", dataset="HSC-RC2", limit=1).json()
    base_id = base["jobs"][0]["id"]
    demo_browser.open("/dashboard/pr/1063")
    field = demo_browser.find("#pr-base")
    field.send_keys(str(base_id))
    demo_browser.find("#pr-base-apply").click()
    demo_browser.wait_until(
        lambda: demo_browser.path() == f"/dashboard/pr/1063?base={base_id}", what="the base"
    )
    demo_browser.wait_until(
        lambda: f"{base_id} (given)" in demo_browser.text(".pr-summary"), what="the given base"
    )


def test_a_pr_without_builds_says_how_to_post_one(demo_browser: Browser) -> None:
    demo_browser.open("/dashboard/pr/4242")
    text = demo_browser.text("#pr-empty")
    assert "No build of pull request #4242" in text
    assert "specwatch upload" in text and "SPECWATCH_SERVER" in text
    assert "--meta pr=4242" in text
    demo_browser.open("/dashboard/pr/x1")
    assert "'x1' is not a pull request number" in demo_browser.text()
