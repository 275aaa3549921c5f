"""Reads on every stack, all bounded: jobs, metrics with their specs, series; and the one
problem shape of every error."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import httpx
import pytest
from api_helpers import (
    DEMO_METRICS,
    assert_problem,
    import_demo,
    job_body,
    measurement,
)
from fastapi import FastAPI


@dataclass(frozen=True)
class Sent:
    """One job of the history below, and the id it got."""

    n: int
    branch: str
    pr: int | None
    dataset: str
    filter: str
    pa1: float
    id: int = 0

    @property
    def commit(self) -> str:
        return f"c{self.n:03d}"

    @property
    def time(self) -> str:
        return f"2026-01-{self.n + 1:02d}T00:00:00Z"


# n is the day (time order); the jobs are posted in POST_ORDER, so ids do not follow time.
HISTORY = (
    Sent(0, "main", None, "HSC-RC2", "r", 5.0),
    Sent(1, "main", None, "HSC-RC2", "r", 5.1),
    Sent(2, "main", None, "CFHT", "g", 5.2),
    Sent(3, "tickets/DM-1", 12, "HSC-RC2", "r", 5.3),
    Sent(4, "tickets/DM-1", 12, "HSC-RC2", "r", float("nan")),
    Sent(5, "main", None, "HSC-RC2", "r", 5.5),
    Sent(6, "tickets/DM-2", 13, "CFHT", "r", 5.6),
    Sent(7, "main", None, "HSC-RC2", "i", 5.7),
)
POST_ORDER = (3, 0, 5, 1, 7, 2, 6, 4)


@pytest.fixture
async def history(client: httpx.AsyncClient, auth: dict[str, str]) -> dict[int, Sent]:
    """The demo definitions and eight jobs; day n -> the job as sent, with its id."""
    await import_demo(client, auth)
    stored: dict[int, Sent] = {}
    for n in POST_ORDER:
        sent = HISTORY[n]
        meta: dict[str, Any] = {
            "branch": sent.branch,
            "commit": sent.commit,
            "dataset": sent.dataset,
            "filter": sent.filter,
            "time": sent.time,
        }
        if sent.pr is not None:
            meta["pr"] = sent.pr
        job = job_body(
            measurement("demo.PA1", sent.pa1, "mmag"), measurement("demo.AM1", 7.0), **meta
        )
        response = await client.post(
            "/api/v1/jobs",
            content=json.dumps(job).encode(),  # NaN as lsst.verify writes it: a bare token
            headers={**auth, "Content-Type": "application/json"},
        )
        assert response.status_code == 201, response.text
        stored[n] = replace(sent, id=response.json()["id"])
    return stored


def ids_newest_first(jobs: dict[int, Sent], *days: int) -> list[int]:
    """The ids of those days' jobs, newest build first (they were posted out of order)."""
    return [jobs[n].id for n in sorted(days, key=lambda n: jobs[n].time, reverse=True)]


async def job_ids(client: httpx.AsyncClient, **params: Any) -> list[int]:
    response = await client.get("/api/v1/jobs", params=params)
    assert response.status_code == 200, response.text
    return [job["id"] for job in response.json()["jobs"]]


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def walk_pages(
    client: httpx.AsyncClient, path: str, key: str, params: dict[str, str], limit: int
) -> list[dict[str, Any]]:
    """Every item of a listing, page after page through ``next_cursor``."""
    items: list[dict[str, Any]] = []
    query: dict[str, str | int] = {**params, "limit": limit}
    for _ in range(50):
        response = await client.get(path, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page[key]) <= limit
        items.extend(page[key])
        if page["next_cursor"] is None:
            return items
        query["cursor"] = page["next_cursor"]
    pytest.fail(f"the pages of {path} never ended")


# --- jobs ----------------------------------------------------------------------------------


async def test_job_list_filters(client: httpx.AsyncClient, history: dict[int, Sent]) -> None:
    assert await job_ids(client) == ids_newest_first(history, *range(8))
    assert await job_ids(client, branch="main") == ids_newest_first(history, 0, 1, 2, 5, 7)
    assert await job_ids(client, pr=12) == ids_newest_first(history, 3, 4)
    assert await job_ids(client, commit="c006") == [history[6].id]
    assert await job_ids(client, dataset="CFHT") == ids_newest_first(history, 2, 6)
    assert await job_ids(client, branch="nope") == []
    # since is inclusive, until exclusive
    window = {"since": "2026-01-03T00:00:00Z", "until": "2026-01-06T00:00:00Z"}
    assert await job_ids(client, **window) == ids_newest_first(history, 2, 3, 4)
    assert await job_ids(client, since="2026-01-07T00:00:00Z") == ids_newest_first(history, 6, 7)
    assert await job_ids(client, until="2026-01-02T00:00:00Z") == [history[0].id]
    # an offset is honoured: 01:00+01:00 is midnight UTC
    assert await job_ids(client, since="2026-01-08T01:00:00+01:00") == [history[7].id]
    combined = {"branch": "main", "dataset": "HSC-RC2", "since": "2026-01-02T00:00:00Z"}
    assert await job_ids(client, **combined) == ids_newest_first(history, 1, 5, 7)


