"""The regressions page: open changes listed, filtered, and triaged with a pasted token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from api_helpers import new_token
from browser import Browser
from conftest import served_demo
from fastapi import FastAPI
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from served import ServedSpecwatch
from test_regressions import post_history

from specwatch.exceptions import (
    AuthenticationError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from specwatch.metrics.records import ChangeFilter
from specwatch.services.context import ProcessContext
from specwatch.services.triage import TriageService

# --- the use case: a pasted token checked as the API checks a bearer token -----------------------


async def test_triage_checks_the_token_as_the_api_does(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    context: ProcessContext = app.state.context
    ids = await post_history(client, auth)
    assert context.detection is not None
    await context.detection.flush()
    regressions = context.regressions()
    worse = await regressions.changes(ChangeFilter(verdicts=("worse",)), after=None, limit=10)
    pa1 = next(c for c in worse if c.key.metric == "reg.PA1")
    assert pa1.id is not None and pa1.status == "open"
    service = TriageService(context.tokens(), regressions)

    refusals: list[tuple[str | None, type[Exception], str]] = [
        (None, AuthenticationError, "paste a token with the triage scope"),
        ("  ", AuthenticationError, "paste a token with the triage scope"),
        ("Bearer sw_x", AuthenticationError, "not a Specwatch token"),
        ("sw_abcdefghijkm_" + "x" * 30, AuthenticationError, "not valid"),
        (await new_token(context, "read"), PermissionDeniedError, "triage is needed"),
        (await new_token(context, "write:jobs"), PermissionDeniedError, "triage is needed"),
        (await new_token(context, "triage", packages=["other"]), PermissionDeniedError, "reg"),
    ]
    for token, error, message in refusals:
        with pytest.raises(error, match=message) as raised:
            await service.accept(token, pa1.id, "expected")
        assert token is None or not token.strip() or token not in str(raised.value)
    still = await regressions.changes(ChangeFilter(status="open"), after=None, limit=10)
    assert pa1.id in {c.id for c in still}  # nothing changed

    triage = await new_token(context, "triage")
    with pytest.raises(NotFoundError):
        await service.accept(triage, 10**9, "")
    with pytest.raises(InvalidInputError, match="at most 2000"):
        await service.accept(triage, pa1.id, "x" * 2001)
    accepted = await service.accept(f"  {triage}\n", pa1.id, "  new PSF model  ")
    assert (accepted.status, accepted.note) == ("accepted", "new PSF model")
    # Excluding the AM1 episode's jobs (bad data) removes its change.
    am1 = next(c for c in worse if c.key.metric == "reg.AM1")
    for job_id in ids[30:]:
        assert await service.exclude(triage, job_id, "bad flat") == 4
    left = await regressions.changes(ChangeFilter(status="open"), after=None, limit=10)
    assert am1.job_id not in {c.job_id for c in left if c.key.metric == "reg.AM1"}
    with pytest.raises(PermissionDeniedError):
        await service.exclude(await new_token(context, "read"), ids[0], "")


# --- the page on the shared demo server (read only) ----------------------------------------------


def rows(browser: Browser) -> list[WebElement]:
    return browser.find_all("#regressions-changes tbody tr")


def api_changes(server: ServedSpecwatch, **params: str) -> list[dict[str, Any]]:
    changes: list[dict[str, Any]] = server.get("/api/v1/regressions", **params).json()["changes"]
    return changes


def test_the_page_lists_open_worse_changes_newest_first(
    demo_browser: Browser, demo_server: ServedSpecwatch
) -> None:
    expected = api_changes(demo_server)  # open, worse (the API's defaults too)
    assert len(expected) >= 5
    demo_browser.open("/dashboard/regressions")
    listed = rows(demo_browser)
    assert len(listed) == len(expected)
    assert f"{len(expected)} changes." in demo_browser.text()
    # Newest first, every one a worse, open change, with its unit and its links.
    times = [c["time"] for c in expected]
    first = max(expected, key=lambda c: (c["time"], abs(c["delta_sigma"])))
    assert times == sorted(times, reverse=True)
    cells = listed[0].find_elements(By.CSS_SELECTOR, "td")
    assert cells[0].text == first["metric"]
    link = cells[0].find_element(By.CSS_SELECTOR, "a").get_attribute("href") or ""
    query = parse_qs(urlparse(link).query)
    assert urlparse(link).path == f"/dashboard/metric/{first['metric']}"
    assert query == {
        "dataset": [first["dataset"]],
        "filter": [first["filter"]],
        "change": [str(first["id"])],
    }
    assert first["dataset"] in cells[1].text and first["filter"] in cells[1].text
    assert "UTC" in cells[2].text and "ago" in cells[2].text
    assert "→" in cells[3].text and "σ" in cells[3].text and "%" in cells[3].text
    badges = [b.text for b in listed[0].find_elements(By.CSS_SELECTOR, ".badge")]
    assert badges == ["worse", "open"]
    assert f"job {first['job_id']}" in cells[5].text
    assert first["commits"]["after"][:10] in cells[5].text
    for row in listed:
        assert "worse" in row.text and "Accept" in row.text and "Exclude the build" in row.text
    am1 = next(r for r in listed if r.text.startswith("validate_drp.AM1"))
    assert "marcsec →" in am1.text  # values with their unit
    demo_browser.screenshot("regressions")


def test_filters_write_the_url_and_narrow_the_table(
    demo_browser: Browser, demo_server: ServedSpecwatch
) -> None:
    demo_browser.open("/dashboard/regressions")
    demo_browser.choose("#regressions-dataset", "CI-HiTS")
    demo_browser.wait_until(lambda: "dataset=CI-HiTS" in demo_browser.path(), what="the URL")
    demo_browser.wait_drawn()
    expected = api_changes(demo_server, dataset="CI-HiTS")
    demo_browser.wait_until(lambda: len(rows(demo_browser)) == len(expected), what="the rows")
    assert all("CI-HiTS" in row.text for row in rows(demo_browser))

    demo_browser.choose("#regressions-verdict", "better")
    demo_browser.wait_until(lambda: "verdict=better" in demo_browser.path(), what="the URL")
    demo_browser.wait_drawn()
    better = api_changes(demo_server, dataset="CI-HiTS", verdict="better")
    demo_browser.wait_until(
        lambda: (
            [r.find_element(By.CSS_SELECTOR, "td").text for r in rows(demo_browser)]
            == [c["metric"] for c in better]
        ),
        what="the better changes",
    )
    # The link restores the view; a filter nothing matches says what to do.
    demo_browser.open("/dashboard/regressions?dataset=CI-HiTS&verdict=better&status=accepted")
    if not api_changes(demo_server, dataset="CI-HiTS", verdict="better", status="accepted"):
        assert "No accepted better changes on CI-HiTS" in demo_browser.text(".empty-state")
        assert "specwatch detect --all" in demo_browser.text(".empty-state")


# --- triage on a server of its own (it changes the data) ----------------------------------------


@pytest.fixture(scope="module")
def triage_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedSpecwatch]:
    with served_demo(tmp_path_factory.mktemp("triage-server")) as server:
        yield server


@pytest.fixture
def triage_browser(browser: Browser, triage_server: ServedSpecwatch) -> Iterator[Browser]:
    with browser.watching(triage_server.url) as watching:
        yield watching


def row_of(browser: Browser, change: dict[str, Any]) -> WebElement:
    link = f"change={change['id']}"
    found = [
        row
        for row in rows(browser)
        if link in (row.find_element(By.CSS_SELECTOR, "td a").get_attribute("href") or "")
    ]
    assert len(found) == 1, f"no row for change {change['id']}"
    return found[0]


def act(browser: Browser, change: dict[str, Any], button: str, note: str = "") -> str:
    """Type a note in a change's row and press one of its buttons; the result line."""
    before = browser.text("#regressions-result")
    row = row_of(browser, change)
    if note:
        row.find_element(By.CSS_SELECTOR, ".regressions-note input").send_keys(note)
    next(b for b in row.find_elements(By.CSS_SELECTOR, "button") if b.text == button).click()
    result: str = browser.wait_until(
        lambda: (text := browser.text("#regressions-result")) != before and text,
        what="the result of the action",
    )
    return result


