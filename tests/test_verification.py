"""Spec verdicts, requirement status and their API, on every stack."""

from __future__ import annotations

import json
import math

import httpx
import pytest

from specwatch.exceptions import DefinitionError
from specwatch.metrics.model import Level, Specification
from specwatch.metrics.requirements import (
    Method,
    Requirement,
    parse_requirements,
    requirement_status,
    specs_of,
)
from specwatch.metrics.verification import (
    Status,
    evaluate,
    highest_level,
    query_matches,
    verify,
)


def spec(
    name: str,
    threshold: float,
    operator: str = "<=",
    level: Level | None = Level.DESIGN,
    unit: str = "mmag",
    query: dict[str, str] | None = None,
    requirements: tuple[str, ...] = (),
) -> Specification:
    return Specification(
        "vd", "PA1", name, threshold, unit, operator, query or {}, (), level, requirements
    )


def test_query_matches_needs_every_key_with_an_equal_value() -> None:
    meta = {"instrument": "HSC", "filter_name": "HSC-G", "visit": 1228}
    assert query_matches({}, meta)
    assert query_matches({"instrument": "HSC", "filter_name": "HSC-G"}, meta)
    assert not query_matches({"instrument": "HSC", "filter_name": "HSC-R"}, meta)
    assert not query_matches({"dataset_name": "x"}, meta)
    assert query_matches({"visit": "1228"}, meta)  # YAML may quote what the job sends as a number


@pytest.mark.parametrize(
    ("operator", "value", "status"),
    [
        ("<=", 5.0, Status.PASS),
        ("<=", 5.01, Status.FAIL),
        ("<", 5.0, Status.FAIL),
        (">=", 5.0, Status.PASS),
        (">", 4.99, Status.FAIL),
        ("==", 5.0, Status.PASS),
        ("!=", 5.0, Status.FAIL),
        ("<=", math.nan, Status.NOT_TESTED),
        ("<=", None, Status.NOT_TESTED),
    ],
)
def test_operators_and_not_tested(operator: str, value: float | None, status: Status) -> None:
    assert evaluate(spec("s", 5.0, operator), value, "mmag").status is status


def test_threshold_in_another_unit_is_converted_to_the_metric_unit() -> None:
    verdict = evaluate(spec("s", 0.005, unit="mag"), 4.9, "mmag")
    assert verdict.threshold == pytest.approx(5.0)
    assert verdict.unit == "mmag"
    assert verdict.status is Status.PASS


def test_verify_applies_only_matching_specs_of_measured_metrics() -> None:
    specs = [
        spec("hsc", 5.0, query={"instrument": "HSC"}),
        spec("decam", 5.0, query={"instrument": "DECam"}),
        Specification("vd", "AM1", "d", 10, "mas", "<="),
    ]
    verdicts = verify({"vd.PA1": (4.0, "mmag")}, specs, {"instrument": "HSC"})
    assert [v.spec for v in verdicts] == ["vd.PA1.hsc"]


def test_verify_with_units_reports_missing_measurements_of_the_jobs_packages() -> None:
    specs = [
        spec("hsc", 5.0, query={"instrument": "HSC"}),
        Specification("vd", "AM1", "d", 0.01, "arcsec", "<="),
        Specification("vd", "AM1", "decam", 10, "mas", "<=", {"instrument": "DECam"}),
        Specification("other", "X", "d", 1, "", "<="),  # a package the job does not measure
    ]
    verdicts = verify(
        {"vd.PA1": (4.0, "mmag")}, specs, {"instrument": "HSC"}, units={"vd.AM1": "marcsec"}
    )
    assert [(v.spec, v.status, v.measured) for v in verdicts] == [
        ("vd.PA1.hsc", Status.PASS, True),
        ("vd.AM1.d", Status.NOT_TESTED, False),
    ]
    assert verdicts[1].value is None
    assert verdicts[1].threshold == pytest.approx(10.0)  # in the metric's unit
    assert verdicts[1].unit == "marcsec"


