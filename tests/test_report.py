"""The verification report: requirement table, verdicts, changes since the last report, plots."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import nbformat
import numpy as np
import pytest
from sqlalchemy import func, select

from specwatch.metrics.formatting import format_number, format_quantity
from specwatch.report import render, render_html, render_markdown
from specwatch.report import tables as report_tables
from specwatch.services.context import ProcessContext
from specwatch.store.models import SQLReportRun

DEFINITIONS = {
    "metrics/rep.yaml": "PA1:\n  unit: mmag\nAM1:\n  unit: marcsec\n",
    "specs/rep/all.yaml": (
        "---\nname: design\nmetric: PA1\nlevel: design\nrequirements: [DMS-REQ-0029]\n"
        "threshold: {value: 5.5, unit: mmag, operator: '<='}\n"
        "---\nname: design\nmetric: AM1\nlevel: design\nrequirements: [DMS-REQ-0030]\n"
        "threshold: {value: 10, unit: marcsec, operator: '<='}\n"
    ),
}


def build_body(n: int, *measurements: tuple[str, float, str]) -> bytes:
    """Build ``n`` of HSC-RC2 on main, a day after build ``n - 1`` (from 2026-09-01)."""
    day = datetime(2026, 9, 1, tzinfo=UTC).toordinal() + n
    body = {
        "measurements": [{"metric": m, "value": v, "unit": u} for m, v, u in measurements],
        "meta": {
            "dataset": "HSC-RC2",
            "branch": "main",
            "commit": f"{n:040x}",
            "time": f"{datetime.fromordinal(day):%Y-%m-%d}T00:00:00Z",
        },
    }
    return json.dumps(body).encode()


async def load(context: ProcessContext) -> None:
    await context.definitions().import_files(DEFINITIONS)
    await context.verification().import_requirements(
        "- {id: DMS-REQ-0029, title: Photometric repeatability, method: Test}\n", source="m.yaml"
    )
    rng = np.random.default_rng(3)
    for n in range(30):
        pa1 = 5.0 + (1.0 if n >= 20 else 0.0) + rng.normal(0, 0.05)
        am1 = 8.0 + rng.normal(0, 0.1)
        await context.jobs().ingest(
            build_body(n, ("rep.PA1", pa1, "mmag"), ("rep.AM1", am1, "marcsec"))
        )
    regressions = context.regressions()
    await regressions.detect_many(await regressions.all_keys())


async def test_report_formats(context: ProcessContext) -> None:
    await load(context)
    data = await context.report().build("HSC-RC2")
    assert data.jobs[0].context.commit == f"{29:040x}"
    markdown = render_markdown(data)
    assert "# Verification report: HSC-RC2" in markdown
    assert "| DMS-REQ-0029 | Photometric repeatability | Test | 0 % | 0/0 | 0/1 | 0/0 |" in markdown
    assert "| DMS-REQ-0030 |  | Test | 100 % | 0/0 | 1/1 | 0/0 |" in markdown
    assert "| rep.PA1 | rep.PA1.design | design | 6." in markdown
    assert " mmag | ≤ 5.5 mmag | fail |" in markdown
    assert "| 2026-09-21 00:00 | rep.PA1 | 4.9" in markdown  # the change: build 20's day
    assert " mmag → 6." in markdown
    assert "worse | open |" in markdown
    assert data.plots[0].metric.full_name == "rep.PA1"  # the regression first
    html = render_html(data)
    assert html.startswith("<!doctype html>")
    assert "plotly" in html
    assert html.count('class="plotly-graph-div"') == len(data.plots)


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
async def test_notebook_is_executed(context: ProcessContext) -> None:
    await load(context)
    text = render(await context.report().build("HSC-RC2", record=False), "ipynb")
    notebook = nbformat.reads(text, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code)
    plots = [
        o
        for cell in code
        for o in cell.outputs
        if "application/vnd.plotly.v1+json" in o.get("data", {})
    ]
    assert len(plots) == 2
    figure = plots[0]["data"]["application/vnd.plotly.v1+json"]
    assert figure["layout"]["title"]["text"] == "rep.PA1"
    assert len(figure["data"][0]["y"]) == 30


async def report_runs(context: ProcessContext) -> int:
    async with context.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(SQLReportRun)) or 0)


async def test_reports_of_one_build_show_the_same_changes_in_any_format(
    context: ProcessContext,
) -> None:
    await load(context)
    service = context.report()
    markdown = render_markdown(await service.build("HSC-RC2"))
    again = await service.build("HSC-RC2")  # the same build, as html: nothing is 'used up'
    page = render_html(again)
    section = markdown.split("## Changes since the previous report\n")[1]
    assert "| 2026-09-21 00:00 | rep.PA1 |" in section
    assert "Changes: all (no report of an earlier build)." in markdown
    assert [row[:2] for row in report_tables(again)["changes"][1]] == [
        ["2026-09-21 00:00", "rep.PA1"]
    ]
    assert "<td>2026-09-21 00:00</td><td>rep.PA1</td>" in page
    third = render_markdown(await service.build("HSC-RC2"))
    assert third.split("## Changes since the previous report\n")[1] == section
    assert await report_runs(context) == 1  # one run per build reported

    # The next build's report lists the changes since the report of build 29: none.
    await context.jobs().ingest(build_body(30, ("rep.PA1", 6.0, "mmag"), ("rep.AM1", 8.0, "")))
    await context.deliverer.drain()
    regressions = context.regressions()
    await regressions.detect_many(await regressions.all_keys())
    later = await service.build("HSC-RC2")
    assert later.previous_report == datetime(2026, 9, 30, tzinfo=UTC)
    assert later.changes == []
    markdown = render_markdown(later)
    assert "Changes since the previous report, of the build of 2026-09-30 00:00 UTC." in markdown
    assert markdown.endswith("## Changes since the previous report\n\n_none_\n")
    assert (await service.build("HSC-RC2")).previous_report == later.previous_report
    assert await report_runs(context) == 2


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (2068199999.9999998, "2,068,000,000"),
        (1.896e9, "1,896,000,000"),
        (0.1 + 0.2, "0.3"),
        (6.01234, "6.012"),
        (5.5, "5.5"),
        (-1234.5678, "-1,235"),
        (9999.7, "10,000"),
        (0.00012345, "0.0001234"),
        (1.5e-7, "1.5e-7"),
        (3.2e13, "3.2e13"),
        (0.0, "0"),
        (float("nan"), "—"),
        (None, "—"),
    ],
)
def test_numbers_have_four_significant_digits_and_no_noise(value: float | None, text: str) -> None:
    assert format_number(value) == text


def test_quantities_carry_their_unit() -> None:
    assert format_quantity(2068199999.9999998, "B") == "2,068,000,000 B"
    assert format_quantity(12.5, "%") == "12.5 %"
    assert format_quantity(0.75, "") == "0.75"
    assert format_quantity(None, "mmag") == "—"
    assert format_number(9.0708, 3, signed=True) == "+9.07"


async def test_report_values_are_readable_and_carry_the_unit(context: ProcessContext) -> None:
    await context.definitions().import_files(
        {
            "metrics/mem.yaml": "RSS:\n  unit: B\n",
            "specs/mem/rss.yaml": (
                "name: design\nmetric: RSS\nlevel: design\n"
                "threshold: {value: 2.5, unit: GB, operator: '<='}\n"
            ),
        }
    )
    rng = np.random.default_rng(5)
    for n in range(30):
        rss_mb = (2068.2 if n >= 20 else 1896.2) + rng.normal(0, 0.5)
        await context.jobs().ingest(build_body(n, ("mem.RSS", rss_mb, "MB")))
    await context.jobs().ingest(build_body(30, ("mem.RSS", 2068.2, "MB")))  # 2068199999.9999998 B
    regressions = context.regressions()
    await regressions.detect_many(await regressions.all_keys())
    data = await context.report().build("HSC-RC2", record=False)
    [verdict] = report_tables(data)["verdicts"][1]
    assert verdict[3:] == ["2,068,000,000 B", "≤ 2,500,000,000 B", "pass"]
    [change] = report_tables(data)["changes"][1]
    assert change[1] == "mem.RSS"
    assert re.fullmatch(r"1,896,000,000 B → 2,068,000,000 B \(\+9\.0\d %\)", change[2])
    assert re.fullmatch(r"\+\d{1,3}(,\d{3})*(\.\d+)?", change[3])  # σ, no exponent or noise
    markdown = render_markdown(data)
    assert "| 1,896,000,000 B → 2,068,000,000 B (+9.0" in markdown
    assert "e+0" not in markdown and "99999" not in markdown
