"""First end-to-end checks of ingest and read-back on every stack."""

from __future__ import annotations

import httpx

JOB = {
    "measurements": [
        {"metric": "demo.PA1", "value": 5.5, "unit": "mmag", "identifier": None},
        {"metric": "demo.AM1", "value": 0.0071, "unit": "arcsec", "identifier": "x"},
    ],
    "meta": {
        "dataset": "HSC-RC2",
        "branch": "main",
        "commit": "abc",
        "time": "2026-01-01T00:00:00Z",
    },
}
FILES = {
    "metrics/demo.yaml": "PA1:\n  unit: mmag\n  description: rms\nAM1:\n  unit: marcsec\n",
}


async def test_ingest_and_series(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    response = await client.post("/api/v1/definitions", json={"files": FILES}, headers=auth)
    assert response.status_code == 200, response.text
    response = await client.post("/api/v1/jobs", json=JOB, headers=auth)
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    again = await client.post("/api/v1/jobs", json=JOB, headers=auth)
    assert again.status_code == 200 and again.json()["id"] == job_id
    job = (await client.get(f"/api/v1/jobs/{job_id}")).json()
    am1 = next(m for m in job["measurements"] if m["metric"] == "demo.AM1")
    assert am1["unit"] == "marcsec" and abs(am1["value"] - 7.1) < 1e-9
    series = (
        await client.get("/api/v1/metrics/demo.AM1/series", params={"dataset": "HSC-RC2"})
    ).json()
    assert series["job_id"] == [job_id]
    assert abs(series["value"][0] - 7.1) < 1e-9