async def test_job_list_naive_times_are_utc(
    client: httpx.AsyncClient, history: dict[int, Sent]
) -> None:
    """A time without an offset is UTC, as in jobs and in the series endpoint."""
    response = await client.get("/api/v1/jobs", params={"since": "2026-01-07T00:00:00"})
    assert response.status_code == 200, response.text
    assert [j["id"] for j in response.json()["jobs"]] == ids_newest_first(history, 6, 7)


async def test_job_summary_fields(client: httpx.AsyncClient, history: dict[int, Sent]) -> None:
    listing = (await client.get("/api/v1/jobs", params={"commit": "c003"})).json()
    (summary,) = listing["jobs"]
    sent = history[3]
    assert summary["id"] == sent.id
    assert summary["url"].endswith(f"/api/v1/jobs/{sent.id}")
    assert instant(summary["time"]) == instant(sent.time)
    assert (summary["branch"], summary["pr"], summary["commit"]) == ("tickets/DM-1", 12, "c003")
    assert (summary["dataset"], summary["filter"]) == ("HSC-RC2", "r")
    assert summary["n_measurements"] == 2
    assert "measurements" not in summary and "blobs" not in summary
    assert listing["next_cursor"] is None


@pytest.mark.parametrize("limit", [1, 3, 4, 8])
async def test_job_list_pages_cover_every_job_once(
    client: httpx.AsyncClient, history: dict[int, Sent], limit: int
) -> None:
    for params, expected in (
        ({}, ids_newest_first(history, *range(8))),
        ({"branch": "main"}, ids_newest_first(history, 0, 1, 2, 5, 7)),
    ):
        pages = await walk_pages(client, "/api/v1/jobs", "jobs", params, limit)
        assert [job["id"] for job in pages] == expected  # newest first, none missing or twice


@pytest.mark.parametrize(
    ("params", "location"),
    [
        ({"limit": 1001}, ["query", "limit"]),
        ({"limit": 0}, ["query", "limit"]),
        ({"limit": "ten"}, ["query", "limit"]),
        ({"pr": 0}, ["query", "pr"]),
        ({"since": "last tuesday"}, ["query", "since"]),
        ({"cursor": "abc"}, ["query", "cursor"]),
    ],
)
async def test_job_list_bad_query_is_422(
    client: httpx.AsyncClient, params: dict[str, Any], location: list[str]
) -> None:
    problem = assert_problem(await client.get("/api/v1/jobs", params=params), 422, "invalid_input")
    assert problem["location"] == location
    assert problem["errors"] and problem["errors"][0]["location"] == location


async def test_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    problem = assert_problem(await client.get("/api/v1/jobs/424242"), 404, "not_found")
    assert "424242" in problem["detail"]
    problem = assert_problem(await client.get("/api/v1/jobs/abc"), 422, "invalid_input")
    assert problem["location"] == ["path", "job_id"]


# --- metrics -------------------------------------------------------------------------------


