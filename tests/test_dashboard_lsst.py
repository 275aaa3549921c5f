"""Every dashboard page on the real lsst.verify job (validate_drp on CFHT, 30 measurements, 33
blobs, its meta.packages) with LSST's own metric and specification YAML.

That job carries no dataset, branch or commit (validate_drp of 2018 did not send them): the
pages must still show it, and say what is missing rather than draw nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from api_helpers import real_definition_files, real_job_bytes
from browser import Browser
from served import ServedSpecwatch


@pytest.fixture(scope="module")
def lsst_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServedSpecwatch, int]]:
    server = ServedSpecwatch(tmp_path_factory.mktemp("lsst-server"))
    server.start()
    auth = {"authorization": f"Bearer {server.token('write:jobs', 'write:definitions')}"}
    try:
        imported = httpx.post(
            server.url + "/api/v1/definitions",
            json={"files": real_definition_files(), "retire": False},
            headers=auth,
            timeout=60,
        )
        assert imported.status_code == 200, imported.text
        posted = httpx.post(
            server.url + "/api/v1/jobs",
            content=real_job_bytes(),
            headers={**auth, "content-type": "application/json"},
            timeout=60,
        )
        assert posted.status_code == 201, posted.text
        yield server, posted.json()["id"]
    finally:
        server.stop()


@pytest.fixture
def lsst_browser(browser: Browser, lsst_server: tuple[ServedSpecwatch, int]) -> Iterator[Browser]:
    with browser.watching(lsst_server[0].url) as watching:
        yield watching


def test_the_job_page_shows_the_real_measurements_with_units_and_verdicts(
    lsst_browser: Browser, lsst_server: tuple[ServedSpecwatch, int]
) -> None:
    _, job_id = lsst_server
    lsst_browser.open(f"/dashboard/job/{job_id}")
    text = lsst_browser.text()
    assert "validate_drp.PA1" in text and "mmag" in text
    assert "validate_drp.AM1" in text and ("marcsec" in text or "mas" in text)
    assert "CFHT" in text
    assert "pass" in text.lower() or "fail" in text.lower()  # verdicts against LSST's specs
    lsst_browser.screenshot("lsst-job")


def test_the_real_pa1_drills_down_to_its_per_star_plot(
    lsst_browser: Browser, lsst_server: tuple[ServedSpecwatch, int]
) -> None:
    _, job_id = lsst_server
    lsst_browser.open(f"/dashboard/drilldown/{job_id}/validate_drp.AM1")
    lsst_browser.wait_for("#page .js-plotly-plot")
    assert "rmsDistMas" in lsst_browser.text() or "AM1" in lsst_browser.text()
    lsst_browser.screenshot("lsst-drilldown-am1")


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/",
        "/dashboard/metric/validate_drp.PA1",
        "/dashboard/requirements",
        "/dashboard/regressions",
    ],
)
def test_every_other_page_draws_on_the_real_job(lsst_browser: Browser, path: str) -> None:
    lsst_browser.open(path)
    text = lsst_browser.text()
    assert "This page failed to draw" not in text
    assert text.strip()
