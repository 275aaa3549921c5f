"""Regression detection on stored histories: changes found, triaged, and bad data excluded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import Stack
from fastapi import FastAPI

from specwatch.exceptions import SeriesStoreError
from specwatch.metrics.definitions import parse_definition_files
from specwatch.metrics.model import Direction
from specwatch.metrics.records import ChangeFilter, SeriesKey
from specwatch.services.context import ProcessContext
from specwatch.services.definitions import DefinitionService
from specwatch.services.demo import load_demo
from specwatch.services.demo_history import demo_events
from specwatch.services.regressions import RegressionService
from specwatch.store.changes import ChangeStore

DEFINITIONS = {
    "metrics/reg.yaml": (
        "PA1:\n  unit: mmag\n"
        "AM1:\n  unit: marcsec\n"
        "TE1:\n  unit: ''\n  regression_floor: {pct: 50}\n"
        "COMP:\n  unit: '%'\n  direction: higher\n"
    )
}
N = 40


def history() -> list[dict[str, float]]:
    """PA1 steps up (worse) at build 20; AM1 has bad data from build 30; TE1 a small step
    under its floor at 10; COMP steps up (better) at 25."""
    rng = np.random.default_rng(11)
    rows = []
    for n in range(N):
        rows.append(
            {
                "reg.PA1": 5.0 + (1.0 if n >= 20 else 0.0) + rng.normal(0, 0.05),
                "reg.AM1": 10.0 + (3.0 if n >= 30 else 0.0) + rng.normal(0, 0.1),
                "reg.TE1": 1.0 + (0.2 if n >= 10 else 0.0) + rng.normal(0, 0.01),
                "reg.COMP": 90.0 + (5.0 if n >= 25 else 0.0) + rng.normal(0, 0.2),
            }
        )
    return rows


def body(n: int, values: dict[str, float], **meta: object) -> bytes:
    return json.dumps(
        {
            "measurements": [{"metric": k, "value": v, "unit": ""} for k, v in values.items()],
            "meta": {
                "dataset": "D",
                "filter": "r",
                "branch": "main",
                "commit": f"{n:040x}",
                "time": f"2026-08-01T{n // 60:02d}:{n % 60:02d}:00Z",
                **meta,
            },
        }
    ).encode()


async def post_history(
    client: httpx.AsyncClient, auth: dict[str, str], rows: list[dict[str, float]] | None = None
) -> list[int]:
    """Import the definitions and post the main history (``history()`` unless given)."""
    await client.post("/api/v1/definitions", json={"files": DEFINITIONS}, headers=auth)
    ids = []
    for n, values in enumerate(history() if rows is None else rows):
        response = await client.post("/api/v1/jobs", content=body(n, values), headers=auth)
        ids.append(response.json()["id"])
    return ids


@pytest.fixture
async def triage(app: FastAPI) -> dict[str, str]:
    context: ProcessContext = app.state.context
    token, _ = await context.tokens().create(scopes=["triage"])
    return {"Authorization": f"Bearer {token}"}


async def test_changes_are_found_triaged_and_excluded(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str], triage: dict[str, str]
) -> None:
    context: ProcessContext = app.state.context
    ids = await post_history(client, auth)
    # A pull request's build is no point of the main series.
    await client.post(
        "/api/v1/jobs", headers=auth, content=body(99, {"reg.PA1": 50.0}, branch="tickets/X", pr=3)
    )
    assert context.detection is not None
    assert await context.detection.flush() == 4  # the four main series were touched

    worse = (await client.get("/api/v1/regressions")).json()["changes"]
    assert [(c["metric"], c["job_id"]) for c in worse] == [
        ("reg.AM1", ids[30]),
        ("reg.PA1", ids[20]),
    ]
    pa1 = worse[1]
    assert pa1["verdict"] == "worse"
    assert (pa1["unit"], worse[0]["unit"]) == ("mmag", "marcsec")
    assert pa1["previous_job_id"] == ids[19]
    assert pa1["commits"] == {"before": f"{19:040x}", "after": f"{20:040x}"}
    assert pa1["delta"] == pytest.approx(1.0, abs=0.1)
    assert pa1["delta_sigma"] > 8
    assert pa1["dataset"] == "D"
    assert pa1["branch"] == "main"
    better = (await client.get("/api/v1/regressions", params={"verdict": "better"})).json()
    assert [(c["metric"], c["job_id"]) for c in better["changes"]] == [("reg.COMP", ids[25])]
    te1 = (await client.get("/api/v1/metrics/reg.TE1/changes")).json()["changes"]
    assert te1 == []  # 20 % is under the metric's floor of 50 %
    assert (await client.get("/api/v1/metrics/nope.X/changes")).status_code == 404

    # Accepted: remembered, and not reported as an open regression, even after re-detection.
    accepted = await client.post(
        f"/api/v1/changes/{pa1['id']}/accept",
        headers=triage,
        json={"note": "new PSF model; expected"},
    )
    assert accepted.json()["status"] == "accepted"
    await context.regressions().detect_many(await context.regressions().all_keys())
    open_now = (await client.get("/api/v1/regressions")).json()["changes"]
    assert [c["metric"] for c in open_now] == ["reg.AM1"]
    kept = (await client.get("/api/v1/regressions", params={"status": "accepted"})).json()
    assert kept["changes"][0]["note"] == "new PSF model; expected"

    # Bad data: excluding the jobs of the AM1 episode removes that change.
    for job_id in ids[30:]:
        excluded = await client.put(
            f"/api/v1/jobs/{job_id}/exclusion",
            headers=triage,
            json={"reason": "broken calibration"},
        )
        assert excluded.json()["series_redetected"] == 4
    assert (await client.get("/api/v1/regressions")).json()["changes"] == []
    await client.delete(f"/api/v1/jobs/{ids[-1]}/exclusion", headers=triage)
    assert (await client.get("/api/v1/metrics/reg.PA1/changes")).json()["changes"][0][
        "status"
    ] == "accepted"


async def test_pages_follow_the_list_whatever_order_changes_were_stored_in(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    context: ProcessContext = app.state.context
    await post_history(client, auth)
    # The newest change is stored first: ids grow as times fall.
    for metric in ("reg.AM1", "reg.COMP", "reg.PA1"):
        await context.regressions().detect(SeriesKey(metric, "D", "r", "", "main"))
    every = (await client.get("/api/v1/regressions", params={"verdict": "any"})).json()
    assert [c["metric"] for c in every["changes"]] == ["reg.AM1", "reg.COMP", "reg.PA1"]
    assert every["next_cursor"] is None
    paged: list[dict[str, Any]] = []
    params: dict[str, Any] = {"verdict": "any", "limit": 1}
    while True:
        page = (await client.get("/api/v1/regressions", params=params)).json()
        paged += page["changes"]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert [c["id"] for c in paged] == [c["id"] for c in every["changes"]]
    bad = await client.get("/api/v1/regressions", params={"cursor": "yesterday"})
    assert bad.status_code == 422
    assert bad.json()["location"] == ["query", "cursor"]


async def test_triage_needs_its_scope(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    denied = await client.post("/api/v1/changes/1/accept", headers=auth)
    assert denied.status_code == 403
    assert (await client.put("/api/v1/jobs/1/exclusion")).status_code == 401


async def test_unknown_change_and_job(client: httpx.AsyncClient, triage: dict[str, str]) -> None:
    assert (await client.post("/api/v1/changes/77/accept", headers=triage)).status_code == 404
    assert (await client.put("/api/v1/jobs/77/exclusion", headers=triage)).status_code == 404


async def test_the_demo_shows_its_injected_steps_and_nothing_else(app: FastAPI) -> None:
    context: ProcessContext = app.state.context
    report = await load_demo(context)
    steps = sorted((e.metric, e.dataset, e.size > 0) for e in demo_events() if e.kind == "step")
    assert report.changes == len(steps) == 8
    changes = await context.regressions().changes(ChangeFilter(), after=None, limit=100)
    assert sorted((c.key.metric, c.key.dataset, c.delta > 0) for c in changes) == steps
    assert {c.key.branch for c in changes} == {"main"}


async def test_series_waiting_for_detection_survive_a_restart(stack: Stack) -> None:
    """The queue of series to detect is durable: a process stopped (or killed) before their
    debounce leaves them for the next one, which detects them once."""
    settings = stack.settings.model_copy(update={"detect_debounce_s": 3600.0})
    context = await ProcessContext.open(settings)
    try:
        await context.definitions().import_definitions(parse_definition_files(DEFINITIONS))
        for n, values in enumerate(history()):
            await context.jobs().ingest(body(n, values))
        await context.deliverer.drain()
        assert await context.detection_pending() == 4  # the four main series
        assert await context.regressions().changes(ChangeFilter(), after=None, limit=10) == []
    finally:
        await context.close()  # an hour before the debounce would have run them
    later = await ProcessContext.open(settings)
    try:
        assert await later.detection_pending() == 4
        assert later.detection is not None
        assert await later.detection.flush() == 4
        found = await later.regressions().changes(ChangeFilter(), after=None, limit=10)
        assert sorted(c.key.metric for c in found) == ["reg.AM1", "reg.COMP", "reg.PA1"]
        assert await later.detection_pending() == 0
        assert await later.detection.flush() == 0
    finally:
        await later.close()


async def test_a_changed_direction_or_floor_redetects_the_history(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    context: ProcessContext = app.state.context
    await post_history(client, auth)
    assert context.detection is not None
    await context.detection.flush()
    worse = (await client.get("/api/v1/regressions")).json()["changes"]
    assert sorted(c["metric"] for c in worse) == ["reg.AM1", "reg.PA1"]

    # PA1 is now better higher; AM1 gets a floor of 50 % (its step is 30 %).
    metrics = (
        DEFINITIONS["metrics/reg.yaml"]
        .replace("PA1:\n  unit: mmag\n", "PA1:\n  unit: mmag\n  direction: higher\n")
        .replace(
            "AM1:\n  unit: marcsec\n", "AM1:\n  unit: marcsec\n  regression_floor: {pct: 50}\n"
        )
    )
    imported = await client.post(
        "/api/v1/definitions", json={"files": {"metrics/reg.yaml": metrics}}, headers=auth
    )
    assert imported.json()["metrics_updated"] == 2
    assert imported.json()["series_redetected"] == 2
    assert (await client.get("/healthz")).json()["detection_pending"] == 2
    await context.detection.flush()
    assert (await client.get("/healthz")).json()["detection_pending"] == 0
    assert (await client.get("/api/v1/regressions")).json()["changes"] == []
    better = (await client.get("/api/v1/regressions", params={"verdict": "better"})).json()
    assert sorted(c["metric"] for c in better["changes"]) == ["reg.COMP", "reg.PA1"]
    # Re-importing the same definitions re-detects nothing.
    again = await client.post(
        "/api/v1/definitions", json={"files": {"metrics/reg.yaml": metrics}}, headers=auth
    )
    assert again.json()["series_redetected"] == 0


async def test_an_import_stands_when_its_redetection_fails(context: ProcessContext) -> None:
    async def unreachable(metrics: Sequence[str]) -> int:
        raise SeriesStoreError("InfluxDB query failed: cannot reach it")

    service = DefinitionService(context.sessionmaker, redetect=unreachable)
    await service.import_files({"metrics/reg.yaml": "PA1:\n  unit: mmag\n"})
    summary = await service.import_files(
        {"metrics/reg.yaml": "PA1:\n  unit: mmag\n  direction: higher\n"}
    )
    assert (summary.metrics_updated, summary.series_redetected) == (1, 0)
    metric = await context.metrics().get("reg.PA1")
    assert metric[0].direction is Direction.HIGHER


async def test_every_series_counts_even_if_the_latest_build_skipped_its_metric(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    context: ProcessContext = app.state.context
    rows = history()
    del rows[-1]["reg.TE1"]  # the newest build did not measure TE1
    await post_history(client, auth, rows)
    keys = await context.regressions().all_keys()
    assert sorted(k.metric for k in keys) == ["reg.AM1", "reg.COMP", "reg.PA1", "reg.TE1"]
    assert {(k.dataset, k.filter, k.branch) for k in keys} == {("D", "r", "main")}


async def test_changes_carry_their_metric_unit(context: ProcessContext) -> None:
    await context.definitions().import_definitions(parse_definition_files(DEFINITIONS))
    for n, values in enumerate(history()):
        await context.jobs().ingest(body(n, values))
    await context.deliverer.drain()
    regressions = context.regressions()
    detected = await regressions.detect(SeriesKey("reg.PA1", "D", "r", "", "main"))
    assert [c.unit for c in detected] == ["mmag"]
    await regressions.detect_many(await regressions.all_keys())
    # A change of a metric no longer defined (no row to join) is listed, without a unit.
    async with context.sessionmaker() as session, session.begin():
        orphan = replace(detected[0], key=SeriesKey("gone.X", "D", "r", "", "main"), unit="")
        await ChangeStore(session).replace_series(
            orphan.key, [orphan], since=orphan.time, now=orphan.time
        )
    found = await regressions.changes(ChangeFilter(verdicts=()), after=None, limit=10)
    assert sorted((c.key.metric, c.unit) for c in found) == [
        ("gone.X", ""),
        ("reg.AM1", "marcsec"),
        ("reg.COMP", "%"),
        ("reg.PA1", "mmag"),
    ]
    pa1 = next(c for c in found if c.key.metric == "reg.PA1")
    assert pa1.id is not None
    accepted = await regressions.set_status(pa1.id, "accepted", "expected")
    assert (accepted.status, accepted.unit) == ("accepted", "mmag")


async def test_detections_of_one_series_at_once_store_each_change_once(
    context: ProcessContext,
) -> None:
    """The scheduler and an explicit detection may run together (CI saw a UNIQUE violation
    from exactly that); two processes too (two services on one database stand for them)."""
    await context.definitions().import_definitions(parse_definition_files(DEFINITIONS))
    for n, values in enumerate(history()):
        await context.jobs().ingest(body(n, values))
    await context.deliverer.drain()
    if context.detection is not None:
        await context.detection.discard()
    here = context.regressions()
    keys = await here.all_keys()
    other = RegressionService(context.sessionmaker, context.series)
    counts = await asyncio.gather(
        *(service.detect_many(keys) for service in [here, here, other, other, here])
    )
    assert counts == [3] * 5
    found = await here.changes(ChangeFilter(), after=None, limit=10)
    assert sorted(c.key.metric for c in found) == ["reg.AM1", "reg.COMP", "reg.PA1"]
    assert here._running == {}  # no lock left behind