def paste(browser: Browser, token: str) -> None:
    """Replace the token field's text as a person does (select all, paste): Selenium's
    ``clear`` bypasses React, and Dash would not remember the value across redraws."""
    field = browser.find("#regressions-token")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(token)


def test_accepting_needs_a_triage_token_and_takes_the_change_off_the_open_list(
    triage_browser: Browser, triage_server: ServedSpecwatch
) -> None:
    browser, server = triage_browser, triage_server
    change = next(c for c in api_changes(server) if c["metric"] == "validate_drp.AM1")
    browser.open("/dashboard/regressions")
    assert browser.find("#regressions-token").get_attribute("type") == "password"

    # No token, a token of the wrong scope, a made-up one: clear errors, nothing changes.
    assert "paste a token with the triage scope" in act(browser, change, "Accept")
    read = server.token("read")
    paste(browser, read)
    refused = act(browser, change, "Accept", note="fine")
    assert "Not done" in refused and "triage is needed" in refused and read not in refused
    paste(browser, "sw_abcdefghijkm_" + "q" * 40)
    assert "the token is not valid" in act(browser, change, "Accept")
    assert change["id"] in {c["id"] for c in api_changes(server)}

    # A triage token: accepted with its note; the row leaves the open list.
    triage = server.token("triage")
    paste(browser, triage)
    done = act(browser, change, "Accept", note="new reference catalog: expected")
    assert done.startswith(f"Accepted change {change['id']} (validate_drp.AM1 on CI-HiTS)")
    browser.wait_until(
        lambda: all(
            f"change={change['id']}" not in (r.get_attribute("innerHTML") or "")
            for r in rows(browser)
        ),
        what="the row to leave the table",
    )
    assert change["id"] not in {c["id"] for c in api_changes(server)}
    accepted = {c["id"]: c for c in api_changes(server, status="accepted")}
    assert accepted[change["id"]]["note"] == "new reference catalog: expected"
    browser.screenshot("regressions-triaged")

    # The accepted list shows it, with its note and no Accept button.
    browser.open("/dashboard/regressions?status=accepted")
    row = row_of(browser, change)
    assert "accepted" in row.text and "new reference catalog: expected" in row.text
    assert [b.text for b in row.find_elements(By.CSS_SELECTOR, "button")] == ["Exclude the build"]

    # The token was never written to the server's log.
    secret = triage.split("_", 2)[2]  # sw_<key>_<secret>: the secret may hold "_" itself
    assert secret not in Path(server.log).read_text()
    assert read.split("_", 2)[2] not in Path(server.log).read_text()


def test_excluding_a_build_marks_its_points_as_bad_data(
    triage_browser: Browser, triage_server: ServedSpecwatch
) -> None:
    browser, server = triage_browser, triage_server
    change = next(
        c
        for c in api_changes(server)
        if c["metric"] == "ap_association.DiaPipelineMemory" and c["dataset"] == "HSC-RC2"
    )
    browser.open("/dashboard/regressions")
    paste(browser, server.token("triage"))
    done = act(browser, change, "Exclude the build", note="node ran out of memory")
    assert done.startswith(f"Excluded job {change['job_id']}'s points as bad data")
    # Detection ran again without the job: no open change points at it any more.
    after = [c for c in api_changes(server, verdict="any") if c["job_id"] == change["job_id"]]
    assert not [c for c in after if c["metric"] == change["metric"]]
