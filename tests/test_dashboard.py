"""The dashboard as a whole: served with the API, pages in a real browser, security headers."""

from __future__ import annotations

import httpx
from browser import Browser
from served import ServedSpecwatch


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
        "script-src 'self' 'sha256-" in csp
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
