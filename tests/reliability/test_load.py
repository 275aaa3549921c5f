"""The production shape under load: 50 writers and 20 readers against one ``specwatch serve``
on PostgreSQL + InfluxDB, for ``SPECWATCH_LOAD_S`` seconds (15 by default)."""

from __future__ import annotations

from pathlib import Path

from .conftest import LOAD_S
from .harness import Deployment, KillableInfluxDB, Load, Workload, run_load, verify_exactly_once


def test_load_answers_every_request_and_stores_every_acknowledged_job_once(
    tmp_path: Path, postgres_database: str, influxdb: KillableInfluxDB
) -> None:
    workload = Workload()
    deployment = Deployment.create(tmp_path, postgres_database, influxdb)
    with deployment:
        deployment.define(workload)
        load = Load(
            deployment.urls, deployment.token, workload, writers=50, readers=20, duration_s=LOAD_S
        )
        result = run_load(load)
        print(result.summary())
        verification = verify_exactly_once(deployment, workload, result)
        print(verification.summary())

    assert result.errors == []
    assert result.server_errors() == 0, result.unexcused()[:5]
    assert result.unexcused() == []
    assert len(result.acked) >= 5 * LOAD_S  # the load did load: at least 5 jobs a second
    assert result.unacked == []  # nothing failed, so nothing is left hanging
    # Every malformed job was answered, and with a 4xx.
    assert result.malformed and all(
        isinstance(status, int) and 400 <= status < 500 for _, status in result.malformed.values()
    ), result.malformed
    for kind in ("series", "compare", "jobs"):
        assert result.count(kind=kind, status=200) > 0, kind
    assert result.count(kind="replay", status=200) == result.count(kind="replay")
    assert verification.ok, verification.summary()
    assert verification.stored == len(result.acked)
