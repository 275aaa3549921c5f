"""Loading the seeded demo history through the same use cases as real clients."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from specwatch.metrics.definitions import parse_definition_files

from .context import ProcessContext
from .demo_history import demo_definition_files, demo_jobs, demo_requirements


@dataclass(frozen=True, slots=True)
class DemoReport:
    metrics: int
    specs: int
    jobs_created: int
    jobs_existing: int
    changes: int


async def load_demo(
    context: ProcessContext, *, seed: int = 20261125, concurrency: int = 8
) -> DemoReport:
    """Import the demo definitions, ingest its jobs (idempotent: stable keys and bodies) and
    detect the changes of its series, so that a new user sees regressions at once."""
    definitions = parse_definition_files(demo_definition_files())
    await context.definitions().import_definitions(definitions)
    await context.verification().import_requirements(
        demo_requirements(), source="demo/requirements.yaml"
    )
    jobs = context.jobs()
    semaphore = asyncio.Semaphore(concurrency)
    created = existing = 0
    job_ids: list[int] = []

    async def ingest(key: str, body: bytes) -> None:
        nonlocal created, existing
        async with semaphore:
            result = await jobs.ingest(body, idempotency_key=key)
        job_ids.append(result.id)
        if result.created:
            created += 1
        else:
            existing += 1

    demo = demo_jobs(seed)
    await asyncio.gather(
        *(ingest(job.idempotency_key, json.dumps(job.body).encode()) for job in demo)
    )
    await context.deliverer.drain()
    regressions = context.regressions()
    changes = await regressions.detect_many(await regressions.all_keys())
    if context.detection is not None:
        await context.detection.discard()  # detected just now, all of them
    # Detection raised the series' alerts; the builds' own rules (pull requests, metrics
    # no longer reported) look at the latest builds.
    await context.alerts().evaluate_jobs(job_ids)
    return DemoReport(len(definitions.metrics), len(definitions.specs), created, existing, changes)
