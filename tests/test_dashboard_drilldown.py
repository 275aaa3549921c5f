"""The drill-down: blob figures (pure) and the page in a real browser on the demo history."""

from __future__ import annotations

import html
import math
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
import plotly.graph_objects as go
import pytest
from api_helpers import real_job
from browser import Browser
from served import ServedSpecwatch

from specwatch.dashboard.blob_figures import (
    MAX_POINTS,
    BlobArray,
    BlobPlotError,
    default_pair,
    histogram_figure,
    read_blob,
    reference_lines,
    scatter_figure,
    star_rms_figure,
    verification_figures,
)
from specwatch.dashboard.figures import SpecLine
from specwatch.metrics.formatting import format_quantity
from specwatch.metrics.model import Blob

XSS = '<img src=x onerror="window.__pwned=1">'


def datum(value: Any, unit: str = "", label: str = "", description: str = "") -> dict[str, Any]:
    return {"value": value, "unit": unit, "label": label, "description": description}


def shapes_at(figure: go.Figure, axis: str) -> list[float]:
    return sorted(float(shape[f"{axis}0"]) for shape in figure.layout.shapes)


def notes_of(figure: go.Figure) -> list[str]:
    return [a.text for a in figure.layout.annotations]


# --- reading blobs -----------------------------------------------------------------------------


def test_a_blob_is_read_into_arrays_and_scalars_with_nan_for_missing_values() -> None:
    content = read_blob(
        Blob(
            "id1",
            "validate_drp.AM1",
            {
                "rmsDistMas": datum([5.0, None, "NaN", 7.5, 9.0, 12.0], "marcsec", "RMS"),
                "D": datum(5.0, "arcmin", "Distance"),
                "annulus": datum([4, 6], "arcmin"),
                "filterName": datum("r"),
                "useJointCal": datum(False),
                "words": datum(["a", "b", "c", "d", "e", "f"]),
                "bare": [1, 2, 3, 4, 5, 6],
            },
        )
    )
    assert [a.name for a in content.arrays] == ["rmsDistMas", "bare"]
    rms = content.arrays[0]
    assert (rms.size, rms.finite, rms.unit, rms.label) == (6, 4, "marcsec", "RMS")
    assert math.isnan(rms.values[1]) and math.isnan(rms.values[2])
    scalars = {s.name: (s.text, s.unit, s.number) for s in content.scalars}
    assert scalars["D"] == ("5", "arcmin", 5.0)
    assert scalars["annulus"] == ("[4, 6]", "arcmin", None)  # short arrays are listed
    assert scalars["filterName"][0] == "r" and scalars["useJointCal"][0] == "false"
    assert scalars["words"][0] == "[a, b, c, d, … (6 items)]"


# --- the use cases -----------------------------------------------------------------------------


def demo_pa1_blob(n: int = 40) -> Blob:
    rng = np.random.default_rng(3)
    return Blob(
        "pa1",
        "validate_drp.PA1",
        {
            "magResid": datum(
                [round(float(v), 4) for v in rng.normal(0, 5, n)], "mmag", "Magnitude residual"
            ),
            "magMean": datum(
                [round(float(v), 4) for v in rng.uniform(17, 21.5, n)], "mag", "Mean magnitude"
            ),
        },
    )


def test_pa1_plots_rms_against_magnitude_with_units_and_the_measured_value() -> None:
    specs = [SpecLine("validate_drp.PA1.design_gri", "design", 5.0, "<=")]
    figures = verification_figures(
        "validate_drp.PA1", 4.52612, "mmag", [read_blob(demo_pa1_blob())], specs
    )
    assert len(figures) == 1
    figure = figures[0]
    assert figure.layout.xaxis.title.text == "magMean · Mean magnitude (mag)"
    assert figure.layout.yaxis.title.text == "magResid · Magnitude residual (mmag)"
    assert len(figure.data[0].x) == 40
    assert shapes_at(figure, "y") == [4.52612, 5.0]  # horizontal lines
    assert figure.layout.yaxis.type == "linear"  # residuals: negative values too
    assert notes_of(figure) == ["validate_drp.PA1 = 4.526 mmag", "design &lt;= 5 mmag"]


