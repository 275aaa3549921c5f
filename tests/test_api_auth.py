"""Who may call: bearer tokens, scopes, packages, read tokens, and tokens stored hashed."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

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
    stored_rows,
)
from conftest import Stack
from fastapi import FastAPI
from sqlalchemy import select, update

from specwatch.services.context import ProcessContext
from specwatch.store.models import SQLToken

JOB = job_body(measurement("demo.PA1", 5.0, "mmag"))
LIMITED_FILES = {
    "metrics/validate_drp.yaml": "PA1: {unit: mmag}\nAM1: {unit: marcsec}\n",
    "metrics/other.yaml": "X1: {unit: mmag}\n",
}


async def _expired(context: ProcessContext) -> str:
    token = await new_token(context, "write:jobs", expires_in=timedelta(days=1))
    key = token.split("_")[1]
    async with context.sessionmaker() as session, session.begin():
        await session.execute(
            update(SQLToken)
            .where(SQLToken.key == key)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    return token


async def _revoked(context: ProcessContext) -> str:
    token = await new_token(context, "write:jobs", "write:definitions")
    await context.tokens().revoke(token)
    return token


async def _unknown(context: ProcessContext) -> str:
    """A well-formed token whose key is not stored (a real secret, another key)."""
    _, key, secret = (await new_token(context, "write:jobs")).split("_", 2)
    other = "a" * 12 if key != "a" * 12 else "b" * 12
    return f"sw_{other}_{secret}"


async def _wrong_secret(context: ProcessContext) -> str:
    """A stored key with a secret that is not its own."""
    token = await new_token(context, "write:jobs")
    return token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")


TokenMaker = Callable[[ProcessContext], Awaitable[str]]
HeaderMaker = Callable[[ProcessContext], Awaitable[dict[str, str]]]


def _scheme(make: TokenMaker, scheme: str = "Bearer") -> HeaderMaker:
    async def build(context: ProcessContext) -> dict[str, str]:
        return {"Authorization": f"{scheme} {await make(context)}"}

    return build


def _fixed(value: str | None) -> HeaderMaker:
    async def build(context: ProcessContext) -> dict[str, str]:
        return {} if value is None else {"Authorization": value}

    return build


async def _valid(context: ProcessContext) -> str:
    return await new_token(context, "write:jobs", "write:definitions")


BAD_HEADERS: dict[str, HeaderMaker] = {
    "missing": _fixed(None),
    "empty": _fixed(""),
    "bearer-without-token": _fixed("Bearer "),
    "malformed-token": _fixed("Bearer not-a-token"),
    "basic-scheme": _fixed("Basic dXNlcjpwYXNz"),
    "valid-token-under-another-scheme": _scheme(_valid, "Token"),
    "valid-token-without-scheme": _scheme(_valid, ""),
    "unknown-key": _scheme(_unknown),
    "wrong-secret": _scheme(_wrong_secret),
    "revoked": _scheme(_revoked),
    "expired": _scheme(_expired),
}


@pytest.fixture
async def demo(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    await import_demo(client, auth)


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
async def test_bad_credentials_are_401_everywhere_a_token_is_needed(
    client: httpx.AsyncClient, app: FastAPI, case: str
) -> None:
    headers = await BAD_HEADERS[case](context_of(app))

    job = await client.post("/api/v1/jobs", json=JOB, headers=headers)
    problem = assert_problem(job, 401, "not_authenticated")
    assert problem["detail"]
    definitions = await post_definitions(client, headers, DEMO_FILES)
    assert_problem(definitions, 401, "not_authenticated")
    await assert_nothing_of_jobs_stored(client, context_of(app))


@pytest.mark.usefixtures("demo")
async def test_a_token_revoked_after_use_stops_working_at_once(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    token = await new_token(context_of(app), "write:jobs")
    first = await client.post("/api/v1/jobs", json=JOB, headers=bearer(token))
    assert first.status_code == 201, first.text

    await context_of(app).tokens().revoke(token)

    other = job_body(measurement("demo.PA1", 6.0, "mmag"))
    response = await client.post("/api/v1/jobs", json=other, headers=bearer(token))
    assert_problem(response, 401, "not_authenticated")
    listing = (await client.get("/api/v1/jobs")).json()["jobs"]
    assert [j["id"] for j in listing] == [first.json()["id"]]


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize(
    "scopes", [("read",), ("write:definitions",), ("read", "write:definitions")]
)
async def test_job_needs_the_write_jobs_scope(
    client: httpx.AsyncClient, app: FastAPI, scopes: tuple[str, ...]
) -> None:
    token = await new_token(context_of(app), *scopes)

    problem = assert_problem(
        await client.post("/api/v1/jobs", json=JOB, headers=bearer(token)), 403, "permission_denied"
    )
    assert "write:jobs" in problem["detail"]
    await assert_nothing_of_jobs_stored(client, context_of(app))


@pytest.mark.parametrize("scopes", [("read",), ("write:jobs",)])
async def test_definitions_need_the_write_definitions_scope(
    client: httpx.AsyncClient, app: FastAPI, scopes: tuple[str, ...]
) -> None:
    token = await new_token(context_of(app), *scopes)

    response = await post_definitions(client, bearer(token), DEMO_FILES)

    problem = assert_problem(response, 403, "permission_denied")
    assert "write:definitions" in problem["detail"]
    assert (await stored_rows(context_of(app)))["metric"] == 0


@pytest.fixture
async def limited(client: httpx.AsyncClient, auth: dict[str, str], app: FastAPI) -> dict[str, str]:
    """Definitions of validate_drp and other, and a token limited to validate_drp."""
    response = await post_definitions(client, auth, LIMITED_FILES)
    assert response.status_code == 200, response.text
    token = await new_token(
        context_of(app), "write:jobs", "write:definitions", packages=["validate_drp"]
    )
    return bearer(token)


async def test_package_limited_token_writes_only_its_package(
    client: httpx.AsyncClient, app: FastAPI, limited: dict[str, str]
) -> None:
    own = job_body(measurement("validate_drp.PA1", 5.0, "mmag"))
    other = job_body(measurement("other.X1", 5.0, "mmag"))
    mixed = job_body(measurement("validate_drp.PA1", 5.0, "mmag"), measurement("other.X1", 1.0))

    for job in (other, mixed):
        problem = assert_problem(
            await client.post("/api/v1/jobs", json=job, headers=limited), 403, "permission_denied"
        )
        assert "other" in problem["detail"]
    await assert_nothing_of_jobs_stored(client, context_of(app), ["validate_drp", "other"])

    created = await client.post("/api/v1/jobs", json=own, headers=limited)
    assert created.status_code == 201, created.text


async def test_package_limited_token_defines_only_its_package(
    client: httpx.AsyncClient, limited: dict[str, str]
) -> None:
    other_metric = {"metrics/other.yaml": "X1: {unit: mmag}\nX2: {unit: s}\n"}
    other_spec = {
        "specs/other/X1.yaml": "name: design\nmetric: X1\n"
        "threshold: {value: 1.0, unit: mmag, operator: '<'}\n"
    }
    for files in (other_metric, other_spec, {**LIMITED_FILES, "metrics/other.yaml": "X3: {}\n"}):
        problem = assert_problem(
            await post_definitions(client, limited, files), 403, "permission_denied"
        )
        assert "other" in problem["detail"]
    assert_problem(await client.get("/api/v1/metrics/other.X2"), 404, "not_found")
    assert (await client.get("/api/v1/metrics/other.X1")).json()["specs"] == []

    own = {"metrics/validate_drp.yaml": "PA1: {unit: mmag}\nAM1: {unit: marcsec}\nTE1: {}\n"}
    response = await post_definitions(client, limited, own)
    assert response.status_code == 200, response.text
    assert response.json()["metrics_added"] == 1


async def test_package_limited_token_cannot_define_other_packages_through_a_job(
    client: httpx.AsyncClient, app: FastAPI, limited: dict[str, str]
) -> None:
    """The ``metrics``/``specs`` sections of a job are definitions too: same package rule."""
    job = job_body(measurement("validate_drp.PA1", 5.0, "mmag"))
    job["metrics"] = [{"name": "other.SNEAKY", "unit": "s"}]
    job["specs"] = [
        {
            "name": "other.X1.sneaky",
            "type": "threshold",
            "threshold": {"value": 1.0, "unit": "mmag", "operator": "<"},
        }
    ]

    response = await client.post("/api/v1/jobs", json=job, headers=limited)

    assert_problem(response, 403, "permission_denied")
    assert_problem(await client.get("/api/v1/metrics/other.SNEAKY"), 404, "not_found")
    assert (await client.get("/api/v1/metrics/other.X1")).json()["specs"] == []
    await assert_nothing_of_jobs_stored(client, context_of(app), ["validate_drp"])


# --- reads ---------------------------------------------------------------------------------

READ_PATHS = (
    "/api/v1/jobs",
    "/api/v1/jobs/{job_id}",
    "/api/v1/metrics",
    "/api/v1/metrics/demo.PA1",
    "/api/v1/metrics/demo.PA1/series",
)


@pytest.mark.usefixtures("demo")
async def test_reads_are_open_by_default(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    created = await client.post("/api/v1/jobs", json=JOB, headers=auth)
    job_id = created.json()["id"]
    for path in READ_PATHS:
        response = await client.get(path.format(job_id=job_id))
        assert response.status_code == 200, (path, response.text)
    series = (await client.get("/api/v1/metrics/demo.PA1/series")).json()
    assert series["job_id"] == [job_id]


async def test_read_token_required_closes_every_read(stack: Stack) -> None:
    settings = stack.settings.model_copy(update={"read_token_required": True})
    async with app_client(settings) as (application, client):
        context = context_of(application)
        writer = bearer(await new_token(context, "write:jobs", "write:definitions"))
        await import_demo(client, writer)
        job_id = (await client.post("/api/v1/jobs", json=JOB, headers=writer)).json()["id"]
        readers = {
            "read": bearer(await new_token(context, "read")),
            "write:jobs": bearer(await new_token(context, "write:jobs")),
            "write:definitions": bearer(await new_token(context, "write:definitions")),
        }
        revoked = await new_token(context, "read")
        await context.tokens().revoke(revoked)

        for path in (p.format(job_id=job_id) for p in READ_PATHS):
            assert_problem(await client.get(path), 401, "not_authenticated")
            assert_problem(
                await client.get(path, headers={"Authorization": "Bearer nope"}),
                401,
                "not_authenticated",
            )
            assert_problem(
                await client.get(path, headers=bearer(revoked)), 401, "not_authenticated"
            )
            for scope, headers in readers.items():
                response = await client.get(path, headers=headers)
                assert response.status_code == 200, (path, scope, response.text)
        listing = await client.get("/api/v1/jobs", headers=readers["read"])
        assert [j["id"] for j in listing.json()["jobs"]] == [job_id]


# --- storage -------------------------------------------------------------------------------


async def test_tokens_are_stored_hashed(
    client: httpx.AsyncClient, app: FastAPI, auth: dict[str, str], write_token: str
) -> None:
    context = context_of(app)
    limited = await new_token(context, "read", packages=["validate_drp"])
    plains = {write_token, limited}

    async with context.sessionmaker() as session:
        rows = list(await session.scalars(select(SQLToken)))
    assert len(rows) == 2
    stored_text = " ".join(
        str(getattr(row, column.key)) for row in rows for column in SQLToken.__table__.columns
    )
    for plain in plains:
        _, key, secret = plain.split("_", 2)
        assert len(secret) >= 20
        assert secret not in stored_text and plain not in stored_text
        row = next(r for r in rows if r.key == key)
        assert row.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    # and the stored digest is no credential
    digest_as_token = f"sw_{rows[0].key}_{rows[0].secret_sha256}"
    response = await post_definitions(client, bearer(digest_as_token), DEMO_FILES)
    assert_problem(response, 401, "not_authenticated")
    assert (await post_definitions(client, auth, DEMO_FILES)).status_code == 200
