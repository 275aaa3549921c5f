"""The verification report: requirement table, verdicts, changes since the last report, plots."""

from __future__ import annotations

import json

import nbformat
import numpy as np
import pytest

from specwatch.report import render, render_html, render_markdown
from specwatch.services.context import ProcessContext

DEFINITIONS = {
    "metrics/rep.yaml": "PA1:\n  unit: mmag\nAM1:\n  unit: marcsec\n",
    "specs/rep/all.yaml": (
        "---\nname: design\nmetric: PA1\nlevel: design\nrequirements: [DMS-REQ-0029]\n"
        "threshold: {value: 5.5, unit: mmag, operator: '<='}\n"
        "---\nname: design\nmetric: AM1\nlevel: design\nrequirements: [DMS-REQ-0030]\n"
        "threshold: {value: 10, unit: marcsec, operator: '<='}\n"
    ),
}


async def load(context: ProcessContext) -> None:
    await context.definitions().import_files(DEFINITIONS)
    await context.verification().import_requirements(
        "- {id: DMS-REQ-0029, title: Photometric repeatability, method: Test}\n", source="m.yaml"
    )
    rng = np.random.default_rng(3)
    for n in range(30):
        pa1 = 5.0 + (1.0 if n >= 20 else 0.0) + rng.normal(0, 0.05)
        body = {
            "measurements": [
                {"metric": "rep.PA1", "value": pa1, "unit": "mmag"},
                {"metric": "rep.AM1", "value": 8.0 + rng.normal(0, 0.1), "unit": "marcsec"},
            ],
            "meta": {
                "dataset": "HSC-RC2",
                "branch": "main",
                "commit": f"{n:040x}",
                "time": f"2026-09-{n + 1:02d}T00:00:00Z",
            },
        }
        await context.jobs().ingest(json.dumps(body).encode())
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
    assert "| <= 5.5 | mmag | fail |" in markdown
    assert "| 2026-09-21 00:00 | rep.PA1 | 4.9" in markdown  # the change: build 20's day
    assert "worse | open |" in markdown
    assert data.plots[0].metric.full_name == "rep.PA1"  # the regression first
    html = render_html(data)
    assert html.startswith("<!doctype html>")
    assert "plotly" in html
    assert html.count('class="plotly-graph-div"') == len(data.plots)

    # The next report lists only what changed since this one.
    again = render_markdown(await context.report().build("HSC-RC2"))
    assert "## Changes since the previous report\n\n_none_" in again


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
