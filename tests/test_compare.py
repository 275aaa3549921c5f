"""PR and build comparison: noise-aware verdicts against a baseline of target-branch builds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import _migrate

from specwatch.config import Settings
from specwatch.metrics.compare import Outcome, compare_values
from specwatch.metrics.model import Direction
from specwatch.services.context import ProcessContext
from specwatch.services.demo import load_demo


def test_compare_values_outcomes() -> None:
    base = np.array([5.0, 5.1, 4.9, 5.05, 4.95, np.nan])
    stable = compare_values(base, 5.02, Direction.LOWER)
    assert stable.outcome is Outcome.WITHIN_NOISE
    assert stable.base_n == 5
    assert stable.base_mean == pytest.approx(5.0)
    assert stable.base_std == pytest.approx(np.std([5.0, 5.1, 4.9, 5.05, 4.95], ddof=1))
    worse = compare_values(base, 6.0, Direction.LOWER)
    assert worse.outcome is Outcome.REGRESSED
    assert worse.delta == pytest.approx(1.0)
    assert worse.delta_pct == pytest.approx(20.0)
    assert worse.delta_sigma == pytest.approx(1.0 / worse.base_std)  # type: ignore[operator]
    assert compare_values(base, 6.0, Direction.HIGHER).outcome is Outcome.IMPROVED
    assert compare_values(base, 4.0, Direction.LOWER).outcome is Outcome.IMPROVED
    assert compare_values(np.array([5.0, 5.0]), 5.0, Direction.LOWER).outcome is Outcome.UNCHANGED
    assert compare_values(base, 6.0, Direction.LOWER, min_abs=2.0).outcome is Outcome.WITHIN_NOISE
    one = compare_values(np.array([5.0]), 5.1, Direction.LOWER)  # no spread: 5 % rule
    assert one.outcome is Outcome.WITHIN_NOISE
    assert one.delta_sigma is None
    assert compare_values(np.array([5.0]), 6.0, Direction.LOWER).outcome is Outcome.REGRESSED
    assert compare_values(base, None, Direction.LOWER).delta is None
    assert compare_values(np.array([]), 6.0, Direction.LOWER).outcome is Outcome.WITHIN_NOISE
    # No head value where the baseline has some: missing, not within noise.
    assert compare_values(base, None, Direction.LOWER).outcome is Outcome.MISSING
    gone = compare_values(base, math.nan, Direction.LOWER)
    assert (gone.outcome, gone.head_value, gone.base_n) == (Outcome.MISSING, None, 5)
    assert compare_values(np.array([np.nan]), None, Direction.LOWER).outcome is (
        Outcome.WITHIN_NOISE
    )
    assert compare_values(base, 6.0, Direction.LOWER, min_pct=25.0).outcome is (
        Outcome.WITHIN_NOISE
    )


async def test_a_pr_that_drops_a_metric_or_stays_under_its_floor(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    floored = {
        **DEFINITIONS,
        "metrics/cmp.yaml": DEFINITIONS["metrics/cmp.yaml"].replace(
            "AM1:\n  unit: marcsec\n", "AM1:\n  unit: marcsec\n  regression_floor: {pct: 50}\n"
        ),
    }
    await client.post("/api/v1/definitions", json={"files": floored}, headers=auth)
    rng = np.random.default_rng(3)
    for n in range(1, 11):
        body = job(n, 5.0 + rng.normal(0, 0.1), 10.0 + rng.normal(0, 0.2), 90 + rng.normal(0, 0.5))
        await client.post("/api/v1/jobs", content=body, headers=auth)
    # The PR makes AM1 30 % worse (under its floor) and no longer measures COMPLETENESS.
    pr = json.loads(job(50, 5.0, 13.0, 90.0, branch="tickets/DM-2", pr=8, day=20))
    pr["measurements"] = [m for m in pr["measurements"] if m["metric"] != "cmp.COMPLETENESS"]
    await client.post("/api/v1/jobs", content=json.dumps(pr).encode(), headers=auth)
    body = (await client.get("/api/v1/compare", params={"head": "pr:8"})).json()
    rows = {r["metric"]: r for r in body["metrics"]}
    assert rows["cmp.AM1"]["verdict"] == "within_noise"
    assert rows["cmp.AM1"]["delta_pct"] == pytest.approx(30.0, abs=3.0)
    gone = rows["cmp.COMPLETENESS"]
    assert gone["verdict"] == "missing"
    assert gone["head_value"] is None and gone["base_n"] == 10
    assert gone["unit"] == "%"
    assert body["metrics"][0]["metric"] == "cmp.COMPLETENESS"  # nothing regressed: it leads


DEFINITIONS = {
    "metrics/cmp.yaml": "PA1:\n  unit: mmag\nAM1:\n  unit: marcsec\n"
    "COMPLETENESS:\n  unit: '%'\n  direction: higher\nTE1:\n  unit: ''\n",
    "specs/cmp/PA1.yaml": "---\nname: design\nmetric: PA1\nlevel: design\n"
    "threshold: {value: 5.5, unit: mmag, operator: '<='}\n---\nname: minimum\nmetric: PA1\n"
    "level: minimum\nthreshold: {value: 8.0, unit: mmag, operator: '<='}\n",
}


def job(
    n: int,
    pa1: float,
    am1: float,
    completeness: float,
    *,
    branch: str = "main",
    pr: int | None = None,
    base_commit: str | None = None,
    day: int | None = None,
) -> bytes:
    return json.dumps(
        {
            "measurements": [
                {"metric": "cmp.PA1", "value": pa1, "unit": "mmag"},
                {"metric": "cmp.AM1", "value": am1, "unit": "marcsec"},
                {"metric": "cmp.COMPLETENESS", "value": completeness, "unit": "%"},
                {"metric": "cmp.TE1", "value": 1.0, "unit": ""},
            ],
            "meta": {
                "dataset": "D",
                "filter": "r",
                "branch": branch,
                "pr": pr,
                "base_commit": base_commit,
                "commit": ("a" if branch == "main" else "b") + f"{n:06x}",
                "time": f"2026-06-{day or n:02d}T00:00:00Z",
            },
        }
    ).encode()


async def test_pr_against_its_merge_base(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    await client.post("/api/v1/definitions", json={"files": DEFINITIONS}, headers=auth)
    rng = np.random.default_rng(7)
    main_ids = []
    for n in range(1, 16):
        body = job(n, 5.0 + rng.normal(0, 0.1), 10.0 + rng.normal(0, 0.2), 90 + rng.normal(0, 0.5))
        main_ids.append(
            (await client.post("/api/v1/jobs", content=body, headers=auth)).json()["id"]
        )
    # PR 7 branches from main build 8; its two builds come later (days 20, 21).
    merge_base = "a000008"
    await client.post(
        "/api/v1/jobs",
        headers=auth,
        content=job(
            100, 9.0, 10.0, 90, branch="tickets/DM-1", pr=7, base_commit=merge_base, day=20
        ),
    )
    latest = await client.post(
        "/api/v1/jobs",
        headers=auth,
        content=job(
            101, 6.5, 8.0, 95.0, branch="tickets/DM-1", pr=7, base_commit=merge_base, day=21
        ),
    )
    response = await client.get("/api/v1/compare", params={"head": "pr:7"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [j["id"] for j in body["head"]["jobs"]] == [latest.json()["id"]]  # the latest build
    assert sorted(j["id"] for j in body["base"]["jobs"]) == main_ids[:8]  # up to the merge base
    assert "8 main builds up to merge base a000008" in body["base"]["how"][0]
    rows = {r["metric"]: r for r in body["metrics"]}
    assert body["metrics"][0]["metric"] == "cmp.PA1"  # worst first
    pa1 = rows["cmp.PA1"]
    assert pa1["verdict"] == "regressed"
    assert pa1["delta"] == pytest.approx(6.5 - pa1["base_mean"])
    assert pa1["delta_sigma"] > 5
    assert pa1["level"] == {"base": "design", "head": "minimum", "crossed": True}
    assert {s["spec"]: s["status"] for s in pa1["specs"]} == {
        "cmp.PA1.design": "fail",
        "cmp.PA1.minimum": "pass",
    }
    assert rows["cmp.AM1"]["verdict"] == "improved"  # lower is better, by default
    assert rows["cmp.COMPLETENESS"]["verdict"] == "improved"  # higher is better
    assert rows["cmp.TE1"]["verdict"] == "unchanged"
    assert rows["cmp.TE1"]["base_std"] == 0.0

    # Explicit base: one build; a job id as head.
    explicit = (
        await client.get(
            "/api/v1/compare", params={"head": str(latest.json()["id"]), "base": str(main_ids[-1])}
        )
    ).json()
    assert [j["id"] for j in explicit["base"]["jobs"]] == [main_ids[-1]]
    # base=auto for a main build: the builds before it; n bounds them.
    previous = (await client.get("/api/v1/compare", params={"head": "a00000f", "n": 3})).json()
    assert sorted(j["id"] for j in previous["base"]["jobs"]) == main_ids[11:14]


async def test_compare_errors(client: httpx.AsyncClient) -> None:
    bad = await client.get("/api/v1/compare", params={"head": "not a ref"})
    assert bad.status_code == 422  # the documented pattern: a job id, a commit or pr:N
    assert bad.json()["location"] == ["query", "head"] and "pattern" in bad.json()["detail"]
    for unknown in ("pr:0", "pr:9999999999", "99999999999999999999"[:19]):
        assert (await client.get("/api/v1/compare", params={"head": unknown})).status_code == 404
    missing = await client.get("/api/v1/compare", params={"head": "pr:404"})
    assert missing.status_code == 404
    assert (await client.get("/api/v1/compare", params={"head": "1", "n": 0})).status_code == 422


async def test_the_demo_regressing_pr_is_found(tmp_path: Path) -> None:
    """On the demo history: the PR that regresses PA1 on HSC-RC2 comes out on top."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'demo.sqlite3'}"
    _migrate(url)
    context = await ProcessContext.open(Settings(database_url=url))
    try:
        await load_demo(context)
        result = await context.compare().compare("pr:1063")
        top = result.metrics[0]
        assert top.metric == "validate_drp.PA1"
        assert top.comparison.outcome is Outcome.REGRESSED
        assert top.comparison.base_n == 10
        assert (top.comparison.delta_pct or 0) > 20
        quiet = await context.compare().compare("pr:1057")
        assert not [
            m
            for m in quiet.metrics
            if m.comparison.outcome is Outcome.REGRESSED and m.metric == "validate_drp.PA1"
        ]
    finally:
        await context.close()