def test_the_real_pa1_per_star_rms_is_converted_to_the_metric_unit() -> None:
    job = real_job()
    blobs = {b["identifier"]: Blob(b["identifier"], b["name"], b["data"]) for b in job["blobs"]}
    pa1 = next(m for m in job["measurements"] if m["metric"] == "validate_drp.PA1")
    contents = [read_blob(blobs[ref]) for ref in pa1["blob_refs"]]
    (figure,) = verification_figures("validate_drp.PA1", pa1["value"], "mmag", contents)
    # MatchedMultiVisitDataset's magrms (mag, 4,894 stars) is drawn in mmag.
    assert figure.layout.yaxis.title.text.startswith("magrms") and "(mmag)" in (
        figure.layout.yaxis.title.text
    )
    assert figure.layout.xaxis.title.text.startswith("mag ")
    magrms = next(c for c in contents if c.name == "MatchedMultiVisitDataset").array("magrms")
    assert magrms is not None
    finite = magrms.values[np.isfinite(magrms.values)]
    assert np.nanmax(figure.data[0].y) == pytest.approx(finite.max() * 1000)
    assert shapes_at(figure, "y") == [pytest.approx(16.72336186802337)]
    # Faint stars reach a thousand times the bright ones' RMS: a log axis, lines labelled
    # at their log10 (plotly places annotations so on log axes).
    assert figure.layout.yaxis.type == "log"
    assert figure.layout.annotations[0].y == pytest.approx(math.log10(16.72336186802337))


def test_the_real_amx_and_afx_show_the_pair_distribution_with_their_lines() -> None:
    job = real_job()
    blobs = {b["identifier"]: Blob(b["identifier"], b["name"], b["data"]) for b in job["blobs"]}
    measured = {m["metric"]: m for m in job["measurements"]}
    am1 = measured["validate_drp.AM1"]
    specs = [
        SpecLine("validate_drp.AM1.design", "design", 10.0, "<="),
        SpecLine("validate_drp.AM1.minimum", "minimum", 20.0, "<="),
    ]
    contents = [read_blob(blobs[ref]) for ref in am1["blob_refs"]]
    figures = verification_figures("validate_drp.AM1", am1["value"], "marcsec", contents, specs)
    # AM1's refs hold the per-star photometry too, but AM1 is no magnitude: one plot.
    assert len(figures) == 1
    (figure,) = figures
    assert isinstance(figure.data[0], go.Bar)
    assert sum(figure.data[0].y) == 2192  # every pair, binned
    assert figure.layout.xaxis.title.text == "rmsDistMas · RMS (marcsec)"
    assert shapes_at(figure, "x") == [pytest.approx(am1["value"]), 10.0, 20.0]
    assert "minimum &lt;= 20 marcsec" in notes_of(figure)

    af1 = measured["validate_drp.AF1_design"]
    contents = [read_blob(blobs[ref]) for ref in af1["blob_refs"]]
    (figure,) = verification_figures(
        "validate_drp.AF1_design", af1["value"], "%", contents, [SpecLine("s", "design", 10, "<=")]
    )
    # A % cannot be drawn on an angle axis; the ADx the fraction is counted beyond can.
    assert shapes_at(figure, "x") == [pytest.approx(20.410492329618577)]
    assert notes_of(figure) == ["ADx (validate_drp.AD1_design) = 20.41 marcsec"]


def test_reference_lines_are_converted_and_unconvertible_ones_left_out() -> None:
    specs = [SpecLine("x.AM1.design", "design", 10.0, "<=")]
    lines = reference_lines("x.AM1", 7.5, "marcsec", specs, "arcsec")
    assert [line.value for line in lines] == [pytest.approx(0.0075), pytest.approx(0.01)]
    assert reference_lines("x.AF1", 7.5, "%", specs, "marcsec") == []
    assert [line.label for line in reference_lines("x", math.nan, "mmag", [], "mmag")] == []


# --- the generic view --------------------------------------------------------------------------


def test_a_histogram_counts_finite_values_and_says_how_many_were_not() -> None:
    array = BlobArray("snr", np.array([1.0, math.nan, 2.0, 2.5, math.inf, 3.0]), "")
    figure = histogram_figure(array, bins=4)
    assert sum(figure.data[0].y) == 4
    assert "4 of 6 values finite" in figure.layout.title.text
    assert figure.layout.xaxis.title.text == "snr (dimensionless)"
    empty = histogram_figure(BlobArray("none", np.array([math.nan] * 6), "s"))
    assert not empty.data and notes_of(empty) == ["no finite value to draw"]


def test_a_scatter_leaves_out_nan_pairs_and_refuses_arrays_of_different_lengths() -> None:
    x = BlobArray("mag", np.array([17.0, 18.0, math.nan, 20.0, 21.0]), "mag")
    y = BlobArray("snr", np.array([300.0, 120.0, 80.0, math.nan, 20.0]), "")
    figure = scatter_figure(x, y)
    assert list(figure.data[0].x) == [17.0, 18.0, 21.0]
    assert list(figure.data[0].y) == [300.0, 120.0, 20.0]
    assert "2 of 5 without a finite value left out" in figure.layout.title.text
    assert figure.layout.xaxis.title.text == "mag (mag)"
    short = BlobArray("dist", np.arange(4.0), "marcsec")
    with pytest.raises(BlobPlotError, match="different lengths"):
        scatter_figure(x, short)
    with pytest.raises(BlobPlotError, match="different lengths"):
        star_rms_figure(x, BlobArray("rms", np.arange(4.0), "mag"), unit="mmag")
    with pytest.raises(BlobPlotError, match="not convertible to mmag"):
        star_rms_figure(x, short, unit="mmag")


