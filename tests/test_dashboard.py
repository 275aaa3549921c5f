"""The dashboard as a whole: served with the API, pages in a real browser, security headers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from browser import Browser
from served import ServedSpecwatch

from specwatch.dashboard import app as dashboard_app
from specwatch.dashboard import registry

dashboard_app._load_pages()  # the page declarations, as the server loads them


def test_root_leads_to_the_dashboard_and_api_routes_win(demo_server: ServedSpecwatch) -> None:
    root = httpx.get(demo_server.url + "/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/dashboard/"
    # Dash serves pages under its prefix only: an unknown API path is still a 404 problem.
    unknown = httpx.get(demo_server.url + "/api/v1/no-such-thing")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    assert unknown.json()["code"] == "not_found"
    assert httpx.get(demo_server.url + "/elsewhere").status_code == 404
    # The API's own routes answer JSON, not the dashboard's page.
    metrics = httpx.get(demo_server.url + "/api/v1/metrics")
    assert metrics.status_code == 200 and metrics.json()["metrics"]


def test_pages_carry_security_headers(demo_server: ServedSpecwatch) -> None:
    page = httpx.get(demo_server.url + "/dashboard/metric/validate_drp.PA1")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert (
        "script-src 'self' 'unsafe-eval' 'sha256-" in csp
        and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    )
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"


def test_a_callback_body_without_length_or_too_large_is_refused(
    demo_server: ServedSpecwatch,
) -> None:
    url = demo_server.url + "/dashboard/_dash-update-component"
    big = httpx.post(
        url, content=b"{" + b" " * 2_000_000 + b"}", headers={"content-type": "application/json"}
    )
    assert big.status_code == 413


def test_overview_draws_without_console_errors(demo_browser: Browser) -> None:
    demo_browser.open("/dashboard/")
    assert "Overview" in demo_browser.text()
    demo_browser.screenshot("overview")


def test_a_deep_link_first_after_a_start_has_its_stylesheets(tmp_path: Path) -> None:
    server = ServedSpecwatch(tmp_path)
    server.start()
    try:
        page = httpx.get(server.url + "/dashboard/requirements")  # the server's first page
        assert page.status_code == 200
        assert 'rel="stylesheet" href="/dashboard/assets/specwatch.css' in page.text
    finally:
        server.stop()


def test_page_paths_mix_segments_and_a_trailing_path() -> None:
    async def render(request: registry.PageRequest) -> Any:
        return None

    registry.page("probe", "probe/<job_id>/<rest:path>", title="Probe")(render)
    try:
        found = registry.match("/dashboard/probe/12/a.B/c")
        assert found is not None and found[0].name == "probe"
        assert found[1] == {"job_id": "12", "rest": "a.B/c"}
        assert registry.match("/dashboard/probe/12") is None
        assert registry.match("/dashboard/probe/1/2/x")[1]["job_id"] == "1"  # type: ignore[index]
    finally:
        registry.PAGES[:] = [p for p in registry.PAGES if p.name != "probe"]
    assert registry.href("metric/a.B", dataset="HSC RC2", overlay=["x|y", "z|w"], pr=None) == (
        "/dashboard/metric/a.B?dataset=HSC+RC2&overlay=x%7Cy&overlay=z%7Cw"
    )