def test_highest_level_is_cumulative() -> None:
    specs = [
        spec("min", 8.0, level=Level.MINIMUM),
        spec("des", 5.0),
        spec("str", 3.0, level=Level.STRETCH),
    ]

    def level(value: float) -> Level | None:
        return highest_level(verify({"vd.PA1": (value, "mmag")}, specs, {}))

    assert level(2.0) is Level.STRETCH
    assert level(4.0) is Level.DESIGN
    assert level(6.0) is Level.MINIMUM
    assert level(9.0) is None
    assert level(math.nan) is None


def test_a_spec_tested_by_several_jobs_of_a_build_counts_once() -> None:
    specs = [
        spec("des", 5.0),
        spec("min", 8.0, level=Level.MINIMUM),
        spec("s", 3.0, level=Level.STRETCH),
    ]
    # One job per filter: r passes everything, g fails design and is not tested at stretch.
    r = verify({"vd.PA1": (2.0, "mmag")}, specs, {})
    g = [*verify({"vd.PA1": (6.0, "mmag")}, specs[:2], {}), evaluate(specs[2], None, "mmag")]
    status = requirement_status(Requirement("R-1"), [s.full_name for s in specs], r + g)
    assert {level: counts.as_dict() for level, counts in status.levels.items()} == {
        "minimum": {"pass": 1, "fail": 0, "not_tested": 0},
        "design": {"pass": 0, "fail": 1, "not_tested": 0},
        "stretch": {"pass": 0, "fail": 0, "not_tested": 1},
    }
    assert status.fraction == 0.0
    alone = requirement_status(Requirement("R-1"), [s.full_name for s in specs], r + r)
    assert alone.fraction == 1.0
    assert alone.levels["design"].as_dict() == {"pass": 1, "fail": 0, "not_tested": 0}


def test_requirements_from_yaml_and_csv() -> None:
    yaml_text = (
        "requirements:\n"
        "  - {id: DMS-REQ-0029, title: Photometry, method: test, specs: ['vd.PA1.*']}\n"
    )
    (requirement,) = parse_requirements(yaml_text)
    assert requirement == Requirement("DMS-REQ-0029", "Photometry", Method.TEST, ("vd.PA1.*",))
    csv_text = "id,title,method,specs\nDMS-REQ-0030,Astrometry,Analysis,vd.AM1.* vd.AM2.*\n"
    (from_csv,) = parse_requirements(csv_text, source="matrix.csv")
    assert from_csv.method is Method.ANALYSIS
    assert from_csv.specs == ("vd.AM1.*", "vd.AM2.*")
    with pytest.raises(DefinitionError, match="method 'Guess' is not one of"):
        parse_requirements("- {id: X-1, method: Guess}")
    with pytest.raises(DefinitionError, match="listed twice"):
        parse_requirements("- {id: X-1}\n- {id: X-1}")
    named = spec("tagged", 5.0, requirements=("DMS-REQ-0275",))
    assert specs_of(Requirement("DMS-REQ-0275"), [named, spec("other", 1.0)]) == ("vd.PA1.tagged",)


DEFINITIONS = {
    "metrics/vd.yaml": "PA1:\n  unit: mmag\nAM1:\n  unit: marcsec\n",
    "specs/vd/PA1.yaml": """
---
id: base
metric: PA1
threshold: {unit: mmag, operator: "<="}
requirements: [DMS-REQ-0029]
---
name: minimum
base: "#base"
threshold: {value: 8.0}
level: minimum
---
name: design
base: "#base"
threshold: {value: 5.0}
level: design
---
name: stretch
base: "#base"
threshold: {value: 0.003, unit: mag}
level: stretch
---
name: hsc_design
base: "#base"
threshold: {value: 4.5}
level: design
metadata_query: {instrument: HSC}
""",
    "specs/vd/AM1.yaml": """
name: design
metric: AM1
threshold: {value: 10, unit: marcsec, operator: "<="}
tags: [design]
requirements: [DMS-REQ-0030]
""",
}