def test_a_large_scatter_is_thinned_to_the_bound_and_says_so() -> None:
    n = MAX_POINTS * 2 + 10
    x = BlobArray("a", np.arange(n, dtype=np.float64), "s")
    y = BlobArray("b", np.arange(n, dtype=np.float64) * 2, "s")
    figure = scatter_figure(x, y)
    assert len(figure.data[0].x) <= MAX_POINTS
    assert isinstance(figure.data[0], go.Scattergl)
    assert f"of {n:,} points (every 3)" in figure.layout.title.text


def test_untrusted_labels_are_escaped_in_figures() -> None:
    content = read_blob(
        Blob(
            "evil",
            XSS,
            {
                XSS: datum(list(range(10)), unit=XSS, label=XSS),
                "mag": datum([17.0 + i / 4 for i in range(10)], "mag", label=XSS),
                "rms": datum([float(i) for i in range(10)], "mmag", label=XSS),
                "rmsDistMas": datum([float(i) for i in range(10)], "marcsec", label=XSS),
            },
        )
    )
    figures = [
        *verification_figures(XSS, 3.0, "mmag", [content], [SpecLine(XSS, None, 5, "<=")]),
        *(histogram_figure(array) for array in content.arrays),
        scatter_figure(content.arrays[0], content.arrays[1]),
    ]
    assert len(figures) == 7  # PA1-like, pair separations, 4 histograms, one scatter
    escaped = html.escape(XSS)
    for figure in figures:
        text = figure.to_json()
        assert "<img" not in text, text[:400]
        assert escaped in text or "&lt;img" in text


def test_the_default_pair_prefers_magnitude_and_rms() -> None:
    content = read_blob(demo_pa1_blob())
    assert default_pair(content) == ("magMean", "magResid")
    lone = read_blob(Blob("x", "x", {"only": datum([1, 2, 3, 4, 5])}))
    assert default_pair(lone) is None


# --- the page in a browser ---------------------------------------------------------------------


def job_with_blobs(server: ServedSpecwatch, metric: str) -> dict[str, Any]:
    """A main HSC-RC2 build of the demo whose measurement of ``metric`` has blobs."""
    jobs = server.get("/api/v1/jobs", branch="main", dataset="HSC-RC2", limit=40).json()["jobs"]
    for summary in jobs:
        job: dict[str, Any] = server.get(f"/api/v1/jobs/{summary['id']}").json()
        if any(m["metric"] == metric and m["blob_refs"] for m in job["measurements"]):
            return job
    raise AssertionError("no demo job with blobs among the last 40 main builds")


def measured(job: dict[str, Any], metric: str) -> dict[str, Any]:
    found: dict[str, Any] = next(m for m in job["measurements"] if m["metric"] == metric)
    return found


def plot(browser: Browser, css: str) -> Any:
    """A drawn plotly figure's data and layout (as plotly holds them in the page)."""
    browser.wait_for(f"{css} .js-plotly-plot .main-svg")
    return browser.script(
        "const gd = document.querySelector(arguments[0] + ' .js-plotly-plot');"
        "return {n: gd._fullData.map(t => t.x.length), x: gd.layout.xaxis.title.text,"
        " y: gd.layout.yaxis.title.text, title: gd.layout.title.text,"
        " shapes: (gd.layout.shapes || []).map(s => [s.x0, s.y0]),"
        " notes: (gd.layout.annotations || []).map(a => a.text)};",
        css,
    )


