"""The verification report shows data as text: no tag, link or table cell from a job survives."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from api_helpers import context_of, import_demo, job_body, measurement
from fastapi import FastAPI

from specwatch.report import render_html, render_markdown, render_notebook, tables
from specwatch.services.report import ReportData

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
DATASET = f"RC2{SCRIPT}"
BRANCH = f"main{SCRIPT}"
COMMIT = f"c{IMG}"
TITLE = f"Photometry {IMG} [click](javascript:alert(3))"
NOTE = f"new PSF {SCRIPT} | `x` | {IMG}"
EVIL = (SCRIPT, IMG, "[click](javascript:")
RAW_TAG = re.compile(r"<\s*(script|img)\b", re.IGNORECASE)


async def evil_report(app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str]) -> ReportData:
    """A history whose meta carries HTML (dataset, branch, commit), a requirement whose title
    does, and a regression accepted with such a note."""
    context = context_of(app)
    await import_demo(client, auth)
    await context.verification().import_requirements(
        f"- {{id: DMS-REQ-0276, title: '{TITLE}', method: Test, specs: [demo.PA1.*]}}\n",
        source="m.yaml",
    )
    for n in range(24):
        value = 5.0 + (1.0 if n >= 16 else 0.0) + 0.05 * ((n * 7) % 5 - 2)
        body = job_body(
            measurement("demo.PA1", value, "mmag"),
            dataset=DATASET,
            branch=BRANCH,
            commit=f"{COMMIT}{n}",
            time=f"2026-09-{n + 1:02d}T00:00:00Z",
        )
        response = await client.post("/api/v1/jobs", json=body, headers=auth)
        assert response.status_code == 201, response.text
    await context.deliverer.drain()
    regressions = context.regressions()
    await regressions.detect_many(await regressions.all_keys())
    data = await context.report().build(DATASET, branch=BRANCH, record=False)
    [change] = data.changes
    assert change.id is not None
    await regressions.set_status(change.id, "accepted", NOTE)
    data = await context.report().build(DATASET, branch=BRANCH, record=False)
    assert data.changes[0].note == NOTE
    assert TITLE in {status.requirement.title for status in data.requirements}
    return data


def source(cell: dict[str, Any]) -> str:
    text = cell["source"]  # nbformat writes a list of lines
    return "".join(text) if isinstance(text, list) else str(text)


def assert_no_raw_markup(text: str) -> None:
    for evil in EVIL:
        assert evil not in text
    assert not RAW_TAG.search(text), RAW_TAG.search(text)


def assert_table_cells_kept(markdown: str, data: ReportData) -> None:
    """Every row of every table has as many cells as its header: no '|' of data splits one."""
    widths = {len(header) for header, _ in tables(data).values()}
    for line in markdown.splitlines():
        if line.startswith("| "):
            assert len(re.findall(r"(?<!\\)\|", line)) - 1 in widths, line


async def test_markdown_and_notebook_escape_the_data(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    data = await evil_report(app, client, auth)
    markdown = render_markdown(data)
    assert_no_raw_markup(markdown)
    assert_table_cells_kept(markdown, data)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markdown  # shown, as text
    assert "\\[click\\](javascript:alert(3))" in markdown
    assert "accepted: new PSF &lt;script&gt;alert(1)&lt;/script&gt; \\| \\`x\\` \\|" in markdown

    cells: list[dict[str, Any]] = json.loads(render_notebook(data, execute=False))["cells"]
    text = "\n".join(source(cell) for cell in cells if cell["cell_type"] == "markdown")
    assert_no_raw_markup(text)
    assert_table_cells_kept(text, data)
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    # The figures' data (a Python string in a code cell) escapes '<' too.
    assert_no_raw_markup("\n".join(source(cell) for cell in cells))


async def test_html_escapes_the_data(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    data = await evil_report(app, client, auth)
    page = render_html(data)
    for evil in EVIL[:2]:
        assert evil not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<title>Verification report: RC2&lt;script&gt;" in page
