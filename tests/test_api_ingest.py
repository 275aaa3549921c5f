"""POST /api/v1/jobs on every stack: the real lsst.verify job, units, validation, atomicity,
idempotency and the size limit."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from api_helpers import (
    DEMO_FILES,
    app_client,
    assert_nothing_of_jobs_stored,
    assert_problem,
    bearer,
    context_of,
    import_demo,
    job_body,
    measurement,
    new_token,
    post_definitions,
    real_definition_files,
    real_job,
    real_job_bytes,
    stored_rows,
)
from conftest import Stack
from fastapi import FastAPI

JSON = {"Content-Type": "application/json"}
NAN_METRICS = {
    "validate_drp.AM3",
    "validate_drp.AD3_design",
    "validate_drp.AD3_minimum",
    "validate_drp.AD3_stretch",
    "validate_drp.AF3_design",
    "validate_drp.AF3_minimum",
    "validate_drp.AF3_stretch",
}


@pytest.fixture
async def demo(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    """The small demo definitions, imported through the API."""
    await import_demo(client, auth)


async def post_raw(
    client: httpx.AsyncClient, auth: dict[str, str], body: bytes, **headers: str
) -> httpx.Response:
    return await client.post("/api/v1/jobs", content=body, headers={**auth, **JSON, **headers})


async def post_job(
    client: httpx.AsyncClient, auth: dict[str, str], job: dict[str, Any], **headers: str
) -> httpx.Response:
    return await post_raw(client, auth, json.dumps(job).encode(), **headers)


def assert_created(response: httpx.Response) -> int:
    assert response.status_code == 201, response.text
    body = response.json()
    job_id = body["id"]
    assert isinstance(job_id, int) and job_id >= 1
    assert body["url"].endswith(f"/api/v1/jobs/{job_id}")
    assert response.headers["location"] == body["url"]
    return job_id


def without_non_finite(value: Any) -> Any:
    """``value`` as a JSON answer shows it: NaN and infinities as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: without_non_finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_non_finite(item) for item in value]
    return value


def by_metric(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["metric"]: m for m in job["measurements"]}


# --- the real lsst.verify job --------------------------------------------------------------


async def test_real_job_after_real_definitions_round_trips(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI
) -> None:
    imported = await post_definitions(client, auth, real_definition_files())
    assert imported.status_code == 200, imported.text
    assert imported.json()["metrics_added"] > 1000 and imported.json()["specs_added"] > 1000

    response = await post_raw(client, auth, real_job_bytes())
    job_id = assert_created(response)

    detail = await client.get(f"/api/v1/jobs/{job_id}")
    assert detail.status_code == 200, detail.text
    job = detail.json()
    sent = real_job()
    assert job["id"] == job_id and job["n_measurements"] == 30
    measurements = by_metric(job)
    assert len(job["measurements"]) == 30 and len(measurements) == 30
    assert set(measurements) == {m["metric"] for m in sent["measurements"]}

    am1, pa1, te1 = (measurements[f"validate_drp.{n}"] for n in ("AM1", "PA1", "TE1"))
    assert (am1["value"], am1["unit"]) == (7.761596740329379, "marcsec")
    assert (pa1["value"], pa1["unit"]) == (16.72336186802337, "mmag")
    assert (te1["value"], te1["unit"]) == (2.963023092854847e-05, "")

    units = await client.get("/api/v1/metrics", params={"package": "validate_drp", "limit": 5000})
    metric_units = {m["name"]: m["unit"] for m in units.json()["metrics"]}
    for original in sent["measurements"]:
        stored = measurements[original["metric"]]
        assert stored["identifier"] == original["identifier"]
        assert stored["blob_refs"] == original["blob_refs"]
        assert stored["unit"] == metric_units[original["metric"]]
        assert "sent" not in stored  # every unit of this job is the metric's (or a respelling)
        if math.isnan(original["value"]):
            assert original["metric"] in NAN_METRICS
            assert stored["value"] is None and stored["non_finite"] == "NaN", stored
        else:
            assert stored["value"] == original["value"] and "non_finite" not in stored
    assert {m for m, s in measurements.items() if s["value"] is None} == NAN_METRICS

    blobs = {b["identifier"]: b for b in job["blobs"]}
    assert len(job["blobs"]) == 33 and len(blobs) == 33
    # JSON has no NaN: the API answers null for the three NaN values inside blobs
    assert blobs == {b["identifier"]: without_non_finite(b) for b in sent["blobs"]}

    assert job["filter"] == "r" and job["instrument"] == "CFHT"
    assert job["time"] == "2018-07-30T18:25:52.410342Z"
    # dispatch_verify's "unknown" placeholders are not values
    assert job["ci_id"] is None and job["ci_name"] is None and job["dataset"] is None
    assert job["build_url"] == "https://example.com" and job["status"] == 0
    assert job["meta"]["filter_name"] == "r" and job["meta"]["env"]["ci_id"] == "unknown"
    assert job["packages"] == sent["meta"]["packages"]

    again = await post_raw(client, auth, real_job_bytes())
    assert again.status_code == 200 and again.json()["id"] == job_id

    series = (await client.get("/api/v1/metrics/validate_drp.AM1/series")).json()
    assert series["job_id"] == [job_id] and series["value"] == [7.761596740329379]
    assert series["time"] == ["2018-07-30T18:25:52.410342Z"]
    nan_series = (await client.get("/api/v1/metrics/validate_drp.AM3/series")).json()
    assert nan_series["job_id"] == [job_id] and nan_series["value"] == [None]
    assert await context_of(app).series.count_points("validate_drp") == 1


