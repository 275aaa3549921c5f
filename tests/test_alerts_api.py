"""Alerts through the API: raised by a regression, listed, triaged; their rules and silences."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest
from api_helpers import assert_problem, bearer, new_token
from asgi_lifespan import LifespanManager
from conftest import Stack
from fastapi import FastAPI

from specwatch.api.app import create_app
from specwatch.services.context import ProcessContext

DEFINITIONS = {
    "metrics/alr.yaml": (
        "PA1:\n  unit: mmag\n  tags: [photometry]\nAM1:\n  unit: marcsec\nTE1:\n  unit: ''\n"
    )
}
N = 40
BASE = "http://specwatch.test"


def history() -> list[dict[str, float]]:
    """PA1 steps up (worse) by 20 σ at build 20, AM1 by 30 σ at build 30; TE1 stays flat."""
    rng = np.random.default_rng(7)
    return [
        {
            "alr.PA1": 5.0 + (1.0 if n >= 20 else 0.0) + rng.normal(0, 0.05),
            "alr.AM1": 10.0 + (3.0 if n >= 30 else 0.0) + rng.normal(0, 0.1),
            "alr.TE1": 1.0 + rng.normal(0, 0.01),
        }
        for n in range(N)
    ]


def body(n: int, values: dict[str, float]) -> bytes:
    return json.dumps(
        {
            "measurements": [{"metric": k, "value": v, "unit": ""} for k, v in values.items()],
            "meta": {
                "dataset": "D",
                "filter": "r",
                "branch": "main",
                "commit": f"{n:040x}",
                "time": f"2026-08-01T{n // 60:02d}:{n % 60:02d}:00Z",
            },
        }
    ).encode()


@pytest.fixture
async def app(stack: Stack) -> AsyncIterator[FastAPI]:
    """The app of the stack, whose background detection waits an hour: the tests detect
    explicitly, so no detection sees half a history (and raises an alert on the wrong build)."""
    application = create_app(stack.settings.model_copy(update={"detect_debounce_s": 3600.0}))
    async with LifespanManager(application):
        yield application


async def raise_alerts(app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str]) -> list[int]:
    """Post the history, deliver its points and detect every series; the job ids."""
    context: ProcessContext = app.state.context
    imported = await client.post("/api/v1/definitions", json={"files": DEFINITIONS}, headers=auth)
    assert imported.status_code == 200, imported.text
    ids = []
    for n, values in enumerate(history()):
        response = await client.post("/api/v1/jobs", content=body(n, values), headers=auth)
        assert response.status_code in (200, 201, 202), response.text
        ids.append(response.json()["id"])
    await context.deliverer.drain()
    regressions = context.regressions()
    await regressions.detect_many(await regressions.all_keys())
    assert context.detection is not None
    await context.detection.discard()  # just done
    return ids


@pytest.fixture
async def triage(app: FastAPI) -> dict[str, str]:
    context: ProcessContext = app.state.context
    plain, _ = await context.tokens().create(scopes=["triage"])
    return bearer(plain)


async def alerts(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/alerts", params=params)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["alerts"]
    return found


async def only_alert_of(client: httpx.AsyncClient, metric: str) -> dict[str, Any]:
    (alert,) = await alerts(client, metric=metric, state="all")
    return alert


async def worse_changes(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    changes = (await client.get("/api/v1/regressions")).json()["changes"]
    return {c["metric"]: c for c in changes}


# --- reading -----------------------------------------------------------------------------------


async def test_a_regression_raises_an_alert_that_lists_and_reads_with_its_item(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    ids = await raise_alerts(app, client, auth)
    changes = await worse_changes(client)
    assert sorted(changes) == ["alr.AM1", "alr.PA1"]

    listed = await client.get("/api/v1/alerts")
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert page["next_cursor"] is None
    assert sorted(a["items"][0]["metric"] for a in page["alerts"]) == ["alr.AM1", "alr.PA1"]
    pa1 = next(a for a in page["alerts"] if a["items"][0]["metric"] == "alr.PA1")
    assert pa1 == {
        **pa1,
        "url": f"{BASE}/api/v1/alerts/{pa1['id']}",
        "rule": "regression",
        "kind": "regression",
        "state": "open",
        "title": "Regression: alr.PA1 on D · r",
        "resolved_at": None,
        "branch": "main",
        "pr": None,
        "commit": f"{20:040x}",
        "job_id": ids[20],
        "silenced": False,
        "note": "",
    }
    (item,) = pa1["items"]
    change = changes["alr.PA1"]
    assert item == {
        **item,
        "dedup_key": f"regression|alr.PA1|D|r||main|{change['id']}",
        "metric": "alr.PA1",
        "unit": "mmag",
        "dataset": "D",
        "filter": "r",
        "instrument": None,
        "branch": "main",
        "pr": None,
        "state": "open",
        "confirming_builds": N - 20,
        "commit_before": f"{19:040x}",
        "commit_after": f"{20:040x}",
        "change_id": change["id"],
        "job_id": ids[20],
        "culprits": [],
        "dashboard_url": (
            f"{BASE}/dashboard/metric/alr.PA1?dataset=D&filter=r&branch=main&change={change['id']}"
        ),
    }
    assert item["dashboard_url"].startswith(f"{BASE}/dashboard/metric/")
    assert item["before"] == pytest.approx(5.0, abs=0.05)
    assert item["after"] == pytest.approx(6.0, abs=0.05)
    assert item["delta"] == pytest.approx(1.0, abs=0.1)
    assert item["delta"] == pytest.approx(change["delta"])
    assert item["delta_sigma"] > 8
    assert item["summary"].startswith(f"{item['before']:.4g} → {item['after']:.4g} mmag")

    # One alert, with its delivery record: nothing, as no channel is configured.
    one = await client.get(f"/api/v1/alerts/{pa1['id']}")
    assert one.status_code == 200, one.text
    assert one.json() == {**pa1, "notifications": []}
    missing = await client.get("/api/v1/alerts/999999")
    assert assert_problem(missing, 404, "not_found")["detail"] == "no alert 999999"

    # Filters.
    assert [a["id"] for a in await alerts(client, metric="alr.PA1")] == [pa1["id"]]
    assert await alerts(client, metric="alr.TE1") == []
    assert await alerts(client, metric="alr.PA*") == []  # a name, not a pattern
    assert len(await alerts(client, rule="regression")) == 2
    assert await alerts(client, rule="stale") == []
    assert len(await alerts(client, kind="regression")) == 2
    assert await alerts(client, kind="spec_level") == []
    assert len(await alerts(client, branch="main")) == 2
    assert len(await alerts(client, state="all")) == 2
    assert len(await alerts(client, state="open")) == 2
    assert await alerts(client, state="resolved") == []
    bad = await client.get("/api/v1/alerts", params={"kind": "nope"})
    assert assert_problem(bad, 422, "invalid_input")["location"] == ["query", "kind"]

    # Pages of one follow the list, newest first.
    paged: list[int] = []
    params: dict[str, Any] = {"limit": 1}
    while True:
        response = (await client.get("/api/v1/alerts", params=params)).json()
        paged += [a["id"] for a in response["alerts"]]
        if response["next_cursor"] is None:
            break
        assert len(paged) <= 2, paged
        params["cursor"] = response["next_cursor"]
    assert paged == [a["id"] for a in page["alerts"]]


# --- triage -----------------------------------------------------------------------------------


async def test_triage_acknowledges_invalidates_and_resolves(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str], triage: dict[str, str]
) -> None:
    await raise_alerts(app, client, auth)
    pa1 = await only_alert_of(client, "alr.PA1")
    am1 = await only_alert_of(client, "alr.AM1")
    writer = bearer(await new_token(app.state.context, "write:jobs"))
    for action in ("ack", "invalid", "resolve"):
        path = f"/api/v1/alerts/{pa1['id']}/{action}"
        assert_problem(await client.post(path), 401, "not_authenticated")
        assert_problem(await client.post(path, headers=writer), 403, "permission_denied")
    assert (await only_alert_of(client, "alr.PA1"))["state"] == "open"
    assert_problem(await client.post("/api/v1/alerts/999999/ack", headers=triage), 404, "not_found")

    acked = await client.post(
        f"/api/v1/alerts/{pa1['id']}/ack", headers=triage, json={"note": "on it (DM-1234)"}
    )
    assert acked.status_code == 200, acked.text
    assert (acked.json()["state"], acked.json()["note"]) == ("acknowledged", "on it (DM-1234)")
    assert acked.json()["resolved_at"] is None
    assert acked.json()["items"][0]["state"] == "open"
    assert [a["id"] for a in await alerts(client, state="acknowledged")] == [pa1["id"]]
    assert len(await alerts(client)) == 2  # acknowledged is still active

    # Resolving without a body keeps the note, and closes the items.
    resolved = await client.post(f"/api/v1/alerts/{pa1['id']}/resolve", headers=triage)
    assert resolved.status_code == 200, resolved.text
    view = resolved.json()
    assert (view["state"], view["note"]) == ("resolved", "on it (DM-1234)")
    assert view["resolved_at"] is not None
    assert [i["state"] for i in view["items"]] == ["resolved"]
    assert (await client.get(f"/api/v1/alerts/{pa1['id']}")).json()["state"] == "resolved"
    assert [a["id"] for a in await alerts(client, state="resolved")] == [pa1["id"]]
    assert [a["id"] for a in await alerts(client)] == [am1["id"]]

    again = await client.post(
        f"/api/v1/alerts/{pa1['id']}/invalid", headers=triage, json={"note": "false alarm"}
    )
    assert again.json()["state"] == "invalid"
    assert again.json()["resolved_at"] == view["resolved_at"]  # the first closing time stays

    late = await client.post(f"/api/v1/alerts/{pa1['id']}/ack", headers=triage)
    assert assert_problem(late, 422, "invalid_input")["detail"] == (
        f"alert {pa1['id']} is invalid; only an open alert can be acknowledged"
    )

    invalid = await client.post(
        f"/api/v1/alerts/{am1['id']}/invalid", headers=triage, json={"note": "flaky node"}
    )
    assert invalid.status_code == 200, invalid.text
    assert (invalid.json()["state"], invalid.json()["note"]) == ("invalid", "flaky node")
    assert [i["state"] for i in invalid.json()["items"]] == ["resolved"]
    assert await alerts(client) == []
    assert sorted(a["id"] for a in await alerts(client, state="invalid")) == sorted(
        [am1["id"], pa1["id"]]
    )
    refused = await client.post(
        f"/api/v1/alerts/{am1['id']}/ack", headers=triage, json={"note": "x", "extra": 1}
    )
    assert refused.status_code == 422, refused.text


async def test_accepting_the_change_resolves_its_alert(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str], triage: dict[str, str]
) -> None:
    await raise_alerts(app, client, auth)
    change = (await worse_changes(client))["alr.PA1"]
    alert = await only_alert_of(client, "alr.PA1")
    assert alert["state"] == "open"
    accepted = await client.post(
        f"/api/v1/changes/{change['id']}/accept", headers=triage, json={"note": "new PSF model"}
    )
    assert accepted.status_code == 200, accepted.text
    after = (await client.get(f"/api/v1/alerts/{alert['id']}")).json()
    assert after["state"] == "resolved"
    assert after["resolved_at"] is not None
    assert [i["state"] for i in after["items"]] == ["resolved"]
    assert (await only_alert_of(client, "alr.AM1"))["state"] == "open"
    # Detecting again does not raise the accepted change anew.
    regressions = app.state.context.regressions()
    await regressions.detect_many(await regressions.all_keys())
    assert [a["items"][0]["metric"] for a in await alerts(client)] == ["alr.AM1"]


# --- rules and silences -------------------------------------------------------------------------


async def test_the_rules_in_force_are_the_default_ones(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/alert-rules")
    assert response.status_code == 200, response.text
    rules = response.json()
    assert rules["source"] == "default rules"
    assert rules["channels"] == {"slack": False, "webhook": False, "github": False}
    assert rules["monitor_only"] == []
    assert [(r["name"], r["kind"]) for r in rules["rules"]] == [
        ("spec-level", "spec_level"),
        ("regression", "regression"),
        ("pr-regression", "pr_regression"),
        ("stale", "stale"),
    ]
    for rule in rules["rules"]:
        assert rule["enabled"] is True
        assert rule["branches"] == ["main"]
        assert rule["channels"] == ["slack", "webhook", "github"]
        assert rule["cooldown_s"] == 3600.0
    assert rules["rules"][0]["confirm"] == 2
    assert rules["rules"][3]["builds"] == 3


async def test_silences_are_created_listed_and_ended(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str], triage: dict[str, str]
) -> None:
    want = {"metric": "alr.PA*", "duration": "2h", "reason": "known PSF work"}
    assert_problem(await client.post("/api/v1/silences", json=want), 401, "not_authenticated")
    denied = await client.post("/api/v1/silences", json=want, headers=auth)
    assert_problem(denied, 403, "permission_denied")

    before = datetime.now(UTC)
    created = await client.post("/api/v1/silences", json=want, headers=triage)
    assert created.status_code == 201, created.text
    first = created.json()
    assert first == {
        **first,
        "rule": None,
        "metric": "alr.PA*",
        "dataset": None,
        "branch": None,
        "pr": None,
        "reason": "known PSF work",
        "active": True,
    }
    assert first["created_by"]
    ends = datetime.fromisoformat(first["ends_at"])
    assert before + timedelta(hours=2) - timedelta(seconds=5) <= ends
    assert ends <= datetime.now(UTC) + timedelta(hours=2)

    until = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    by_end = await client.post(
        "/api/v1/silences",
        json={"rule": "stale", "pr": 12, "ends_at": until.isoformat()},
        headers=triage,
    )
    assert by_end.status_code == 201, by_end.text
    second = by_end.json()
    assert (second["rule"], second["pr"], second["reason"]) == ("stale", 12, "")
    assert datetime.fromisoformat(second["ends_at"]) == until

    listed = (await client.get("/api/v1/silences")).json()["silences"]
    assert [s["id"] for s in listed] == [second["id"], first["id"]]

    ended = await client.delete(f"/api/v1/silences/{first['id']}", headers=triage)
    assert ended.status_code == 200, ended.text
    assert ended.json()["active"] is False
    assert datetime.fromisoformat(ended.json()["ends_at"]) <= datetime.now(UTC)
    listed = (await client.get("/api/v1/silences")).json()["silences"]
    assert [s["id"] for s in listed] == [second["id"]]
    every = (await client.get("/api/v1/silences", params={"active": "false"})).json()
    assert [(s["id"], s["active"]) for s in every["silences"]] == [
        (second["id"], True),
        (first["id"], False),
    ]
    gone = await client.delete("/api/v1/silences/999999", headers=triage)
    assert assert_problem(gone, 404, "not_found")["detail"] == "no silence 999999"
    assert_problem(
        await client.delete(f"/api/v1/silences/{second['id']}"), 401, "not_authenticated"
    )


BAD_SILENCES: list[tuple[dict[str, Any], list[str], str | None]] = [
    (
        {"duration": "2h", "reason": "everything"},
        ["body"],
        "a silence needs at least one of rule, metric, dataset, branch, pr",
    ),
    (
        {"metric": "alr.PA1", "duration": "2h", "ends_at": "2999-01-01T00:00:00Z"},
        ["body", "duration"],
        "give either duration (like 6h) or ends_at (RFC 3339), not both",
    ),
    (
        {"metric": "alr.PA1"},
        ["body", "duration"],
        "give either duration (like 6h) or ends_at (RFC 3339), not both",
    ),
    (
        {"metric": "alr.PA1", "duration": "2 fortnights"},
        ["body", "duration"],
        "'2 fortnights' is not a duration (like 90s, 15m, 6h, 2d)",
    ),
    (
        {"metric": "alr.PA1", "duration": "400d"},
        ["body", "duration"],
        "a duration must be between 0 and 366 days",
    ),
    (
        {"metric": "alr.PA1", "ends_at": "2020-01-01T00:00:00Z"},
        ["body", "ends_at"],
        "a silence must end in the future",
    ),
    (
        {"metric": "alr.PA1", "ends_at": "tomorrow"},
        ["body", "ends_at"],
        "ends_at 'tomorrow' is not an RFC 3339 date-time",
    ),
    (
        {"metric": "alr.PA1", "ends_at": "2999-01-01T00:00:00Z"},
        ["body", "ends_at"],
        "a silence lasts at most 366 days (end it, or make a new one, later)",
    ),
    (
        {"metric": "alr.PA1", "duration": "0"},
        ["body", "duration"],
        "a silence must last more than 0 s",
    ),
    ({"metric": "", "duration": "1h"}, ["body", "metric"], None),
    (
        {"rule": "nope", "duration": "2h"},
        ["body", "rule"],
        "no alert rule 'nope' (GET /api/v1/alert-rules lists them)",
    ),
    ({"metric": "alr.PA1", "duration": "2h", "colour": "red"}, ["body", "colour"], None),
]


async def test_bad_silences_are_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, triage: dict[str, str]
) -> None:
    for request_body, location, detail in BAD_SILENCES:
        response = await client.post("/api/v1/silences", json=request_body, headers=triage)
        problem = assert_problem(response, 422, "invalid_input")
        assert problem["location"] == location, request_body
        if detail is not None:
            assert problem["detail"] == detail, request_body
    every = await client.get("/api/v1/silences", params={"active": "false"})
    assert every.json() == {"silences": []}


async def test_an_ends_at_beyond_the_last_representable_time_is_refused(
    client: httpx.AsyncClient, triage: dict[str, str]
) -> None:
    response = await client.post(
        "/api/v1/silences",
        json={"metric": "alr.PA1", "ends_at": "9999-12-31T23:59:59-01:00"},
        headers=triage,
    )
    problem = assert_problem(response, 422, "invalid_input")
    assert problem["location"] == ["body", "ends_at"]
    assert (
        problem["detail"] == "a silence lasts at most 366 days (end it, or make a new one, later)"
    )


async def test_an_alert_raised_during_a_silence_is_recorded_silenced(
    app: FastAPI, client: httpx.AsyncClient, auth: dict[str, str], triage: dict[str, str]
) -> None:
    created = await client.post(
        "/api/v1/silences",
        json={"rule": "regression", "metric": "alr.PA*", "duration": "6h"},
        headers=triage,
    )
    assert created.status_code == 201, created.text
    await raise_alerts(app, client, auth)
    pa1 = await only_alert_of(client, "alr.PA1")
    am1 = await only_alert_of(client, "alr.AM1")
    assert (pa1["state"], pa1["silenced"]) == ("open", True)
    assert (am1["state"], am1["silenced"]) == ("open", False)
    assert (await client.get(f"/api/v1/alerts/{pa1['id']}")).json()["notifications"] == []


async def test_a_token_limited_to_packages_silences_only_their_metrics(
    app: FastAPI, client: httpx.AsyncClient, triage: dict[str, str]
) -> None:
    context: ProcessContext = app.state.context
    plain, _ = await context.tokens().create(scopes=["triage"], packages=["alr"])
    limited = bearer(plain)
    ok = await client.post(
        "/api/v1/silences", json={"metric": "alr.*", "duration": "1h"}, headers=limited
    )
    assert ok.status_code == 201, ok.text
    for body in (
        {"metric": "other.PA1", "duration": "1h"},
        {"metric": "al*.PA1", "duration": "1h"},  # a pattern over packages
        {"dataset": "HSC-RC2", "duration": "1h"},  # every package of a dataset
    ):
        refused = await client.post("/api/v1/silences", json=body, headers=limited)
        assert_problem(refused, 403, "permission_denied")
    other = await client.post(
        "/api/v1/silences", json={"dataset": "HSC-RC2", "duration": "1h"}, headers=triage
    )
    assert other.status_code == 201, other.text
    ended = await client.delete(f"/api/v1/silences/{other.json()['id']}", headers=limited)
    assert_problem(ended, 403, "permission_denied")
    mine = await client.delete(f"/api/v1/silences/{ok.json()['id']}", headers=limited)
    assert mine.status_code == 200 and mine.json()["active"] is False
    active = (await client.get("/api/v1/silences")).json()["silences"]
    assert [s["id"] for s in active] == [other.json()["id"]]