def job(
    pa1: float,
    am1: float,
    *,
    instrument: str = "HSC",
    commit: str = "c1",
    time: str = "2026-05-01T00:00:00Z",
) -> bytes:
    return json.dumps(
        {
            "measurements": [
                {"metric": "vd.PA1", "value": pa1, "unit": "mmag"},
                {"metric": "vd.AM1", "value": am1, "unit": "arcsec"},
            ],
            "meta": {
                "dataset": "HSC-RC2",
                "instrument": instrument,
                "branch": "main",
                "commit": commit,
                "time": time,
            },
        }
    ).encode()


async def post(client: httpx.AsyncClient, auth: dict[str, str], body: bytes) -> int:
    response = await client.post("/api/v1/jobs", content=body, headers=auth)
    assert response.status_code == 201, response.text
    job_id: int = response.json()["id"]
    return job_id


async def test_job_verdicts_and_their_recomputation(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    assert (
        await client.post("/api/v1/definitions", json={"files": DEFINITIONS}, headers=auth)
    ).status_code == 200
    job_id = await post(client, auth, job(4.8, 0.0125))
    body = (await client.get(f"/api/v1/jobs/{job_id}/verdicts")).json()
    verdicts = {v["spec"]: v for v in body["verdicts"]}
    assert set(verdicts) == {
        "vd.PA1.minimum",
        "vd.PA1.design",
        "vd.PA1.stretch",
        "vd.PA1.hsc_design",
        "vd.AM1.design",
    }
    assert verdicts["vd.PA1.design"] == {
        "metric": "vd.PA1",
        "spec": "vd.PA1.design",
        "level": "design",
        "status": "pass",
        "value": 4.8,
        "operator": "<=",
        "threshold": 5.0,
        "unit": "mmag",
        "measured": True,
        "requirements": ["DMS-REQ-0029"],
    }
    assert verdicts["vd.PA1.stretch"]["threshold"] == pytest.approx(3.0)  # 0.003 mag in mmag
    assert verdicts["vd.PA1.stretch"]["status"] == "fail"
    assert verdicts["vd.PA1.hsc_design"]["status"] == "fail"  # 4.8 > 4.5 on HSC
    assert verdicts["vd.AM1.design"]["status"] == "fail"  # 12.5 mas
    assert body["summary"] == {"pass": 2, "fail": 3, "not_tested": 0}
    assert body["highest_level"] == {"vd.AM1": None, "vd.PA1": "minimum"}

    # A DECam job: the HSC-only spec does not apply.
    decam = await post(
        client, auth, job(4.8, 0.0125, instrument="DECam", commit="c0", time="2026-04-01T00:00:00Z")
    )
    decam_specs = {
        v["spec"] for v in (await client.get(f"/api/v1/jobs/{decam}/verdicts")).json()["verdicts"]
    }
    assert "vd.PA1.hsc_design" not in decam_specs

    # A job without AM1: its design spec is not tested (a missing measurement), not absent.
    no_am1 = json.loads(job(4.8, 0.0, commit="c2", time="2026-06-01T00:00:00Z"))
    no_am1["measurements"] = no_am1["measurements"][:1]
    partial = await post(client, auth, json.dumps(no_am1).encode())
    partial_body = (await client.get(f"/api/v1/jobs/{partial}/verdicts")).json()
    missing = {v["spec"]: v for v in partial_body["verdicts"]}["vd.AM1.design"]
    assert missing["status"] == "not_tested"
    assert missing["measured"] is False
    assert missing["value"] is None
    assert missing["threshold"] == 10.0
    assert missing["unit"] == "marcsec"
    assert partial_body["summary"] == {"pass": 2, "fail": 2, "not_tested": 1}

    # Specs change: history's verdicts follow at once (derived, never frozen).
    relaxed = {
        **DEFINITIONS,
        "specs/vd/AM1.yaml": DEFINITIONS["specs/vd/AM1.yaml"].replace("value: 10", "value: 15"),
    }
    assert (
        await client.post("/api/v1/definitions", json={"files": relaxed}, headers=auth)
    ).status_code == 200
    after = {
        v["spec"]: v
        for v in (await client.get(f"/api/v1/jobs/{job_id}/verdicts")).json()["verdicts"]
    }
    assert after["vd.AM1.design"]["status"] == "pass"
    assert after["vd.AM1.design"]["threshold"] == 15.0
    retired = {k: v for k, v in relaxed.items() if k != "specs/vd/AM1.yaml"}
    await client.post("/api/v1/definitions", json={"files": retired}, headers=auth)
    gone = {
        v["spec"] for v in (await client.get(f"/api/v1/jobs/{job_id}/verdicts")).json()["verdicts"]
    }
    assert "vd.AM1.design" not in gone
    assert (await client.get("/api/v1/jobs/999999/verdicts")).status_code == 404


async def test_requirement_status_on_the_latest_build(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await client.post("/api/v1/definitions", json={"files": DEFINITIONS}, headers=auth)
    matrix = (
        "requirements:\n"
        "  - {id: DMS-REQ-0029, title: Photometric repeatability, method: Test}\n"
        "  - {id: DMS-REQ-0099, title: Everything astrometric, method: Analysis,"
        " specs: ['vd.AM1.*']}\n"
    )
    imported = await client.post("/api/v1/requirements", json={"text": matrix}, headers=auth)
    assert imported.json() == {"added": 2, "updated": 0, "unchanged": 0}
    # No build of the dataset yet: a 404 naming it, not a 200 of nulls that reads "unverified".
    empty = await client.get("/api/v1/requirements", params={"dataset": "HSC-RC2"})
    assert empty.status_code == 404 and "'HSC-RC2'" in empty.json()["detail"]
    assert (await client.get("/api/v1/requirements")).json()["build"] is None

    await post(client, auth, job(9.0, 0.02, commit="old", time="2026-04-01T00:00:00Z"))
    latest = await post(client, auth, job(4.8, 0.0125, commit="new"))
    body = (
        await client.get("/api/v1/requirements", params={"dataset": "HSC-RC2", "branch": "main"})
    ).json()
    assert body["build"]["commit"] == "new"
    assert [j["id"] for j in body["build"]["jobs"]] == [latest]
    by_id = {r["id"]: r for r in body["requirements"]}
    assert set(by_id) == {"DMS-REQ-0029", "DMS-REQ-0030", "DMS-REQ-0099"}
    photometry = by_id["DMS-REQ-0029"]
    assert photometry["title"] == "Photometric repeatability"
    # design: vd.PA1.design passes, vd.PA1.hsc_design fails -> 1 of 2
    assert photometry["status"] == 0.5
    assert photometry["levels"] == {
        "minimum": {"pass": 1, "fail": 0, "not_tested": 0},
        "design": {"pass": 1, "fail": 1, "not_tested": 0},
        "stretch": {"pass": 0, "fail": 1, "not_tested": 0},
    }
    assert by_id["DMS-REQ-0030"]["title"] == ""  # named only in the spec YAML
    assert by_id["DMS-REQ-0030"]["status"] == 0.0
    assert by_id["DMS-REQ-0099"]["specs"] == ["vd.AM1.design"]

    # A newer build that does not measure AM1: its requirement is not tested, not passed.
    no_am1 = json.loads(job(4.8, 0.0, commit="newer", time="2026-06-01T00:00:00Z"))
    no_am1["measurements"] = no_am1["measurements"][:1]
    await post(client, auth, json.dumps(no_am1).encode())
    newer = (await client.get("/api/v1/requirements", params={"dataset": "HSC-RC2"})).json()
    astrometry = {r["id"]: r for r in newer["requirements"]}["DMS-REQ-0030"]
    assert astrometry["status"] == 0.0
    assert astrometry["levels"]["design"] == {"pass": 0, "fail": 0, "not_tested": 1}
    bad = await client.post(
        "/api/v1/requirements", json={"text": "- {id: 'no good'}"}, headers=auth
    )
    assert bad.status_code == 422
    assert "is not a requirement ID" in bad.json()["detail"]