def test_pa1_drilldown_draws_rms_vs_magnitude_and_the_generic_view(
    demo_browser: Browser, demo_server: ServedSpecwatch
) -> None:
    job = job_with_blobs(demo_server, "validate_drp.PA1")
    pa1 = measured(job, "validate_drp.PA1")
    demo_browser.open(f"/dashboard/drilldown/{job['id']}/validate_drp.PA1")
    page = demo_browser.text()
    assert "Drill-down: validate_drp.PA1" in page
    assert format_quantity(pa1["value"], "mmag") in page
    assert "design: pass (<= 5 mmag)" in page or "design: fail (<= 5 mmag)" in page

    usecase = plot(demo_browser, "#drilldown-usecase-0")
    assert usecase["x"] == "magMean · Mean magnitude (mag)"
    assert usecase["y"] == "magResid · Magnitude residual (mmag)"
    assert usecase["n"] == [40]
    assert next(y for _, y in usecase["shapes"]) == pytest.approx(pa1["value"])
    assert f"validate_drp.PA1 = {format_quantity(pa1['value'], 'mmag')}" in usecase["notes"]

    # The generic view: a scatter of two arrays, a histogram of each.
    scatter = plot(demo_browser, "#drilldown-scatter")
    assert scatter["title"] == "magResid vs magMean" and scatter["n"] == [40]
    histograms = demo_browser.find_all(".drilldown-histograms .js-plotly-plot")
    assert len(histograms) == 2
    assert plot(demo_browser, ".drilldown-hist")["x"] == "magResid · Magnitude residual (mmag)"
    assert "This blob has no scalar values." in demo_browser.text()

    # Links back to the job and to the metric's history.
    hrefs = [a.get_attribute("href") or "" for a in demo_browser.find_all(".drilldown-links a")]
    assert hrefs[0].endswith(f"/dashboard/job/{job['id']}")
    assert "/dashboard/metric/validate_drp.PA1?dataset=HSC-RC2&filter=HSC-I" in hrefs[1]
    demo_browser.screenshot("drilldown")


def test_choosing_the_scatter_arrays_writes_the_url_which_restores_them(
    demo_browser: Browser, demo_server: ServedSpecwatch
) -> None:
    job = job_with_blobs(demo_server, "validate_drp.PA1")
    demo_browser.open(f"/dashboard/drilldown/{job['id']}/validate_drp.PA1")
    plot(demo_browser, "#drilldown-scatter")
    demo_browser.choose("#drilldown-y", "magMean")
    demo_browser.wait_until(lambda: "y=magMean" in demo_browser.path(), what="the URL")
    query = parse_qs(urlparse(demo_browser.path()).query)
    assert query == {"blob": ["validate_drp.PA1"], "x": ["magMean"], "y": ["magMean"]}
    demo_browser.wait_drawn()
    demo_browser.wait_until(
        lambda: plot(demo_browser, "#drilldown-scatter")["title"] == "magMean vs magMean",
        what="the new scatter",
    )

    # The link alone restores the view.
    link = demo_browser.path()
    demo_browser.open("/dashboard/")
    demo_browser.open(link)
    assert plot(demo_browser, "#drilldown-scatter")["title"] == "magMean vs magMean"
    assert demo_browser.text("#drilldown-x") == "magMean"

    # An unknown array in the link is said so, and the default pair drawn instead.
    demo_browser.open(f"/dashboard/drilldown/{job['id']}/validate_drp.PA1?x=nope&y=magResid")
    assert "no array 'nope' in this blob" in demo_browser.text("#drilldown-scatter-area")
    assert plot(demo_browser, "#drilldown-scatter")["title"] == "magResid vs magMean"


def test_am1_drilldown_shows_the_pair_distribution_with_spec_thresholds(
    demo_browser: Browser, demo_server: ServedSpecwatch
) -> None:
    job = job_with_blobs(demo_server, "validate_drp.AM1")
    am1 = measured(job, "validate_drp.AM1")
    demo_browser.open(f"/dashboard/drilldown/{job['id']}/validate_drp.AM1")
    usecase = plot(demo_browser, "#drilldown-usecase-0")
    assert usecase["x"] == "rmsDistMas (marcsec)"
    lines = sorted(x for x, _ in usecase["shapes"])
    assert lines == sorted([am1["value"], 5.0, 10.0, 20.0])  # measured, stretch/design/minimum
    assert (
        "design &lt;= 10 marcsec" in usecase["notes"]
        or "design <= 10 marcsec" in (usecase["notes"])
    )
    # One array: nothing to scatter, said so; its histogram is drawn.
    assert "fewer than two arrays" in demo_browser.text("#drilldown-scatter-area")
    assert len(demo_browser.find_all(".drilldown-histograms .js-plotly-plot")) == 1


def test_a_measurement_without_blobs_says_how_to_attach_them(
    demo_browser: Browser, demo_server: ServedSpecwatch
) -> None:
    job = job_with_blobs(demo_server, "validate_drp.PA1")
    demo_browser.open(f"/dashboard/drilldown/{job['id']}/validate_drp.TE1")
    empty = demo_browser.text(".empty-state")
    assert "carries no blobs" in empty and "blob_refs" in empty
    link = demo_browser.find(".empty-state a")
    assert (link.get_attribute("href") or "").endswith(f"/dashboard/job/{job['id']}")
    demo_browser.open(f"/dashboard/drilldown/{job['id']}/validate_drp.NOPE")
    assert "has no measurement of validate_drp.NOPE" in demo_browser.text()
    demo_browser.open("/dashboard/drilldown/x1/validate_drp.PA1")
    assert "is not a job id" in demo_browser.text()
    assert demo_browser.find_all(".js-plotly-plot") == []
