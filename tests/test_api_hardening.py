"""A hostile client's inputs: each class of what once answered 500 (or stored what PostgreSQL
refuses) is now a precise 4xx, the same on every stack, with nothing stored."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from api_helpers import (
    DEMO_FILES,
    assert_nothing_of_jobs_stored,
    assert_problem,
    context_of,
    import_demo,
    job_body,
    measurement,
    stored_rows,
)
from fastapi import FastAPI

pytestmark = pytest.mark.usefixtures("demo")


@pytest.fixture
async def demo(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    await import_demo(client, auth)


async def post_raw(client: httpx.AsyncClient, auth: dict[str, str], body: bytes) -> httpx.Response:
    return await client.post(
        "/api/v1/jobs", content=body, headers={**auth, "Content-Type": "application/json"}
    )


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


# --- depth and size of numbers ------------------------------------------------------------


@pytest.mark.parametrize(
    ("depth", "nan"),
    [(100, False), (2000, False), (2000, True), (100_000, True)],
    ids=["over-limit", "past-orjson", "past-orjson-with-NaN", "recursion"],
)
async def test_deep_json_job_is_422(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI, depth: int, nan: bool
) -> None:
    """orjson stops at 1,024 levels; with a NaN token the standard library used to recurse."""
    value = "NaN" if nan else "1.0"
    body = (
        '{"measurements": [{"metric": "demo.PA1", "value": ' + value + "}], "
        '"meta": {"deep": ' + nested(depth) + "}}"
    ).encode()
    problem = assert_problem(await post_raw(client, auth, body), 422, "invalid_input")
    assert "deeper than 64" in problem["detail"]
    await assert_nothing_of_jobs_stored(client, context_of(app))


async def test_deep_json_in_a_typed_body_is_422(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    body = ('{"files": {"metrics/x.yaml": "a: 1"}, "extra": ' + nested(3000) + "}").encode()
    response = await client.post(
        "/api/v1/definitions", content=body, headers={**auth, "Content-Type": "application/json"}
    )
    assert "deeper than 64" in assert_problem(response, 422, "invalid_input")["detail"]


@pytest.mark.parametrize("where", ["value", "meta", "extras"])
@pytest.mark.parametrize(
    ("big", "nan"),
    [(2**63, False), (2**64 - 1, False), (2**63, True), (-(2**63) - 1, True), (2**70, True)],
)
async def test_integers_beyond_64_bits_are_numbers(
    client: httpx.AsyncClient, auth: dict[str, str], where: str, big: int, nan: bool
) -> None:
    """A JSON number past 64 bits is stored as a float (orjson reads longer literals so; with
    a NaN token in the body, the standard library would keep an integer no store holds)."""
    item: dict[str, Any] = measurement("demo.PA1", 5.0, "mmag")
    job = job_body(item, other=math.nan) if nan else job_body(item)
    if where == "value":
        item["value"] = big
    elif where == "meta":
        job["meta"]["big"] = big
    else:
        item["extras"] = {"n": big}
    response = await post_raw(client, auth, json.dumps(job).encode())
    assert response.status_code == 201, response.text
    stored = (await client.get(f"/api/v1/jobs/{response.json()['id']}")).json()
    kept = {
        "value": stored["measurements"][0]["value"],
        "meta": stored["meta"].get("big"),
        "extras": stored["measurements"][0].get("extras", {}).get("n"),
    }[where]
    assert kept == float(big) and isinstance(kept, float)


async def test_numbers_beyond_a_float_are_422(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI
) -> None:
    body = (
        '{"measurements": [{"metric": "demo.PA1", "value": 1' + "0" * 400 + "}], "
        '"meta": {"x": NaN}}'
    ).encode()
    problem = assert_problem(await post_raw(client, auth, body), 422, "invalid_input")
    assert problem["location"] == ["body", "measurements", 0, "value"]
    await assert_nothing_of_jobs_stored(client, context_of(app))


@pytest.mark.parametrize("pr", [2**31, 2**40, "9" * 30])
async def test_pr_beyond_the_column_is_422(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI, pr: Any
) -> None:
    job = job_body(measurement("demo.PA1", 5.0, "mmag"), pr=pr)
    problem = assert_problem(
        await post_raw(client, auth, json.dumps(job).encode()), 422, "invalid_input"
    )
    assert problem["location"] == ["body", "meta", "pr"]
    await assert_nothing_of_jobs_stored(client, context_of(app))


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/jobs", {"pr": str(2**31)}),
        ("/api/v1/jobs", {"pr": "9" * 25}),
        ("/api/v1/metrics/demo.PA1/series", {"pr": str(2**63)}),
        ("/api/v1/compare", {"head": "pr:" + "9" * 23}),
        ("/api/v1/compare", {"head": "9" * 70}),
        ("/api/v1/compare", {"head": "pr:²"}),
        ("/api/v1/jobs", {"cursor": "99999999999999999999.1"}),
        ("/api/v1/regressions", {"cursor": "1.99999999999999999999"}),
        ("/api/v1/jobs", {"cursor": "1.2.3"}),
    ],
)
async def test_numbers_out_of_range_in_queries_are_422(
    client: httpx.AsyncClient, path: str, params: dict[str, str]
) -> None:
    problem = assert_problem(await client.get(path, params=params), 422, "invalid_input")
    assert problem["location"][0] == "query"


@pytest.mark.parametrize(
    ("cursor", "follows"),
    [
        ("9223372036854775807.1", "all"),  # after 2262: every job is older
        ("9999999999999999999.9999999999999999999", "all"),
        ("1.9999999999999999999", "older"),  # an id past 64 bits: the jobs before 1970-01-01
        ("-9999999999999999999.1", "none"),  # before 1677: nothing is older
        ("-62135596800000000.1", "none"),  # year 1
    ],
)
async def test_cursors_out_of_range_are_positions_not_errors(
    client: httpx.AsyncClient, auth: dict[str, str], cursor: str, follows: str
) -> None:
    for day, time in enumerate(("1969-12-31T00:00:00Z", "2026-01-01T00:00:00Z")):
        job = job_body(measurement("demo.PA1", 5.0, "mmag"), time=time, commit=f"c{day}")
        assert (await client.post("/api/v1/jobs", json=job, headers=auth)).status_code == 201
    response = await client.get("/api/v1/jobs", params={"cursor": cursor})
    assert response.status_code == 200, response.text
    commits = [job["commit"] for job in response.json()["jobs"]]
    assert commits == {"all": ["c1", "c0"], "older": ["c0"], "none": []}[follows]


async def test_dates_out_of_range_are_clamped_and_numbers_refused(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    job = job_body(measurement("demo.PA1", 5.0, "mmag"))
    assert (await client.post("/api/v1/jobs", json=job, headers=auth)).status_code == 201
    for path in ("/api/v1/jobs", "/api/v1/regressions", "/api/v1/metrics/demo.PA1/changes"):
        for since in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999999-23:59"):
            response = await client.get(path, params={"since": since})
            assert response.status_code == 200, (path, since, response.text)
        for number in ("0", "2.0201990947929747e-48", "1E9", ".5"):  # POSIX seconds: refused
            assert_problem(await client.get(path, params={"since": number}), 422, "invalid_input")
    everything = await client.get("/api/v1/jobs", params={"since": "0001-01-01T00:00:00+14:00"})
    assert len(everything.json()["jobs"]) == 1
    future = await client.get("/api/v1/jobs", params={"since": "9999-12-31T23:59:59-23:59"})
    assert future.json()["jobs"] == []


async def test_threshold_beyond_a_float_is_422(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    spec = (
        "name: huge\nmetric: PA1\nthreshold: {value: "
        + "9" * 400
        + ", unit: mmag, operator: '<'}\n"
    )
    files = {**DEMO_FILES, "specs/demo/huge.yaml": spec}
    response = await client.post("/api/v1/definitions", json={"files": files}, headers=auth)
    problem = assert_problem(response, 422, "invalid_input")
    assert problem["location"][:3] == ["body", "files", "specs/demo/huge.yaml"]


# --- YAML ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * 5000 + "]" * 5000,
        "a: " + "{b: " * 3000 + "1" + "}" * 3000,
        # a billion laughs: nine lines of anchors, 10^9 nodes when walked
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n"
            for i in range(8)
        ),
    ],
    ids=["deep-flow-lists", "deep-flow-maps", "billion-laughs"],
)
async def test_hostile_yaml_is_422_without_loading_it(
    client: httpx.AsyncClient, auth: dict[str, str], text: str
) -> None:
    files = {**DEMO_FILES, "metrics/evil.yaml": text}
    response = await client.post("/api/v1/definitions", json={"files": files}, headers=auth)
    problem = assert_problem(response, 422, "invalid_input")
    assert problem["location"] == ["body", "files", "metrics/evil.yaml"]
    matrix = await client.post("/api/v1/requirements", json={"text": text}, headers=auth)
    assert_problem(matrix, 422, "invalid_input")


async def test_csv_matrix_past_the_csv_module_limits_is_422(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    text = "id,title,method,specs\nDMS-REQ-0001," + "x" * 200_000 + ",Test,\n"
    response = await client.post(
        "/api/v1/requirements", json={"text": text, "format": "csv"}, headers=auth
    )
    assert_problem(response, 422, "invalid_definition")


# --- what PostgreSQL refuses and SQLite accepts: the same answer on both ----------------------


@pytest.mark.parametrize(
    ("key", "chars"),
    [
        ("dataset", 257),
        ("branch", 257),
        ("instrument", 257),
        ("filter", 257),
        ("commit", 65),
        ("base_commit", 65),
        ("build_url", 2001),
        ("pr_url", 2001),
        ("repository", 2001),
        ("ci_name", 201),
        ("ci_id", 201),
    ],
)
async def test_context_longer_than_its_column_is_422(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI, key: str, chars: int
) -> None:
    job = job_body(measurement("demo.PA1", 5.0, "mmag"), **{key: "a" * chars})
    problem = assert_problem(
        await post_raw(client, auth, json.dumps(job).encode()), 422, "invalid_input"
    )
    assert problem["location"] == ["body", "meta", key]
    assert f"at most {chars - 1}" in problem["detail"]
    await assert_nothing_of_jobs_stored(client, context_of(app))
    # one character less fits, on every backend
    job["meta"][key] = "a" * (chars - 1)
    assert (await post_raw(client, auth, json.dumps(job).encode())).status_code == 201


async def test_long_names_in_a_job_are_422(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI
) -> None:
    metric = await post_raw(
        client,
        auth,
        json.dumps(job_body(measurement("demo." + "P" * 400, 5.0, "mmag"))).encode(),
    )
    assert assert_problem(metric, 422, "invalid_input")["location"] == [
        "body",
        "measurements",
        0,
        "metric",
    ]
    job = job_body(measurement("demo.PA1", 5.0, "mmag"))
    job["blobs"] = [{"identifier": "b" * 201, "name": "x", "data": {}}]
    blob = await post_raw(client, auth, json.dumps(job).encode())
    assert assert_problem(blob, 422, "invalid_input")["location"] == [
        "body",
        "blobs",
        0,
        "identifier",
    ]
    job["metrics"] = [{"name": "demo." + "N" * 300, "unit": "s"}]
    del job["blobs"]
    assert_problem(
        await post_raw(client, auth, json.dumps(job).encode()), 422, "invalid_definition"
    )
    await assert_nothing_of_jobs_stored(client, context_of(app))


@pytest.mark.parametrize(
    "where",
    ["meta.branch", "meta.free", "meta key", "measurement identifier", "blob data", "notes"],
)
async def test_nul_characters_in_a_job_are_422(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI, where: str
) -> None:
    item: dict[str, Any] = measurement("demo.PA1", 5.0, "mmag")
    job = job_body(item)
    if where == "meta.branch":
        job["meta"]["branch"] = "main\x00"
    elif where == "meta.free":
        job["meta"]["free"] = {"x": "a\x00b"}
    elif where == "meta key":
        job["meta"]["k\x00"] = 1
    elif where == "measurement identifier":
        item["identifier"] = "\x00"
    elif where == "blob data":
        job["blobs"] = [{"identifier": "b", "name": "b", "data": {"s": ["\x00"]}}]
    else:
        item["notes"] = {"n": "\x00"}
    problem = assert_problem(
        await post_raw(client, auth, json.dumps(job).encode()), 422, "invalid_input"
    )
    assert "NUL" in problem["detail"]
    await assert_nothing_of_jobs_stored(client, context_of(app))


async def test_nul_and_long_text_in_definitions_and_requirements_are_422(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI
) -> None:
    before = await stored_rows(context_of(app))
    files = {**DEMO_FILES, "metrics/demo.yaml": 'PA9: {unit: mmag, description: "a\\0b"}\n'}
    response = await client.post("/api/v1/definitions", json={"files": files}, headers=auth)
    assert "NUL" in assert_problem(response, 422, "invalid_input")["detail"]
    long_unit = {**DEMO_FILES, "metrics/demo.yaml": "PA9: {unit: " + "m" * 70 + "}\n"}
    response = await client.post("/api/v1/definitions", json={"files": long_unit}, headers=auth)
    assert_problem(response, 422, "invalid_definition")
    for text in ('- {id: DMS-REQ-0001, title: "a\\0"}\n', "- {id: DMS-REQ-" + "1" * 120 + "}\n"):
        matrix = await client.post("/api/v1/requirements", json={"text": text}, headers=auth)
        assert matrix.status_code == 422, matrix.text
    assert await stored_rows(context_of(app)) == before


async def test_nul_in_any_string_parameter_is_422(client: httpx.AsyncClient, app: FastAPI) -> None:
    """Every string query parameter of every read route, from the OpenAPI document."""
    document = app.openapi()
    checked = 0
    for path, item in document["paths"].items():
        operation = item.get("get")
        if operation is None or "{" in path:
            continue
        for parameter in operation.get("parameters", []):
            schema = parameter["schema"]
            kinds = {s.get("type") for s in schema.get("anyOf", [schema])}
            if parameter["in"] != "query" or "string" not in kinds or "enum" in schema:
                continue
            response = await client.get(path, params={parameter["name"]: "a\x00b"})
            problem = assert_problem(response, 422, "invalid_input")
            assert problem["location"] == ["query", parameter["name"]], (path, problem)
            checked += 1
    assert checked >= 15
    response = await client.get("/api/v1/metrics/demo.PA1%00")
    assert assert_problem(response, 422, "invalid_input")["location"] == ["path", "name"]
    long = await client.get("/api/v1/jobs", params={"dataset": "d" * 1025})
    assert "at most 1024" in assert_problem(long, 422, "invalid_input")["detail"]


# --- order of checks, bounded bodies --------------------------------------------------------


async def test_write_routes_authenticate_before_reading_the_body(
    client: httpx.AsyncClient,
) -> None:
    read: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for n in range(10_000):  # 640 MB if it were read
            read.append(n)
            yield b"x" * 65536

    for path in ("/api/v1/jobs", "/api/v1/definitions", "/api/v1/requirements"):
        read.clear()
        response = await client.post(
            path, content=endless(), headers={"Content-Type": "application/json"}
        )
        assert_problem(response, 401, "not_authenticated")
        assert len(read) <= 1, path
        malformed = await client.post(
            path, content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert_problem(malformed, 401, "not_authenticated")


async def test_every_body_is_bounded(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI
) -> None:
    limit = context_of(app).settings.max_body_bytes
    declared = await client.post(
        "/api/v1/definitions",
        content=b"{}",
        headers={**auth, "Content-Type": "application/json", "Content-Length": str(limit + 1)},
    )
    problem = assert_problem(declared, 413, "payload_too_large")
    assert "SPECWATCH_MAX_BODY_BYTES" in problem["detail"]

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"text": "'
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    streamed = await client.post(
        "/api/v1/requirements",
        content=chunks(),
        headers={**auth, "Content-Type": "application/json"},
    )
    assert_problem(streamed, 413, "payload_too_large")


# --- scope: definitions a job carries --------------------------------------------------------


async def test_job_carried_specs_need_write_definitions(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI
) -> None:
    """A write:jobs token (even limited to its package) cannot change what "verified" means
    for other builds: an impossible spec it carries is not registered."""
    context = context_of(app)
    matrix = "- {id: DMS-REQ-0275, title: PA1, specs: [demo.PA1.design]}\n"
    assert (
        await client.post("/api/v1/requirements", json={"text": matrix}, headers=auth)
    ).is_success
    good = job_body(measurement("demo.PA1", 4.0, "mmag"), filter_name="r")
    assert (await post_raw(client, auth, json.dumps(good).encode())).status_code == 201
    before = (await client.get("/api/v1/requirements", params={"dataset": "HSC-RC2"})).json()
    statuses = {r["id"]: r["status"] for r in before["requirements"]}
    assert statuses["DMS-REQ-0275"] == 1.0

    plain, _ = await context.tokens().create(scopes=["write:jobs"], packages=["demo"])
    job = job_body(
        measurement("demo.PA1", 4.0, "mmag"), filter_name="r", time="2025-01-01T00:00:00Z"
    )
    job["specs"] = [
        {
            "name": "demo.PA1.impossible",
            "threshold": {"value": 0.0, "unit": "mmag", "operator": "<"},
            "tags": ["design"],
            "requirements": ["DMS-REQ-0275"],
        }
    ]
    response = await post_raw(
        client, {"Authorization": f"Bearer {plain}"}, json.dumps(job).encode()
    )
    assert response.status_code == 201 and response.json()["specs_ignored"] == 1
    metric = (await client.get("/api/v1/metrics/demo.PA1")).json()
    assert "demo.PA1.impossible" not in [s["name"] for s in metric["specs"]]
    after = (await client.get("/api/v1/requirements", params={"dataset": "HSC-RC2"})).json()
    assert after["requirements"] == before["requirements"]

    # with write:definitions, a job may add a spec that is not known yet (as before)
    response = await post_raw(
        client, auth, json.dumps({**job, "meta": {**job["meta"], "x": 1}}).encode()
    )
    assert response.status_code == 201 and response.json()["specs_ignored"] == 0
    metric = (await client.get("/api/v1/metrics/demo.PA1")).json()
    assert "demo.PA1.impossible" in [s["name"] for s in metric["specs"]]
