"""Behind a proxy under a path prefix (``SPECWATCH_ROOT_PATH`` / ``serve --root-path``): the docs,
the dashboard's assets, callbacks and links, and the redirect of ``/`` carry the prefix, whether
the proxy strips it or passes it on."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from conftest import truncate_all
from served import ServedSpecwatch

from specwatch.config import Settings
from specwatch.server import create_server


@pytest.fixture
async def proxied(sqlite_url: str) -> AsyncIterator[httpx.AsyncClient]:
    await truncate_all(sqlite_url)
    settings = Settings(database_url=sqlite_url, public_url="https://obs.example/specwatch/")
    app = create_server(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy.test") as c:
            yield c


def test_the_prefix_comes_from_the_setting_or_the_public_url() -> None:
    assert Settings(root_path="/sw/").effective_root_path == "/sw"
    assert Settings(root_path="sw").effective_root_path == "/sw"
    assert Settings(public_url="https://x.example/a/b/").effective_root_path == "/a/b"
    assert Settings(public_url="https://x.example/").effective_root_path == ""
    assert Settings(root_path="/r", public_url="https://x/p").effective_root_path == "/r"


@pytest.mark.parametrize("path", ["", "/specwatch"], ids=["prefix-stripped", "prefix-kept"])
async def test_pages_and_docs_carry_the_prefix(proxied: httpx.AsyncClient, path: str) -> None:
    root = await proxied.get(f"{path}/")
    assert root.status_code == 307
    assert root.headers["location"] == "/specwatch/dashboard/"

    docs = await proxied.get(f"{path}/docs")
    assert docs.status_code == 200
    assert "/specwatch/openapi.json" in docs.text

    openapi = (await proxied.get(f"{path}/openapi.json")).json()
    assert openapi["servers"] == [{"url": "/specwatch"}]

    page = await proxied.get(f"{path}/dashboard/")
    assert page.status_code == 200
    config = re.search(r'"requests_pathname_prefix":\s*"([^"]+)"', page.text)
    assert config is not None
    assert config.group(1).replace("\\u002f", "/") == "/specwatch/dashboard/"
    assets = re.findall(r'src="([^"]+\.js[^"]*)"', page.text)
    assert assets and all(src.startswith("/specwatch/dashboard/") for src in assets)

    health = await proxied.get(f"{path}/healthz")
    assert health.status_code == 200


async def test_dashboard_links_carry_the_prefix(proxied: httpx.AsyncClient) -> None:
    """The router strips the prefix from the browser's path; the page's links add it back."""
    layout = await proxied.get("/dashboard/_dash-layout")
    assert layout.status_code == 200
    body = {
        "output": "page.children",
        "outputs": {"id": "page", "property": "children"},
        "inputs": [
            {"id": "url", "property": "pathname", "value": "/specwatch/dashboard/pr/7"},
            {"id": "url", "property": "search", "value": ""},
        ],
        "changedPropIds": ["url.pathname"],
    }
    answer = await proxied.post("/dashboard/_dash-update-component", json=body)
    assert answer.status_code == 200, answer.text
    text = answer.text.replace("\\u002f", "/")  # Dash's JSON escapes slashes
    assert "No such page" not in text  # the prefixed path was routed to its page
    hrefs = re.findall(r'"href":\s*"([^"]+)"', text)
    internal = [h for h in hrefs if h.startswith("/")]
    assert internal, text[:500]
    assert all(h.startswith("/specwatch/dashboard/") for h in internal), internal
    nav = await proxied.get("/dashboard/_dash-layout")
    nav_links = re.findall(r'"href":\s*"([^"]+)"', nav.text.replace("\\u002f", "/"))
    assert nav_links and all(h.startswith("/specwatch/") for h in nav_links), nav_links
    assert "/specwatch/docs" in nav_links


def test_served_under_a_prefix(tmp_path: Path) -> None:
    """``specwatch serve --root-path``: the same answers from a real server, with the prefix
    passed on or stripped by the proxy."""
    served = ServedSpecwatch(tmp_path)
    served.start(extra_args=("--root-path", "/sw"))
    try:
        for prefix in ("/sw", ""):
            page = httpx.get(f"{served.url}{prefix}/dashboard/", timeout=10)
            assert page.status_code == 200
            assert "\\u002fsw\\u002fdashboard\\u002f" in page.text
            openapi = httpx.get(f"{served.url}{prefix}/openapi.json", timeout=10).json()
            assert openapi["servers"] == [{"url": "/sw"}]
        root = httpx.get(f"{served.url}/sw/", timeout=10)
        assert (root.status_code, root.headers["location"]) == (307, "/sw/dashboard/")
    finally:
        served.stop()