async def test_metric_list_package_filter_and_pages(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await import_demo(client, auth)

    listing = (await client.get("/api/v1/metrics")).json()
    assert [m["name"] for m in listing["metrics"]] == list(DEMO_METRICS)
    assert listing["next_cursor"] is None
    comp = next(m for m in listing["metrics"] if m["name"] == "demo.COMP")
    assert comp["package"] == "demo" and comp["metric"] == "COMP"
    assert (comp["unit"], comp["description"], comp["direction"]) == ("%", "completeness", "higher")
    pa1 = next(m for m in listing["metrics"] if m["name"] == "demo.PA1")
    assert pa1["tags"] == ["photometry"] and pa1["unit"] == "mmag"

    demo = (await client.get("/api/v1/metrics", params={"package": "demo"})).json()
    assert [m["name"] for m in demo["metrics"]] == [n for n in DEMO_METRICS if n[:5] == "demo."]
    assert (await client.get("/api/v1/metrics", params={"package": "nope"})).json() == {
        "metrics": [],
        "next_cursor": None,
    }

    for params in ({}, {"package": "demo"}):
        pages = await walk_pages(client, "/api/v1/metrics", "metrics", params, 2)
        expected = [n for n in DEMO_METRICS if n.startswith(params.get("package", ""))]
        assert [m["name"] for m in pages] == expected

    for limit in (0, 5001):
        problem = assert_problem(
            await client.get("/api/v1/metrics", params={"limit": limit}), 422, "invalid_input"
        )
        assert problem["location"] == ["query", "limit"]


async def test_metric_with_its_specifications(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await import_demo(client, auth)

    response = await client.get("/api/v1/metrics/demo.PA1")

    assert response.status_code == 200, response.text
    metric = response.json()
    assert (metric["name"], metric["unit"]) == ("demo.PA1", "mmag")
    design, minimum = metric["specs"]
    assert design == {
        "name": "demo.PA1.design",
        "metric": "demo.PA1",
        "threshold": {"value": 5.0, "unit": "mmag", "operator": "<="},
        "level": "design",
        "requirements": ["DMS-REQ-0275"],
        "metadata_query": {"filter_name": "r"},
        "tags": ["photometry"],
        "description": "",
    }
    assert minimum["name"] == "demo.PA1.minimum" and minimum["level"] == "minimum"
    assert minimum["threshold"] == {"value": 8.0, "unit": "mmag", "operator": "<="}
    assert minimum["requirements"] == ["DMS-REQ-0276"] and minimum["metadata_query"] == {}
    assert (await client.get("/api/v1/metrics/demo.AM1")).json()["specs"] == []


async def test_unknown_metric_is_404(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    await import_demo(client, auth)
    for path in ("/api/v1/metrics/demo.NOPE", "/api/v1/metrics/demo.NOPE/series"):
        problem = assert_problem(await client.get(path), 404, "not_found")
        assert "demo.NOPE" in problem["detail"]


# --- series --------------------------------------------------------------------------------


async def series(client: httpx.AsyncClient, metric: str, **params: Any) -> dict[str, Any]:
    response = await client.get(f"/api/v1/metrics/{metric}/series", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def expected_series(jobs: dict[int, Sent], *days: int) -> dict[str, Any]:
    """The demo.PA1 columns of the given days, oldest first, NaN as null."""
    ordered = [jobs[n] for n in sorted(days)]
    return {
        "metric": "demo.PA1",
        "unit": "mmag",
        "value": [None if s.pa1 != s.pa1 else s.pa1 for s in ordered],
        "job_id": [s.id for s in ordered],
        "commit": [s.commit for s in ordered],
        "time": [instant(s.time) for s in ordered],
    }


def comparable(columns: dict[str, Any]) -> dict[str, Any]:
    return {**columns, "time": [instant(t) for t in columns["time"]]}


async def test_series_columns_oldest_first_with_nan_as_null(
    client: httpx.AsyncClient, history: dict[int, Sent]
) -> None:
    columns = await series(client, "demo.PA1")

    assert set(columns) == {"metric", "unit", "time", "value", "job_id", "commit"}
    assert comparable(columns) == expected_series(history, *range(8))
    assert columns["value"][4] is None  # the NaN of day 4 is still a build of the series
    assert all(t.endswith("Z") for t in columns["time"])
    # The job's own time, as GET /jobs/{id} writes it (whole seconds: no fraction).
    job = (await client.get(f"/api/v1/jobs/{columns['job_id'][0]}")).json()
    assert columns["time"][0] == job["time"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", columns["time"][0])


async def test_series_filters(client: httpx.AsyncClient, history: dict[int, Sent]) -> None:
    cases: list[tuple[dict[str, Any], tuple[int, ...]]] = [
        ({"dataset": "HSC-RC2"}, (0, 1, 3, 4, 5, 7)),
        ({"branch": "main"}, (0, 1, 2, 5, 7)),
        ({"filter": "r"}, (0, 1, 3, 4, 5, 6)),
        ({"dataset": "CFHT", "filter": "r"}, (6,)),
        ({"pr": 12}, (3, 4)),
        ({"since": "2026-01-03T00:00:00Z", "until": "2026-01-06T00:00:00Z"}, (2, 3, 4)),
        ({"since": "2026-01-07T00:00:00"}, (6, 7)),  # naive: UTC
        ({"branch": "main", "dataset": "HSC-RC2", "since": "2026-01-02T00:00:00Z"}, (1, 5, 7)),
        ({"dataset": "nope"}, ()),
    ]
    for params, days in cases:
        got = comparable(await series(client, "demo.PA1", **params))
        assert got == expected_series(history, *days), params


async def test_series_limit_returns_the_most_recent_points(
    client: httpx.AsyncClient, history: dict[int, Sent]
) -> None:
    assert comparable(await series(client, "demo.PA1", limit=2)) == expected_series(history, 6, 7)
    got = comparable(await series(client, "demo.PA1", limit=3, dataset="HSC-RC2"))
    assert got == expected_series(history, 4, 5, 7)
    got = comparable(await series(client, "demo.PA1", limit=1, until="2026-01-04T00:00:00Z"))
    assert got == expected_series(history, 2)
    assert len((await series(client, "demo.AM1", limit=100))["value"]) == 8
    empty = await series(client, "demo.WALL")
    assert empty["value"] == [] and empty["time"] == [] and empty["unit"] == "s"


@pytest.mark.parametrize(
    "params",
    [
        {"since": "2026-01-05T00:00:00Z", "until": "2026-01-05T00:00:00Z"},
        {"since": "2026-01-06T00:00:00Z", "until": "2026-01-05T00:00:00Z"},
    ],
)
async def test_series_empty_window_has_no_points(
    client: httpx.AsyncClient, auth: dict[str, str], params: dict[str, Any]
) -> None:
    """since is inclusive and until exclusive: since ≥ until holds nothing (as on /jobs)."""
    await import_demo(client, auth)
    job = job_body(measurement("demo.PA1", 5.0, "mmag"), time="2026-01-05T00:00:00Z")
    assert (await client.post("/api/v1/jobs", json=job, headers=auth)).status_code == 201
    response = await client.get("/api/v1/metrics/demo.PA1/series", params=params)
    assert response.status_code == 200 and response.json()["value"] == []


@pytest.mark.parametrize(
    ("params", "location"),
    [
        ({"limit": 0}, ["query", "limit"]),
        ({"limit": 100_001}, ["query", "limit"]),
        ({"since": "soon"}, ["query", "since"]),
    ],
)
async def test_series_bad_limit_or_time_is_422(
    client: httpx.AsyncClient, auth: dict[str, str], params: dict[str, Any], location: list[str]
) -> None:
    await import_demo(client, auth)
    response = await client.get("/api/v1/metrics/demo.PA1/series", params=params)
    problem = assert_problem(response, 422, "invalid_input")
    assert problem["location"] == location


# --- one problem shape ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/api/v1/nope", 404, "not_found"),
        ("GET", "/nope", 404, "not_found"),
        ("GET", "/api/v1/metrics/demo.PA1/series/x", 404, "not_found"),  # no such metric
        ("POST", "/api/v1/metrics/demo.PA1/series/x", 405, "method_not_allowed"),
        ("DELETE", "/api/v1/jobs", 405, "method_not_allowed"),
        ("PUT", "/api/v1/jobs/1", 405, "method_not_allowed"),
        ("GET", "/api/v1/definitions", 405, "method_not_allowed"),
        ("POST", "/api/v1/metrics", 405, "method_not_allowed"),
    ],
)
async def test_routing_errors_are_problems(
    client: httpx.AsyncClient, method: str, path: str, status: int, code: str
) -> None:
    assert_problem(await client.request(method, path), status, code)


async def test_request_validation_errors_are_problems(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    not_json = await client.post(
        "/api/v1/definitions",
        content=b"{files:",
        headers={**auth, "Content-Type": "application/json"},
    )
    problem = assert_problem(not_json, 422, "invalid_input")
    assert problem["errors"] and problem["location"][0] == "body"

    no_files = await client.post("/api/v1/definitions", json={"files": {}}, headers=auth)
    problem = assert_problem(no_files, 422, "invalid_input")
    assert problem["location"] == ["body", "files"]

    wrong_type = await client.post("/api/v1/definitions", json={"files": ["a"]}, headers=auth)
    assert assert_problem(wrong_type, 422, "invalid_input")["location"] == ["body", "files"]


@pytest.fixture
async def lenient_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that shows a server error as the 500 answer a real client would get."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://specwatch.test") as c:
        yield c


@pytest.mark.parametrize(
    ("path", "params", "statuses"),
    [
        ("/api/v1/jobs", {"cursor": 2**63}, {422}),
        ("/api/v1/jobs", {"since": "0001-01-01T00:00:00Z"}, {200, 422}),
        ("/api/v1/jobs/99999999999999999999", {}, {404, 422}),
        # beyond what the stores hold: clamped to their range (nothing is that late or early)
        ("/api/v1/metrics/demo.PA1/series", {"since": "9999-12-31T23:59:00Z"}, {200}),
        ("/api/v1/metrics/demo.PA1/series", {"until": "1500-01-01T00:00:00Z"}, {200}),
    ],
    ids=["cursor-2**63", "jobs-since-year-1", "job-id-2**66", "series-since-9999", "until-1500"],
)
async def test_out_of_range_query_values_are_client_errors(
    lenient_client: httpx.AsyncClient,
    auth: dict[str, str],
    path: str,
    params: dict[str, Any],
    statuses: set[int],
) -> None:
    """Numbers and times beyond what the stores hold: a client error or a clamped answer,
    never a 500."""
    await import_demo(lenient_client, auth)
    response = await lenient_client.get(path, params=params)
    assert response.status_code in statuses, response.text
    if response.status_code >= 400:
        code = {404: "not_found", 422: "invalid_input"}[response.status_code]
        assert "sqlalchemy" not in assert_problem(response, response.status_code, code)["detail"]
