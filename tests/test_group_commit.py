"""Group commit: concurrent ingests share one transaction, and each keeps its own idempotency
(a replay, a conflict, the same job twice in one group) and its own errors."""

from __future__ import annotations

import asyncio
import json

import pytest

from specwatch.exceptions import IdempotencyConflictError, InvalidInputError
from specwatch.metrics.definitions import parse_definition_files
from specwatch.metrics.records import JobFilter
from specwatch.services.context import ProcessContext

DEFINITIONS = {"metrics/gc.yaml": "PA1:\n  unit: mmag\nAM1:\n  unit: marcsec\n"}


def body(n: int, **extra: object) -> bytes:
    return json.dumps(
        {
            "measurements": [
                {"metric": "gc.PA1", "value": 5.0 + n / 100, "unit": "mmag"},
                {"metric": "gc.AM1", "value": 0.007, "unit": "arcsec"},
            ],
            "meta": {"dataset": "HSC-RC2", "branch": "main", "commit": f"c{n:03d}", **extra},
        }
    ).encode()


@pytest.fixture
async def ready(context: ProcessContext) -> ProcessContext:
    await context.definitions().import_definitions(parse_definition_files(DEFINITIONS))
    return context


async def test_concurrent_ingests_share_transactions(ready: ProcessContext) -> None:
    group = ready.group_commit
    assert group is not None
    before = group.groups
    results = await asyncio.gather(*(ready.jobs().ingest(body(n)) for n in range(40)))
    assert all(r.created for r in results)
    assert len({r.id for r in results}) == 40
    assert group.groups - before < 40  # some shared a commit
    stored = await ready.jobs().list_jobs(JobFilter(), before=None, limit=100)
    assert sorted(j.context.commit or "" for j in stored) == [f"c{n:03d}" for n in range(40)]
    job, _ = await ready.jobs().get(results[7].id)
    assert job.context.commit == "c007"
    values = {m.metric: (m.value, m.unit) for m in job.measurements}
    assert values == {"gc.PA1": (5.07, "mmag"), "gc.AM1": (pytest.approx(7.0), "marcsec")}
    await ready.deliverer.drain()
    assert await ready.deliverer.pending() == 0


async def test_the_same_job_twice_in_one_group_is_stored_once(ready: ProcessContext) -> None:
    same = body(1)
    first, second, keyed = await asyncio.gather(
        ready.jobs().ingest(same),
        ready.jobs().ingest(same),
        ready.jobs().ingest(same, idempotency_key="ci-42"),
    )
    assert first.id == second.id == keyed.id
    assert sorted([first.created, second.created, keyed.created]) == [False, False, True]
    stored = await ready.jobs().list_jobs(JobFilter(), before=None, limit=10)
    assert len(stored) == 1


async def test_a_key_used_with_two_bodies_at_once_conflicts(ready: ProcessContext) -> None:
    outcomes = await asyncio.gather(
        ready.jobs().ingest(body(1), idempotency_key="k1"),
        ready.jobs().ingest(body(2), idempotency_key="k1"),
        return_exceptions=True,
    )
    created = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(created) == 1 and created[0].created
    assert len(refused) == 1 and isinstance(refused[0], IdempotencyConflictError)
    stored = await ready.jobs().list_jobs(JobFilter(), before=None, limit=10)
    assert len(stored) == 1
    # Later: a replay of the stored one, a conflict for the other.
    won = int((stored[0].context.commit or "c0")[1:])
    again = await ready.jobs().ingest(body(won), idempotency_key="k1")
    assert (again.id, again.created) == (created[0].id, False)
    with pytest.raises(IdempotencyConflictError):
        await ready.jobs().ingest(body(3 - won), idempotency_key="k1")


async def test_a_bad_job_does_not_fail_its_group(ready: ProcessContext) -> None:
    bad = json.dumps(
        {"measurements": [{"metric": "gc.PA1", "value": 1.0, "unit": "kg"}], "meta": {}}
    ).encode()
    outcomes = await asyncio.gather(
        *(ready.jobs().ingest(body(n)) for n in range(5)),
        ready.jobs().ingest(bad),
        return_exceptions=True,
    )
    assert isinstance(outcomes[5], InvalidInputError)
    assert all(not isinstance(o, BaseException) and o.created for o in outcomes[:5])
    stored = await ready.jobs().list_jobs(JobFilter(), before=None, limit=10)
    assert len(stored) == 5
