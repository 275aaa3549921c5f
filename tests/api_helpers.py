"""Helpers of the API acceptance tests: problem bodies, the real lsst.verify files, own apps."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from conftest import lsst_data
from fastapi import FastAPI
from sqlalchemy import func, select

from specwatch.api.app import create_app
from specwatch.config import Settings
from specwatch.services.context import ProcessContext
from specwatch.store.models import (
    SQLBlob,
    SQLDefinitionDigest,
    SQLJob,
    SQLMetric,
    SQLOutbox,
    SQLSeriesPoint,
    SQLSpecification,
)

PROBLEM_KEYS = frozenset({"type", "title", "status", "detail", "instance", "code"})

# A small definitions tree: two packages, units that convert (marcsec, s, MB) and '%'.
DEMO_FILES: dict[str, str] = {
    "metrics/demo.yaml": """
PA1: {unit: mmag, description: photometric repeatability, tags: [photometry]}
AM1: {unit: marcsec, description: astrometric repeatability}
COMP: {unit: '%', description: completeness, direction: higher}
WALL: {unit: s, description: wall time}
MEM: {unit: MB, description: peak memory}
""",
    "metrics/other.yaml": "X1: {unit: mmag, description: another package}\n",
    "specs/demo/PA1.yaml": """
name: design
metric: PA1
threshold: {value: 5.0, unit: mmag, operator: '<='}
level: design
requirements: [DMS-REQ-0275]
metadata_query: {filter_name: r}
tags: [photometry]
---
name: minimum
metric: PA1
threshold: {value: 8.0, unit: mmag, operator: '<='}
tags: [minimum, DMS-REQ-0276]
""",
}
DEMO_METRICS = (
    "demo.AM1",
    "demo.COMP",
    "demo.MEM",
    "demo.PA1",
    "demo.WALL",
    "other.X1",
)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The RFC 9457 body of ``response``, checked: status, code, shape, no stack trace."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    assert "Traceback" not in response.text and 'File "' not in response.text
    body: dict[str, Any] = response.json()
    assert body.keys() >= PROBLEM_KEYS, body
    assert body["status"] == status and body["code"] == code, body
    assert isinstance(body["type"], str) and body["type"], body
    assert isinstance(body["title"], str) and body["title"], body
    assert isinstance(body["detail"], str) and body["detail"], body
    assert body["instance"] == response.request.url.path, body
    if status == 401:
        assert response.headers.get("www-authenticate", "").lower().startswith("bearer")
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def new_token(
    context: ProcessContext,
    *scopes: str,
    packages: Sequence[str] = (),
    expires_in: timedelta | None = None,
) -> str:
    plain, _ = await context.tokens().create(
        scopes=list(scopes), packages=list(packages), expires_in=expires_in
    )
    return plain


@asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app of its own (e.g. other limits or read tokens), in process, with its lifespan."""
    application = create_app(settings)
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://specwatch.test") as c:
            yield application, c


def context_of(app: FastAPI) -> ProcessContext:
    context: ProcessContext = app.state.context
    return context


# --- the real lsst.verify files (read once per session; treat as read-only) -----------------


@functools.cache
def real_job_bytes() -> bytes:
    """The real lsst.verify job, exactly as written (bare NaN tokens)."""
    return lsst_data("squash", "verify_job.json").read_bytes()


@functools.cache
def real_job() -> Mapping[str, Any]:
    """The real job parsed (``json`` reads its NaN tokens); shared, do not modify."""
    document: dict[str, Any] = json.loads(real_job_bytes())
    return document


@functools.cache
def _real_definition_files() -> Mapping[str, str]:
    root = lsst_data("verify_metrics")
    paths = [*sorted((root / "metrics").glob("*.yaml")), *sorted((root / "specs").rglob("*.yaml"))]
    return {path.relative_to(root).as_posix(): path.read_text(encoding="utf-8") for path in paths}


def real_definition_files() -> dict[str, str]:
    """The real verify_metrics tree as ``{relative path: YAML text}`` (a fresh copy)."""
    return dict(_real_definition_files())


# --- jobs ----------------------------------------------------------------------------------


def measurement(metric: str, value: Any, unit: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"metric": metric, "value": value}
    if unit is not None:
        item["unit"] = unit
    return item


def job_body(*measurements: Mapping[str, Any], **meta: Any) -> dict[str, Any]:
    """A job document; ``meta`` defaults to a dataset, branch, commit and time."""
    defaults: dict[str, Any] = {
        "dataset": "HSC-RC2",
        "branch": "main",
        "commit": "c0ffee",
        "time": "2026-01-01T00:00:00Z",
    }
    return {"measurements": list(measurements), "meta": {**defaults, **meta}}


async def post_definitions(
    client: httpx.AsyncClient,
    auth: Mapping[str, str],
    files: Mapping[str, str],
    *,
    retire: bool = True,
) -> httpx.Response:
    return await client.post(
        "/api/v1/definitions", json={"files": dict(files), "retire": retire}, headers=auth
    )


async def import_demo(client: httpx.AsyncClient, auth: Mapping[str, str]) -> None:
    response = await post_definitions(client, auth, DEMO_FILES)
    assert response.status_code == 200, response.text


# --- what is stored ------------------------------------------------------------------------

_COUNTED = {
    "job": SQLJob,
    "blob": SQLBlob,
    "outbox": SQLOutbox,
    "metric": SQLMetric,
    "specification": SQLSpecification,
    "definition_digest": SQLDefinitionDigest,
    "series_point": SQLSeriesPoint,
}


async def stored_rows(context: ProcessContext) -> dict[str, int]:
    """Rows per table of what a job or an import can store."""
    counts: dict[str, int] = {}
    async with context.sessionmaker() as session:
        for name, model in _COUNTED.items():
            counts[name] = int(await session.scalar(select(func.count()).select_from(model)) or 0)
    return counts


async def assert_nothing_of_jobs_stored(
    client: httpx.AsyncClient, context: ProcessContext, packages: Sequence[str] = ("demo",)
) -> None:
    """No job, blob, outbox row or series point: a rejected job left no trace."""
    listing = await client.get("/api/v1/jobs")
    assert listing.status_code == 200 and listing.json()["jobs"] == [], listing.text
    counts = await stored_rows(context)
    assert {k: counts[k] for k in ("job", "blob", "outbox", "series_point")} == {
        "job": 0,
        "blob": 0,
        "outbox": 0,
        "series_point": 0,
    }
    for package in packages:
        assert await context.series.count_points(package) == 0
