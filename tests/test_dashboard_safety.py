"""Untrusted text on the dashboard: a job whose names hold markup is shown as text, nothing runs.

Two layers are checked apart: the DOM holds no element made from the job's text (escaping: the
markup never became elements), and no script ran (``window.__pwned`` is never set; the CSP
would also have logged a console error, which fails the test).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import Browser
from served import ServedSpecwatch

SCRIPT = "<script>window.__pwned=3</script>"
IMG = "<img src=x onerror=window.__pwned=4>"
HOSTILE_JOB: dict[str, Any] = {
    "measurements": [{"metric": "xss.PA1", "value": 1.5, "unit": "mmag"}],
    "metrics": {
        "xss.PA1": {
            "description": "<script>window.__pwned=2</script> <img src=x onerror=window.__pwned=1>",
            "unit": "mmag",
            "tags": ["<b>tag</b>"],
        }
    },
    "meta": {
        "dataset": SCRIPT,
        "branch": IMG,
        "commit": "abc123",
        "time": "2026-12-01T00:00:00Z",
        "instrument": "<svg onload=window.__pwned=5>",
        "filter_name": "r",
        "pr": 7,
        "pr_url": "javascript:window.__pwned=6",
        "ci_url": "javascript:window.__pwned=7",
        "ci_id": "<i>9</i>",
        "packages": {
            "<img src=x onerror=window.__pwned=8>": {"git_sha": "deadbeef", "eups_version": "1"}
        },
    },
}


@pytest.fixture(scope="module")
def hostile_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServedSpecwatch, int]]:
    server = ServedSpecwatch(tmp_path_factory.mktemp("hostile"))
    server.start()
    token = server.token("write:jobs", "write:definitions")
    try:
        posted = httpx.post(
            server.url + "/api/v1/jobs",
            json=HOSTILE_JOB,
            headers={"authorization": f"Bearer {token}"},
        )
        assert posted.status_code in (200, 201), posted.text
        yield server, posted.json()["id"]
    finally:
        server.stop()


def _pages(job_id: int) -> list[str]:
    dataset = "%3Cscript%3Ewindow.__pwned%3D3%3C%2Fscript%3E"
    return [
        f"/dashboard/?dataset={dataset}",
        f"/dashboard/metric/xss.PA1?dataset={dataset}",
        f"/dashboard/job/{job_id}",
        "/dashboard/pr/7",
        "/dashboard/regressions",
        f"/dashboard/requirements?dataset={dataset}",
        f"/dashboard/drilldown/{job_id}/xss.PA1",
        "/dashboard/metric/%3Cimg%20src%3Dx%20onerror%3Dwindow.__pwned%3D9%3E",
    ]


def test_markup_in_a_job_is_shown_as_text_and_never_runs(
    browser: Browser, hostile_server: tuple[ServedSpecwatch, int], tmp_path: Path
) -> None:
    server, job_id = hostile_server
    browser.base_url = server.url
    browser.console_errors()
    for path in _pages(job_id):
        browser.open(path)
        # No element was made from the job's text, and nothing ran.
        made = browser.script(
            "return document.querySelectorAll("
            "'img[onerror], svg[onload], #page script, #page i, #page b, a[href^=\"javascript:\"]'"
            ").length"
        )
        assert made == 0, f"{path}: markup from the job became elements"
        assert browser.script("return window.__pwned === undefined"), f"{path}: a script ran"
        assert browser.console_errors() == [], path
    # The job page shows the hostile text, as text.
    browser.open(f"/dashboard/job/{job_id}")
    page = browser.text()
    assert SCRIPT in page and IMG in page
    browser.screenshot("hostile-job")
