"""Faults in the middle of a load, each followed by "nothing acknowledged lost, nothing doubled".

Every test runs 50 writers (retrying with the same ``Idempotency-Key`` after a transport error
or a 5xx, as the collector does) and a few readers for ``SPECWATCH_FAULT_LOAD_S`` seconds (15),
breaks one thing a third of the way in, and then checks every acknowledged job: one row in
SQL, one whole point per package in the series store.  Outside the fault's window no answer
may be a 5xx and no request may go unanswered; inside it only what the fault implies (503
while the database is away, no answer while the API process is dead).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import POSTGRES_ADMIN_URL
from fakes import FakeWebhook

from .harness import (
    TRANSPORT,
    Deployment,
    KillableInfluxDB,
    Load,
    LoadResult,
    MountError,
    PrivatePostgres,
    Verification,
    Workload,
    run_load,
    sql_rows,
    terminate_backends,
    tmpfs,
    verify_exactly_once,
)

LOAD_S = float(os.environ.get("SPECWATCH_FAULT_LOAD_S", "15"))
FAULT_AT_S = LOAD_S / 3  # the fault starts here; writers keep going until LOAD_S


def check(result: LoadResult, verification: Verification, deployment: Deployment) -> None:
    """What every fault test ends with."""
    print(result.summary())
    print(verification.summary())
    unhandled = deployment.unhandled_errors()
    if unhandled:
        print("unhandled errors logged by the server (answered 500):")
        for text, count in unhandled.most_common(8):
            print(f"  {count:4} × {text}")
    assert result.errors == []  # no valid job refused, no malformed one accepted or 5xx'd
    unexcused = result.unexcused()
    assert unexcused == [], (
        f"{len(unexcused)} failures the fault does not excuse, "
        f"{dict(Counter(f'{s.kind} {s.status}' for s in unexcused))}; the server logged "
        f"{dict(unhandled.most_common(3))}"
    )
    assert result.acked, "no job was acknowledged"
    assert verification.ok, verification.summary()
    assert verification.stored >= len(result.acked)  # plus any whose 201 a fault swallowed


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    with PrivatePostgres() as cluster:
        yield cluster


def test_influxd_killed_and_restarted(
    tmp_path: Path, postgres_database: str, influxdb: KillableInfluxDB
) -> None:
    """Ingest never depends on InfluxDB: jobs are acknowledged while it is dead (their points
    wait in the outbox); only series reads may answer 503."""
    workload = Workload()
    acked_while_down: list[int] = []

    async def kill_influxd(load: Load) -> None:
        await asyncio.sleep(FAULT_AT_S)
        async with load.fault("influxd killed", {"series": [503]}):
            influxdb.kill()
            before = len(load.acked)
            await asyncio.sleep(LOAD_S / 3)
            acked_while_down.append(len(load.acked) - before)
            await asyncio.to_thread(influxdb.start)

    deployment = Deployment.create(tmp_path, postgres_database, influxdb)
    with deployment:
        deployment.define(workload)
        load = Load(deployment.urls, deployment.token, workload, readers=10, duration_s=LOAD_S)
        result = run_load(load, kill_influxd)
        verification = verify_exactly_once(deployment, workload, result)
    check(result, verification, deployment)
    assert acked_while_down[0] > 0  # jobs were acknowledged while InfluxDB was dead …
    assert result.count(kind="write", status=503) == 0  # … and none was refused
    assert result.count(kind="series", status=503) > 0  # the fault did happen


def test_api_process_killed_and_restarted(
    tmp_path: Path, postgres_database: str, influxdb: KillableInfluxDB
) -> None:
    """SIGKILL of the only ``specwatch serve``: its in-flight requests get no answer; the
    writers retry with the same key; what it committed but never answered is stored once,
    and the points it never delivered go out from the outbox after the restart."""
    workload = Workload()

    async def kill_api(load: Load) -> None:
        await asyncio.sleep(FAULT_AT_S)
        async with load.fault("API killed", {"*": [TRANSPORT]}, settle_s=1.0):
            await asyncio.to_thread(deployment.apis[0].restart)

    deployment = Deployment.create(tmp_path, postgres_database, influxdb)
    with deployment:
        deployment.define(workload)
        load = Load(deployment.urls, deployment.token, workload, readers=10, duration_s=LOAD_S)
        result = run_load(load, kill_api)
        verification = verify_exactly_once(deployment, workload, result)
    check(result, verification, deployment)
    assert result.count(status=TRANSPORT) > 0  # the kill cut requests off
    assert deployment.apis[0].starts == 2
    assert result.server_errors() == 0


def test_postgres_connections_terminated(
    tmp_path: Path, postgres_database: str, influxdb: KillableInfluxDB
) -> None:
    """Every connection of the database terminated, three times: a request on a dropped
    connection may answer 503 (and is retried), never 500; nothing is lost or doubled."""
    workload = Workload()
    database = postgres_database.rsplit("/", 1)[1]
    terminated: list[int] = []

    async def terminate(load: Load) -> None:
        await asyncio.sleep(FAULT_AT_S)
        async with load.fault("connections terminated", {"*": [503]}):
            for _ in range(3):
                terminated.append(
                    await asyncio.to_thread(terminate_backends, POSTGRES_ADMIN_URL, database)
                )
                await asyncio.sleep(1.5)

    deployment = Deployment.create(tmp_path, postgres_database, influxdb)
    with deployment:
        deployment.define(workload)
        load = Load(deployment.urls, deployment.token, workload, readers=10, duration_s=LOAD_S)
        result = run_load(load, terminate)
        verification = verify_exactly_once(deployment, workload, result)
    print(f"terminated connections: {terminated}")
    check(result, verification, deployment)
    assert sum(terminated) > 0
    assert result.count(status=500) == 0


def test_postgres_restarted(
    tmp_path: Path, private_postgres: PrivatePostgres, influxdb: KillableInfluxDB
) -> None:
    """``pg_ctl restart -m fast`` under load: 503 while it is away, then service as before;
    a commit whose answer was lost is found by the retry (200, same job)."""
    workload = Workload()
    url = private_postgres.create_database(f"rel_{uuid.uuid4().hex[:8]}")
    restart_s: list[float] = []

    async def restart(load: Load) -> None:
        await asyncio.sleep(FAULT_AT_S)
        async with load.fault("PostgreSQL restarted", {"*": [503]}, settle_s=3.0):
            started = time.monotonic()
            await asyncio.to_thread(private_postgres.restart, "fast")
            restart_s.append(time.monotonic() - started)

    deployment = Deployment.create(tmp_path, url, influxdb)
    with deployment:
        deployment.define(workload)
        load = Load(deployment.urls, deployment.token, workload, readers=10, duration_s=LOAD_S)
        result = run_load(load, restart)
        verification = verify_exactly_once(deployment, workload, result)
    print(f"pg_ctl restart took {restart_s[0]:.1f} s")
    check(result, verification, deployment)
    assert result.count(status=500) == 0
    assert result.count(status=503) > 0  # the restart was felt


def test_sqlite_disk_full(tmp_path: Path) -> None:
    """A SQLite deployment on a small tmpfs that the writers fill: refusals are clear 507 or
    503 problems, never a 500; the database stays intact; once space is freed, every
    acknowledged job is there once, with its points in the embedded series store."""
    disk = tmp_path / "disk"
    with contextlib.ExitStack() as mounted:
        try:
            resize = mounted.enter_context(tmpfs(disk, "12m"))
        except (MountError, OSError) as error:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {error}")
        url = f"sqlite:///{disk / 'specwatch.sqlite3'}"
        workload = Workload()
        deployment = Deployment.create(tmp_path / "run", url, None)
        full: list[float] = []

        async def fill(load: Load) -> None:
            async with load.fault("disk full", {"*": [503, 507]}):
                while load.remaining_s() > 0:
                    if any(s.status in (503, 507) for s in load.samples[-200:]):
                        full.append(time.monotonic() - load.start)
                        break
                    await asyncio.sleep(0.2)
                await asyncio.sleep(max(0.0, load.remaining_s()))

        with deployment:
            deployment.define(workload)
            load = Load(deployment.urls, deployment.token, workload, readers=5, duration_s=LOAD_S)
            result = run_load(load, fill)
            refusals = [s for s in result.samples if s.status in (503, 507)]
            resize("512m")  # space freed: the outbox can deliver what it kept
            verification = verify_exactly_once(deployment, workload, result)
        with contextlib.closing(sqlite3.connect(disk / "specwatch.sqlite3")) as connection:
            integrity = connection.execute("PRAGMA integrity_check").fetchall()
    print(f"disk full after {full[0] if full else float('nan'):.1f} s; {len(refusals)} refusals")
    print(Counter(s.detail[:120] for s in refusals).most_common(3))
    check(result, verification, deployment)
    assert full, "the disk never filled: make the tmpfs smaller"
    assert result.count(status=500) == 0
    assert all(s.problem for s in refusals)  # application/problem+json, with a code
    assert integrity == [("ok",)]


def _webhook_deliveries(webhook: FakeWebhook) -> list[tuple[str, dict[str, Any]]]:
    with webhook.lock:
        return [
            (r.headers.get("X-Specwatch-Delivery", ""), r.json())
            for r in webhook.requests
            if r.method == "POST"
        ]


def test_alerts_from_two_apis_and_two_workers_once_each(
    tmp_path: Path, postgres_database: str, influxdb: KillableInfluxDB
) -> None:
    """Two API processes that only serve (``SPECWATCH_BACKGROUND=off``) and two workers that
    do the background work, one of them SIGKILLed and restarted mid-load: every job once in
    InfluxDB, every dataset's spec-level alert raised, and every notification delivered to
    the webhook once (de-duplicated by its delivery id; one id per alert and event)."""
    workload = Workload(failing_spec=True, datasets=10, metrics_per_package=20)
    with FakeWebhook() as webhook:
        deployment = Deployment.create(
            tmp_path,
            postgres_database,
            influxdb,
            apis=2,
            workers=2,
            settings={
                "SPECWATCH_ALERT_WEBHOOK_URL": webhook.url + "/hook",
                "SPECWATCH_DETECT_DEBOUNCE_S": "0.5",
                "SPECWATCH_ALERT_GROUP_WAIT_S": "0",
                "SPECWATCH_ALERT_RETRY_INITIAL_S": "0.2",
                "SPECWATCH_ALERT_RETRY_MAX_S": "1",
                "SPECWATCH_ALERT_LEASE_S": "3",
            },
            api_settings={"SPECWATCH_BACKGROUND": "off", "SPECWATCH_ALERT_DELIVERY": "false"},
            worker_settings={"SPECWATCH_ALERT_DELIVERY": "true"},
        )

        async def kill_worker(load: Load) -> None:
            await asyncio.sleep(FAULT_AT_S)
            async with load.fault("worker killed", {}):
                await asyncio.to_thread(deployment.workers[0].restart)

        with deployment:
            deployment.define(workload)
            load = Load(deployment.urls, deployment.token, workload, readers=6, duration_s=LOAD_S)
            result = run_load(load, kill_worker)
            verification = verify_exactly_once(deployment, workload, result)
            datasets = {job.dataset for job in result.acked_jobs.values()}

            def alerted() -> set[str]:
                return {
                    item["dataset"]
                    for _, body in _webhook_deliveries(webhook)
                    if body["event"] == "opened" and body["alert"]["rule"] == "spec-level"
                    for item in body["alert"]["items"]
                    if item["metric"] == "al.PA1"
                }

            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if alerted() >= datasets and deployment.health()["alerts_unsent"] == 0:
                    break
                time.sleep(0.5)
            time.sleep(2.0)  # a second copy of anything would come within this
            health = deployment.health()
            notifications = sql_rows(
                postgres_database,
                "SELECT id, alert_id, event, delivered_at IS NOT NULL, failed_at IS NOT NULL "
                "FROM alert_notification WHERE channel = 'webhook'",
            )
    check(result, verification, deployment)
    deliveries = _webhook_deliveries(webhook)
    received = Counter(delivery_id for delivery_id, _ in deliveries)
    expected = {f"specwatch-{row[0]}" for row in notifications}
    print(
        f"{len(notifications)} webhook notifications, {len(deliveries)} deliveries, "
        f"alerted datasets {sorted(alerted())}, health {health}"
    )
    assert alerted() == datasets  # every dataset's failing PA1 raised its alert …
    raised = {
        (body["alert"]["id"], item["dataset"])
        for _, body in deliveries
        if body["event"] == "opened" and body["alert"]["rule"] == "spec-level"
        for item in body["alert"]["items"]
    }
    per_dataset = Counter(dataset for _, dataset in raised)
    assert all(n == 1 for n in per_dataset.values()), per_dataset  # … once, by one worker
    assert set(received) == expected  # none missed, none invented
    assert all(delivered and not failed for _, _, _, delivered, failed in notifications)
    per_event = Counter(
        (body["alert"]["id"], body["event"]) for _, body in dict(deliveries).items()
    )
    assert all(n == 1 for n in per_event.values()), per_event  # one delivery id per alert+event
    # At least once: only a worker killed between the webhook's answer and the record of it
    # may repeat a delivery (the receiver drops it by its id); one kill, one at most.
    assert sum(n - 1 for n in received.values()) <= deployment.workers[0].starts - 1
    assert health["alerts_unsent"] == 0
