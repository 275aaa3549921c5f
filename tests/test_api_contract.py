"""The contract: a true OpenAPI document, scopes that hold on every write route, offline docs,
and the small things a network-facing service must get right."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import (
    DEMO_FILES,
    assert_problem,
    bearer,
    context_of,
    import_demo,
    job_body,
    measurement,
    new_token,
)
from fastapi import FastAPI

from specwatch.config import Settings
from specwatch.metrics.alerts import AlertItem, AlertKind
from specwatch.metrics.model import Metric
from specwatch.store.alerts import AlertStore
from specwatch.store.definitions import DefinitionStore
from specwatch.store.models import SQLChange

WRITE_METHODS = ("post", "put", "delete", "patch")


def operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    document = app.openapi()
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def concrete(path: str, **values: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "1"), path)


# --- the document ----------------------------------------------------------------------------


async def test_every_operation_declares_its_response_and_problems(app: FastAPI) -> None:
    document = app.openapi()
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert "Problem" in schemas
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for method, path, operation in operations(app):
        responses = operation["responses"]
        success = [code for code in responses if code.startswith("2")]
        assert success, (method, path)
        for code in success:
            schema = responses[code]["content"]["application/json"]["schema"]
            assert "$ref" in schema, (method, path, code, schema)  # a named, typed model
        for code, response in responses.items():
            if code[0] in "45":
                assert list(response["content"]) == ["application/problem+json"], (path, code)
                assert response["content"]["application/problem+json"]["schema"] == {
                    "$ref": "#/components/schemas/Problem"
                }
        if operation.get("parameters") or "requestBody" in operation:
            assert "422" in responses, (method, path)
        if method in WRITE_METHODS:
            assert operation["security"] == [{"bearer": []}], (method, path)
            assert {"401", "403"} <= responses.keys(), (method, path)
            assert operation["x-required-scopes"], (method, path)
        else:  # reads are open by default
            assert "security" not in operation and "401" not in responses, (method, path)


async def test_read_token_required_documents_the_reads_security(
    stack: Any,
) -> None:
    from api_helpers import app_client

    settings = stack.settings.model_copy(update={"read_token_required": True})
    async with app_client(settings) as (app, client):
        for method, path, operation in operations(app):
            if path in ("/healthz", "/readyz"):  # probes stay open
                continue
            assert operation.get("security") == [{"bearer": []}], (method, path)
            assert {"401", "403"} <= operation["responses"].keys()
        assert_problem(await client.get("/api/v1/metrics"), 401, "not_authenticated")


async def test_docs_work_without_a_network(client: httpx.AsyncClient) -> None:
    for page in ("/docs", "/redoc"):
        html = await client.get(page)
        assert html.status_code == 200 and "text/html" in html.headers["content-type"]
        sources = re.findall(r'(?:src|href)="([^"]+)"', html.text)
        assert sources, html.text
        for source in sources:
            assert source.startswith("/"), f"{page} loads {source} from elsewhere"
            asset = await client.get(source)
            assert asset.status_code == 200 and len(asset.content) > 100, source
    assert (await client.get("/openapi.json")).json()["info"]["title"] == "Specwatch"


# --- scopes on every write route ---------------------------------------------------------------


@pytest.fixture
async def seeded(client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI) -> dict[str, str]:
    """Path values of real rows: a job of package demo."""
    await import_demo(client, auth)
    job = job_body(measurement("demo.PA1", 5.0, "mmag"))
    response = await client.post("/api/v1/jobs", json=job, headers=auth)
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    now = datetime.now(UTC)
    async with context_of(app).sessionmaker() as session, session.begin():
        change = SQLChange(
            metric="demo.PA1",
            dataset="HSC-RC2",
            branch="main",
            job_id=job_id,
            time=now,
            before=4.0,
            after=5.0,
            delta=1.0,
            delta_pct=25.0,
            delta_sigma=10.0,
            sigma=0.1,
            verdict="worse",
            detected_at=now,
            updated_at=now,
        )
        session.add(change)
        await session.flush()
        change_id = change.id
    # An alert about package demo, and a silence of its metrics.
    alerts = context_of(app).alerts()
    async with context_of(app).sessionmaker() as session, session.begin():
        store = AlertStore(session)
        alert_id = await store.create(
            rule="regression",
            kind=AlertKind.REGRESSION,
            group_key="seeded",
            title="Regression: demo.PA1",
            now=now,
            branch="main",
            pr=None,
            commit=None,
            job_id=job_id,
            repository=None,
            ci_url=None,
            pr_url=None,
            silenced=False,
        )
        await store.add_item(alert_id, AlertItem("seeded", "demo.PA1"), "seeded", now)
    silence = await alerts.add_silence(
        rule=None,
        metric="demo.*",
        dataset=None,
        branch=None,
        pr=None,
        ends_at=now + timedelta(hours=1),
        reason="seeded",
        created_by="test",
    )
    return {
        "job_id": str(job_id),
        "change_id": str(change_id),
        "alert_id": str(alert_id),
        "silence_id": str(silence.id),
    }


def body_of(path: str) -> dict[str, Any] | None:
    """A valid body for each write route, touching package demo."""
    if path == "/api/v1/jobs":
        return job_body(measurement("demo.PA1", 6.0, "mmag"), commit="beef")
    if path == "/api/v1/definitions":
        return {"files": DEMO_FILES}
    if path == "/api/v1/requirements":
        return {"text": "- {id: DMS-REQ-0001, title: x}\n"}
    if path == "/api/v1/silences":
        return {"metric": "demo.PA1", "duration": "1h"}
    return None


@pytest.mark.parametrize("who", ["nobody", "garbage", "read-only", "other-scope", "other-package"])
async def test_every_write_route_refuses_who_may_not_write(
    client: httpx.AsyncClient, app: FastAPI, seeded: dict[str, str], who: str
) -> None:
    context = context_of(app)
    headers = {
        "nobody": {},
        "garbage": {"Authorization": "Bearer sw_nope_nope"},
        "read-only": bearer(await new_token(context, "read")),
        "other-scope": {},  # a token with every scope but the route's own
        "other-package": bearer(
            await new_token(
                context, "write:jobs", "write:definitions", "triage", packages=["other"]
            )
        ),
    }[who]
    writes = [(m, p, o) for m, p, o in operations(app) if m in WRITE_METHODS]
    assert len(writes) == 12
    for method, path, operation in writes:
        if who == "other-scope":
            others = {"write:jobs", "write:definitions", "triage"} - set(
                operation["x-required-scopes"]
            )
            headers = bearer(await new_token(context, *sorted(others)))
        url = concrete(path, **seeded)
        response = await client.request(method, url, json=body_of(path), headers=headers)
        status, code = {
            "nobody": (401, "not_authenticated"),
            "garbage": (401, "not_authenticated"),
        }.get(who, (403, "permission_denied"))
        assert_problem(response, status, code)
    # and nothing was written
    assert [j["id"] for j in (await client.get("/api/v1/jobs")).json()["jobs"]] == [
        int(seeded["job_id"])
    ]
    alert = (await client.get(f"/api/v1/alerts/{seeded['alert_id']}")).json()
    assert (alert["state"], alert["note"]) == ("open", "")
    silences = (await client.get("/api/v1/silences")).json()["silences"]
    assert [s["id"] for s in silences] == [int(seeded["silence_id"])]


# --- the smaller points ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "echoed"),
    [
        ("abc-123.DEF_9", True),
        ("x" * 5000, False),
        ("<script>alert(1)</script>", False),
        ("a b", False),
    ],
)
async def test_request_id_is_echoed_only_when_plain(
    client: httpx.AsyncClient, sent: str, echoed: bool
) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": sent})
    request_id = response.headers["x-request-id"]
    assert (request_id == sent) is echoed
    assert re.fullmatch(r"[A-Za-z0-9._:/+=-]{1,128}", request_id)


async def test_security_headers_on_every_answer(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get("/healthz"),
        await client.get("/api/v1/nope"),
        await client.post("/api/v1/jobs"),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "server" not in response.headers


async def test_an_unexpected_error_is_one_problem_and_one_log_line(
    app: FastAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/api/v1/broken", broken)
    # raise_app_exceptions: an exception re-raised past the app (for the server to log a
    # second time) would fail this request
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    capsys.readouterr()
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/api/v1/broken")
    problem = assert_problem(response, 500, "server_error")
    assert "boom" not in json.dumps(problem)
    logged = "".join(capsys.readouterr())
    assert len(re.findall(r"\[error\s*\] unhandled error", logged)) == 1, logged
    (access,) = [line for line in logged.splitlines() if "] request " in line]
    assert "status=500" in access and "/api/v1/broken" in access


async def test_access_log_line_per_request(
    client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    await client.get("/api/v1/metrics", headers={"X-Request-ID": "trace-1"})
    (line,) = [line for line in capsys.readouterr().out.splitlines() if "status=" in line]
    for part in ("method=GET", "path=/api/v1/metrics", "status=200", "trace-1", "duration_ms"):
        assert part in line, line


async def test_the_same_body_is_the_same_job_with_or_without_a_key(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await import_demo(client, auth)
    body = json.dumps(job_body(measurement("demo.PA1", 5.0, "mmag"))).encode()
    headers = {**auth, "Content-Type": "application/json"}
    first = await client.post(
        "/api/v1/jobs", content=body, headers={**headers, "Idempotency-Key": "k1"}
    )
    plain = await client.post("/api/v1/jobs", content=body, headers=headers)
    other_key = await client.post(
        "/api/v1/jobs", content=body, headers={**headers, "Idempotency-Key": "k2"}
    )
    assert first.status_code == 201
    assert plain.status_code == 200 and other_key.status_code == 200
    assert first.json()["id"] == plain.json()["id"] == other_key.json()["id"]
    conflict = await client.post(
        "/api/v1/jobs", content=body + b" ", headers={**headers, "Idempotency-Key": "k1"}
    )
    assert_problem(conflict, 409, "idempotency_conflict")
    bad_key = await client.post(
        "/api/v1/jobs", content=body, headers={**headers, "Idempotency-Key": "a\tb"}
    )
    assert assert_problem(bad_key, 422, "invalid_input")["location"] == [
        "header",
        "Idempotency-Key",
    ]


async def test_metric_names_with_a_slash(
    client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI
) -> None:
    """Refused in new definitions; one stored by an older version is reachable."""
    refused = await client.post(
        "/api/v1/definitions",
        json={"files": {"metrics/demo.yaml": "a/b: {unit: s}\n"}},
        headers=auth,
    )
    assert "slash" in assert_problem(refused, 422, "invalid_definition")["detail"]
    job = job_body(measurement("demo.PA1", 1.0))
    job["metrics"] = [{"name": "demo.x/y", "unit": "s"}]
    assert_problem(
        await client.post("/api/v1/jobs", json=job, headers=auth), 422, "invalid_definition"
    )

    async with context_of(app).sessionmaker() as session, session.begin():
        await DefinitionStore(session).upsert_metrics(
            [Metric("legacy", "a/b", unit="s")], datetime.now(UTC)
        )
    metric = await client.get("/api/v1/metrics/legacy.a/b")
    assert metric.status_code == 200 and metric.json()["name"] == "legacy.a/b"
    series = await client.get("/api/v1/metrics/legacy.a/b/series")
    assert series.status_code == 200 and series.json()["metric"] == "legacy.a/b"
    changes = await client.get("/api/v1/metrics/legacy.a/b/changes")
    assert changes.status_code == 200 and changes.json()["changes"] == []


async def test_jobs_page_by_build_time(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    """Newest build first, whatever the order of ingest; the cursor follows that order."""
    await import_demo(client, auth)
    days = [5, 1, 9, 3, 7, 2, 8, 4, 6]  # posted out of order; day 3 twice (same time)
    ids_by_day: dict[int, list[int]] = {}
    for n, day in enumerate([*days, 3]):
        job = job_body(
            measurement("demo.PA1", float(n)), commit=f"c{n}", time=f"2026-01-{day:02d}T00:00:00Z"
        )
        response = await client.post("/api/v1/jobs", json=job, headers=auth)
        ids_by_day.setdefault(day, []).append(response.json()["id"])
    expected = [
        i for day in sorted(ids_by_day, reverse=True) for i in sorted(ids_by_day[day], reverse=True)
    ]
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/jobs", params=params)).json()
        seen += [job["id"] for job in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected


def test_readme_lists_every_setting() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    missing = [name for name in Settings.model_fields if f"SPECWATCH_{name.upper()}" not in readme]
    assert not missing, f"README's settings table lacks {missing}"


@pytest.mark.parametrize("time", ["", "unknown", None, 1764547200, "2026-12-01T00:00:00Z"])
async def test_every_job_time_the_server_takes_is_one_its_schema_allows(
    client: httpx.AsyncClient, auth: dict[str, str], time: object
) -> None:
    """dispatch_verify writes "unknown" (and some jobs "") for a time not known: both are
    "not given", for the parser and for the published schema alike."""
    import jsonschema

    from specwatch.api.schemas import JOB_SCHEMA

    await import_demo(client, auth)
    body = job_body(measurement("demo.PA1", 5.0, "mmag"), time=time)
    formats = jsonschema.FormatChecker(formats=())  # date-time checked as schemathesis does
    formats.checks("date-time", raises=ValueError)(
        lambda text: not isinstance(text, str) or bool(datetime.fromisoformat(text))
    )
    jsonschema.Draft202012Validator(JOB_SCHEMA, format_checker=formats).validate(body)
    response = await client.post("/api/v1/jobs", json=body, headers=auth)
    assert response.status_code == 201, response.text