async def test_real_job_registers_its_own_metrics_and_specs(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await post_raw(client, auth, real_job_bytes())
    job_id = assert_created(response)

    metric = await client.get("/api/v1/metrics/validate_drp.AD1_design")
    assert metric.status_code == 200, metric.text
    assert metric.json()["unit"] == "marcsec"
    specs = {s["name"]: s for s in metric.json()["specs"]}
    assert specs["validate_drp.AD1_design.srd"]["threshold"] == {
        "value": 20.0,
        "unit": "marcsec",
        "operator": "<=",
    }
    job = (await client.get(f"/api/v1/jobs/{job_id}")).json()
    measurements = by_metric(job)
    assert len(measurements) == 30
    assert measurements["validate_drp.AM1"]["value"] == 7.761596740329379
    assert measurements["validate_drp.AM3"]["value"] is None
    assert len(job["blobs"]) == 33


async def test_real_job_without_definitions_is_unknown_metric(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI
) -> None:
    stripped = {k: v for k, v in real_job().items() if k not in ("metrics", "specs")}
    response = await post_job(client, auth, stripped)

    problem = assert_problem(response, 422, "unknown_metric")
    assert "validate_drp.AM1" in problem["detail"]
    assert problem["location"] == ["body", "measurements", 0, "metric"]
    await assert_nothing_of_jobs_stored(client, context_of(app), ["validate_drp"])
    assert (await client.get("/api/v1/metrics")).json()["metrics"] == []


# --- units ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("demo")
async def test_convertible_units_are_stored_in_the_metrics_unit(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    job = job_body(
        measurement("demo.AM1", 0.0071, "arcsec"),
        measurement("demo.WALL", 2.5, "min"),
        measurement("demo.MEM", 1.5, "GB"),
        measurement("demo.PA1", 5.5, "mmag"),
    )
    job_id = assert_created(await post_job(client, auth, job))

    stored = by_metric((await client.get(f"/api/v1/jobs/{job_id}")).json())
    expected = {
        "demo.AM1": (7.1, "marcsec", 0.0071, "arcsec"),
        "demo.WALL": (150.0, "s", 2.5, "min"),
        "demo.MEM": (1500.0, "MB", 1.5, "GB"),
    }
    for name, (value, unit, sent_value, sent_unit) in expected.items():
        assert stored[name]["unit"] == unit
        assert stored[name]["value"] == pytest.approx(value, rel=1e-12)
        assert stored[name]["sent"] == {"value": sent_value, "unit": sent_unit}
    assert stored["demo.PA1"] == {"metric": "demo.PA1", "value": 5.5, "unit": "mmag"}

    series = (await client.get("/api/v1/metrics/demo.WALL/series")).json()
    assert series["unit"] == "s" and series["value"] == [pytest.approx(150.0)]


@pytest.mark.usefixtures("demo")
async def test_empty_unit_means_the_metrics_unit(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    job = job_body(measurement("demo.COMP", 10.3, ""), measurement("demo.PA1", 4.0))
    job_id = assert_created(await post_job(client, auth, job))

    stored = by_metric((await client.get(f"/api/v1/jobs/{job_id}")).json())
    assert stored["demo.COMP"] == {"metric": "demo.COMP", "value": 10.3, "unit": "%"}
    assert stored["demo.PA1"] == {"metric": "demo.PA1", "value": 4.0, "unit": "mmag"}


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize("unit", ["mmag", "not_a_unit"])
async def test_unconvertible_unit_is_rejected_and_nothing_stored(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI, unit: str
) -> None:
    job = job_body(measurement("demo.PA1", 5.0, "mmag"), measurement("demo.AM1", 7.0, unit))
    response = await post_job(client, auth, job)

    problem = assert_problem(response, 422, "unit_mismatch")
    for part in ("measurement 1", "demo.AM1", unit, "marcsec"):
        assert part in problem["detail"], problem
    assert problem["location"] == ["body", "measurements", 1, "unit"]
    await assert_nothing_of_jobs_stored(client, context_of(app))


# --- validation ----------------------------------------------------------------------------

_GOOD = job_body(measurement("demo.PA1", 5.0, "mmag"))


def _with(path: tuple[str | int, ...], value: Any) -> bytes:
    document = json.loads(json.dumps(_GOOD))
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return json.dumps(document).encode()


MALFORMED: dict[str, tuple[bytes, list[str | int], str]] = {
    "not-json": (b'{"measurements": [', ["body"], "not valid JSON"),
    "empty-body": (b"", ["body"], "not valid JSON"),
    "not-utf8": (b"\xff\xfe\x00", ["body"], "not valid JSON"),
    "json-array": (b"[]", ["body"], "JSON object"),
    "json-string": (b'"job"', ["body"], "JSON object"),
    "no-measurements": (b'{"meta": {}}', ["body", "measurements"], "measurements must be a list"),
    "measurements-object": (
        _with(("measurements",), {"demo.PA1": 5.0}),
        ["body", "measurements"],
        "measurements must be a list",
    ),
    "measurement-not-object": (
        _with(("measurements", 0), 5.0),
        ["body", "measurements", 0],
        "measurement must be an object",
    ),
    "metric-without-package": (
        _with(("measurements", 0, "metric"), "PA1"),
        ["body", "measurements", 0, "metric"],
        "'PA1'",
    ),
    "value-string": (
        _with(("measurements", 0, "value"), "abc"),
        ["body", "measurements", 0, "value"],
        "'abc' is not a number",
    ),
    "value-bool": (
        _with(("measurements", 0, "value"), True),
        ["body", "measurements", 0, "value"],
        "True is not a number",
    ),
    "unit-number": (
        _with(("measurements", 0, "unit"), 3),
        ["body", "measurements", 0, "unit"],
        "unit 3 is not a string",
    ),
    "pr-not-a-number": (_with(("meta", "pr"), "x"), ["body", "meta", "pr"], "'x'"),
    "pr-negative": (_with(("meta", "pr"), -4), ["body", "meta", "pr"], "-4"),
    "time-not-a-time": (
        _with(("meta", "time"), "yesterday"),
        ["body", "meta", "time"],
        "'yesterday'",
    ),
    "time-out-of-range": (
        _with(("meta", "time"), "2300-01-01T00:00:00Z"),
        ["body", "meta", "time"],
        "2300",
    ),
    "meta-list": (_with(("meta",), [1]), ["body", "meta"], "meta must be an object"),
    "blobs-object": (_with(("blobs",), {"a": 1}), ["body", "blobs"], "blobs must be a list"),
}


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_malformed_job_is_422_with_location_and_nothing_stored(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI, case: str
) -> None:
    body, location, fragment = MALFORMED[case]
    response = await post_raw(client, auth, body)

    problem = assert_problem(response, 422, "invalid_input")
    assert problem["location"] == location, problem
    assert fragment in problem["detail"], problem
    await assert_nothing_of_jobs_stored(client, context_of(app))


@pytest.mark.usefixtures("demo")
async def test_unknown_metric_is_422_naming_it(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI
) -> None:
    job = job_body(measurement("demo.PA1", 5.0, "mmag"), measurement("demo.NOPE", 1.0, "s"))
    problem = assert_problem(await post_job(client, auth, job), 422, "unknown_metric")
    assert "demo.NOPE" in problem["detail"] and "measurement 1" in problem["detail"]
    assert problem["location"] == ["body", "measurements", 1, "metric"]
    await assert_nothing_of_jobs_stored(client, context_of(app))


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize("bad", ["unit", "value"])
async def test_rejected_job_registers_none_of_its_definitions(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI, bad: str
) -> None:
    """A job is atomic: the metric and spec it carries are not kept when it is refused."""
    job = job_body(
        measurement("demo.NEW", 3.0, "s"),
        measurement("demo.AM1", "abc" if bad == "value" else 7.0, "mmag" if bad == "unit" else ""),
    )
    job["metrics"] = [{"name": "demo.NEW", "unit": "s", "description": "new in this job"}]
    job["specs"] = [
        {
            "name": "demo.NEW.fast",
            "type": "threshold",
            "threshold": {"value": 10.0, "unit": "s", "operator": "<"},
        }
    ]
    before = await stored_rows(context_of(app))

    response = await post_job(client, auth, job)

    assert_problem(response, 422, "unit_mismatch" if bad == "unit" else "invalid_input")
    assert_problem(await client.get("/api/v1/metrics/demo.NEW"), 404, "not_found")
    assert await stored_rows(context_of(app)) == before
    await assert_nothing_of_jobs_stored(client, context_of(app))

    # the same definitions with a good measurement are registered: nothing remembered them
    job["measurements"][1] = measurement("demo.AM1", 7.0, "marcsec")
    assert_created(await post_job(client, auth, job))
    metric = await client.get("/api/v1/metrics/demo.NEW")
    assert metric.status_code == 200 and metric.json()["unit"] == "s"
    assert [s["name"] for s in metric.json()["specs"]] == ["demo.NEW.fast"]


# --- atomic and idempotent -----------------------------------------------------------------


@pytest.mark.usefixtures("demo")
async def test_same_body_again_is_200_with_the_same_id(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI
) -> None:
    job = job_body(measurement("demo.PA1", 5.0, "mmag"))
    job_id = assert_created(await post_job(client, auth, job))

    again = await post_job(client, auth, job)

    assert again.status_code == 200, again.text
    assert again.json()["id"] == job_id and again.json()["url"].endswith(f"/jobs/{job_id}")
    assert [j["id"] for j in (await client.get("/api/v1/jobs")).json()["jobs"]] == [job_id]
    series = (await client.get("/api/v1/metrics/demo.PA1/series")).json()
    assert series["job_id"] == [job_id]
    assert await context_of(app).series.count_points("demo") == 1


@pytest.mark.usefixtures("demo")
async def test_idempotency_key_replays_and_conflicts(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI
) -> None:
    first = job_body(measurement("demo.PA1", 5.0, "mmag"))
    job_id = assert_created(await post_job(client, auth, first, **{"Idempotency-Key": "build-1"}))

    replay = await post_job(client, auth, first, **{"Idempotency-Key": "build-1"})
    assert replay.status_code == 200 and replay.json()["id"] == job_id

    changed = job_body(measurement("demo.PA1", 6.0, "mmag"))
    conflict = await post_job(client, auth, changed, **{"Idempotency-Key": "build-1"})
    problem = assert_problem(conflict, 409, "idempotency_conflict")
    assert "build-1" in problem["detail"]

    listing = (await client.get("/api/v1/jobs")).json()["jobs"]
    assert [j["id"] for j in listing] == [job_id]
    series = (await client.get("/api/v1/metrics/demo.PA1/series")).json()
    assert series["value"] == [5.0] and series["job_id"] == [job_id]
    assert await context_of(app).series.count_points("demo") == 1


@pytest.mark.usefixtures("demo")
async def test_empty_idempotency_key_is_422(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI
) -> None:
    job = job_body(measurement("demo.PA1", 5.0, "mmag"))
    response = await post_job(client, auth, job, **{"Idempotency-Key": ""})
    problem = assert_problem(response, 422, "invalid_input")
    assert problem["location"] == ["header", "Idempotency-Key"]
    await assert_nothing_of_jobs_stored(client, context_of(app))


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize("keyed", [False, True], ids=["body-digest", "idempotency-key"])
async def test_parallel_identical_posts_store_one_job(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI, keyed: bool
) -> None:
    job = job_body(measurement("demo.PA1", 5.0, "mmag"), measurement("demo.AM1", 7.0, "marcsec"))
    headers = {"Idempotency-Key": "parallel-1"} if keyed else {}

    responses = await asyncio.gather(*(post_job(client, auth, job, **headers) for _ in range(2)))

    assert sorted(r.status_code for r in responses) == [200, 201], [r.text for r in responses]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    (job_id,) = ids
    assert [j["id"] for j in (await client.get("/api/v1/jobs")).json()["jobs"]] == [job_id]
    for metric in ("demo.PA1", "demo.AM1"):
        series = (await client.get(f"/api/v1/metrics/{metric}/series")).json()
        assert series["job_id"] == [job_id], series
    assert await context_of(app).series.count_points("demo") == 1
    assert (await stored_rows(context_of(app)))["job"] == 1


async def test_parallel_jobs_carrying_the_same_new_definitions_are_both_stored(
    app: FastAPI, auth: dict[str, str]
) -> None:
    """Two builds sending their first jobs at once, each with the same ``metrics`` section."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # see a 500 as a 500
    client = httpx.AsyncClient(transport=transport, base_url="http://specwatch.test")
    definitions = [{"name": "fresh.M1", "unit": "s", "description": "first seen in jobs"}]
    jobs = []
    for n in range(2):
        job = job_body(measurement("fresh.M1", 1.0 + n, "s"), commit=f"c{n}")
        job["metrics"] = definitions
        jobs.append(job)

    async with client:
        responses = await asyncio.gather(*(post_job(client, auth, job) for job in jobs))
        series = (await client.get("/api/v1/metrics/fresh.M1/series")).json()

    assert [r.status_code for r in responses] == [201, 201], [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 2
    assert sorted(series["value"]) == [1.0, 2.0]


# --- size limit ----------------------------------------------------------------------------


@pytest.fixture
async def small_limit_app(
    stack: Stack,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, dict[str, str]]]:
    settings = stack.settings.model_copy(update={"max_job_bytes": 2000})
    async with app_client(settings) as (application, client):
        auth = bearer(await new_token(context_of(application), "write:jobs", "write:definitions"))
        await import_demo(client, auth)
        yield application, client, auth


async def test_body_over_the_size_limit_is_413(
    small_limit_app: tuple[FastAPI, httpx.AsyncClient, dict[str, str]],
) -> None:
    application, client, auth = small_limit_app
    big = job_body(measurement("demo.PA1", 5.0, "mmag"), note="x" * 3000)
    body = json.dumps(big).encode()
    assert len(body) > 2000

    problem = assert_problem(await post_raw(client, auth, body), 413, "payload_too_large")
    assert "2000" in problem["detail"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the streamed size counts
        for start in range(0, len(body), 500):
            yield body[start : start + 500]

    streamed = await client.post("/api/v1/jobs", content=chunks(), headers={**auth, **JSON})
    assert "content-length" not in streamed.request.headers
    assert_problem(streamed, 413, "payload_too_large")
    await assert_nothing_of_jobs_stored(client, context_of(application))

    small = json.dumps(job_body(measurement("demo.PA1", 5.0, "mmag"))).encode()
    assert len(small) < 2000
    assert_created(await post_raw(client, auth, small))


# --- definitions through the API -----------------------------------------------------------

_ALL_ZERO = {
    "metrics_added": 0,
    "metrics_updated": 0,
    "metrics_unchanged": 0,
    "specs_added": 0,
    "specs_updated": 0,
    "specs_unchanged": 0,
    "specs_retired": 0,
    "series_redetected": 0,
}
_SPEC_DOCS = DEMO_FILES["specs/demo/PA1.yaml"].split("---\n")


async def imported(
    client: httpx.AsyncClient, auth: dict[str, str], files: dict[str, str], **counts: int
) -> None:
    response = await post_definitions(client, auth, files)
    assert response.status_code == 200, response.text
    assert response.json() == {**_ALL_ZERO, **counts}


async def spec_names(client: httpx.AsyncClient, metric: str) -> list[str]:
    response = await client.get(f"/api/v1/metrics/{metric}")
    assert response.status_code == 200, response.text
    return [spec["name"] for spec in response.json()["specs"]]


async def test_definitions_reimport_is_an_upsert(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await imported(client, auth, DEMO_FILES, metrics_added=6, specs_added=2)
    await imported(client, auth, DEMO_FILES, metrics_unchanged=6, specs_unchanged=2)

    changed = dict(DEMO_FILES)
    changed["metrics/demo.yaml"] = changed["metrics/demo.yaml"].replace(
        "description: wall time", "description: elapsed wall-clock time"
    )
    changed["specs/demo/PA1.yaml"] = changed["specs/demo/PA1.yaml"].replace("8.0", "9.0")
    counts = {"metrics_updated": 1, "metrics_unchanged": 5, "specs_updated": 1}
    await imported(client, auth, changed, **counts, specs_unchanged=1)
    wall = (await client.get("/api/v1/metrics/demo.WALL")).json()
    assert wall["description"] == "elapsed wall-clock time"
    specs = {s["name"]: s for s in (await client.get("/api/v1/metrics/demo.PA1")).json()["specs"]}
    assert specs["demo.PA1.minimum"]["threshold"]["value"] == 9.0


async def test_spec_removed_from_the_tree_is_retired_and_comes_back(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await imported(client, auth, DEMO_FILES, metrics_added=6, specs_added=2)
    without_minimum = {**DEMO_FILES, "specs/demo/PA1.yaml": _SPEC_DOCS[0]}

    await imported(
        client, auth, without_minimum, metrics_unchanged=6, specs_unchanged=1, specs_retired=1
    )
    assert await spec_names(client, "demo.PA1") == ["demo.PA1.design"]

    response = await post_definitions(client, auth, DEMO_FILES)
    assert response.status_code == 200, response.text
    assert response.json()["specs_retired"] == 0
    assert await spec_names(client, "demo.PA1") == ["demo.PA1.design", "demo.PA1.minimum"]

    kept = await post_definitions(client, auth, without_minimum, retire=False)
    assert kept.status_code == 200 and kept.json()["specs_retired"] == 0
    assert await spec_names(client, "demo.PA1") == ["demo.PA1.design", "demo.PA1.minimum"]


async def test_spec_first_seen_in_a_job_is_retired_once_imported_then_removed(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    """Once an import has defined a spec, the import owns it, whoever registered it first."""
    await imported(client, auth, DEMO_FILES, metrics_added=6, specs_added=2)
    job = job_body(measurement("demo.PA1", 5.0, "mmag"))
    job["specs"] = [
        {
            "name": "demo.PA1.early",
            "type": "threshold",
            "threshold": {"value": 6.0, "unit": "mmag", "operator": "<="},
        }
    ]
    assert_created(await post_job(client, auth, job))
    early = "name: early\nmetric: PA1\nthreshold: {value: 6.0, unit: mmag, operator: '<='}\n"
    with_early = {**DEMO_FILES, "specs/demo/early.yaml": early}
    response = await post_definitions(client, auth, with_early)
    assert response.status_code == 200, response.text
    assert "demo.PA1.early" in await spec_names(client, "demo.PA1")

    response = await post_definitions(client, auth, DEMO_FILES)

    assert response.status_code == 200, response.text
    assert response.json()["specs_retired"] == 1
    assert await spec_names(client, "demo.PA1") == ["demo.PA1.design", "demo.PA1.minimum"]


@pytest.mark.parametrize("unit", ["s", "arcsec"])
async def test_metric_redefined_in_another_unit_is_422_and_nothing_changes(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI, unit: str
) -> None:
    await imported(client, auth, DEMO_FILES, metrics_added=6, specs_added=2)
    before = await stored_rows(context_of(app))
    redefined = {
        **DEMO_FILES,
        "metrics/demo.yaml": DEMO_FILES["metrics/demo.yaml"].replace(
            "AM1: {unit: marcsec", f"AM1: {{unit: {unit}"
        )
        + "NEWM: {unit: s}\n",
    }

    response = await post_definitions(client, auth, redefined)

    problem = assert_problem(response, 422, "invalid_definition")
    for part in ("demo.AM1", "marcsec", f"'{unit}'"):
        assert part in problem["detail"], problem
    assert await stored_rows(context_of(app)) == before  # the whole import is refused
    assert_problem(await client.get("/api/v1/metrics/demo.NEWM"), 404, "not_found")
    assert (await client.get("/api/v1/metrics/demo.AM1")).json()["unit"] == "marcsec"


async def test_metric_unit_respelled_is_accepted(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await imported(client, auth, DEMO_FILES, metrics_added=6, specs_added=2)
    respelled = {
        **DEMO_FILES,
        "metrics/demo.yaml": DEMO_FILES["metrics/demo.yaml"].replace(
            "AM1: {unit: marcsec", "AM1: {unit: milliarcsecond"
        ),
    }
    await imported(client, auth, respelled, metrics_unchanged=6, specs_unchanged=2)
    assert (await client.get("/api/v1/metrics/demo.AM1")).json()["unit"] == "marcsec"


@pytest.mark.parametrize(
    "path", ["metrics/demo.yaml", "specs/demo/PA1.yaml", "specs/demo/deeper/bad.yaml"]
)
async def test_invalid_yaml_is_422_naming_the_file(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI, path: str
) -> None:
    files = {**DEMO_FILES, path: "PA1: {unit: mmag\n  - [broken"}

    response = await post_definitions(client, auth, files)

    problem = assert_problem(response, 422, "invalid_definition")
    assert path in problem["detail"] and "YAML" in problem["detail"], problem
    counts = await stored_rows(context_of(app))
    assert (counts["metric"], counts["specification"]) == (0, 0)


@pytest.mark.usefixtures("demo")
async def test_non_finite_values_are_kept_as_such(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    """null, "NaN" and "Infinity" are values lsst.verify writes: kept, shown as null + marker."""
    job = job_body(
        measurement("demo.PA1", None, "mmag"),
        measurement("demo.AM1", "NaN", "arcsec"),
        measurement("demo.WALL", "Infinity", "s"),
        measurement("demo.MEM", "-Infinity", "GB"),
    )
    job_id = assert_created(await post_job(client, auth, job))

    stored = by_metric((await client.get(f"/api/v1/jobs/{job_id}")).json())
    markers = {name: (m["value"], m.get("non_finite")) for name, m in stored.items()}
    assert markers == {
        "demo.PA1": (None, "NaN"),
        "demo.AM1": (None, "NaN"),
        "demo.WALL": (None, "Infinity"),
        "demo.MEM": (None, "-Infinity"),
    }
    assert stored["demo.AM1"]["unit"] == "marcsec" and stored["demo.MEM"]["unit"] == "MB"
    for metric in ("demo.PA1", "demo.WALL"):
        series = (await client.get(f"/api/v1/metrics/{metric}/series")).json()
        assert series["job_id"] == [job_id] and series["value"] == [None], series
