"""Use cases of verification: a job's verdicts, requirement status, requirement imports.

Verdicts are derived on every read from the specifications as they are now: when a
specification is imported, changed or retired, every verdict of history reflects it at once,
with nothing to recompute or to go stale (a verdict costs microseconds; a build has hundreds).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from specwatch.exceptions import NotFoundError, PermissionDeniedError
from specwatch.metrics.limits import DocumentLimits
from specwatch.metrics.model import Specification
from specwatch.metrics.records import CONTEXT_FIELDS, StoredJob
from specwatch.metrics.requirements import (
    Requirement,
    RequirementStatus,
    parse_requirements,
    requirement_status,
    specs_of,
)
from specwatch.metrics.verification import Verdict, verify
from specwatch.store.definitions import DefinitionStore, UpsertCounts
from specwatch.store.jobs import JobStore
from specwatch.store.requirements import RequirementStore


def job_metadata(job: StoredJob) -> dict[str, Any]:
    """What a spec's ``metadata_query`` is matched against: the job's ``meta`` (as sent) and
    its normalised context (``dataset``, ``instrument``, ``filter``, ``branch``…)."""
    metadata = {k: v for k, v in (job.meta or {}).items() if not isinstance(v, Mapping | list)}
    for name in CONTEXT_FIELDS:
        value = getattr(job.context, name)
        if value is not None:
            metadata.setdefault(name, value)
    return metadata


def job_verdicts(
    job: StoredJob, specs: Sequence[Specification], units: Mapping[str, str] | None = None
) -> list[Verdict]:
    """The job's verdicts; with ``units`` (metric → unit) also its missing measurements."""
    values = {m.metric: (m.value, m.unit) for m in job.measurements}
    return verify(values, specs, job_metadata(job), units=units)


async def metric_units(
    definitions: DefinitionStore, specs: Sequence[Specification]
) -> dict[str, str]:
    """The units of the specs' metrics, by metric name."""
    metrics = await definitions.get_metrics(sorted({s.metric_full_name for s in specs}))
    return {name: metric.unit for name, metric in metrics.items()}


async def specs_and_units(
    definitions: DefinitionStore, jobs: Sequence[StoredJob]
) -> tuple[list[Specification], dict[str, str]]:
    """The active specs of the packages the jobs measure, and their metrics' units."""
    packages = {m.metric.partition(".")[0] for job in jobs for m in job.measurements}
    specs = await definitions.specs_for_packages(sorted(packages))
    return specs, await metric_units(definitions, specs)


@dataclass(frozen=True, slots=True)
class BuildStatus:
    """Requirement statuses on one build (its jobs), or no build yet."""

    jobs: list[StoredJob]
    requirements: list[RequirementStatus]


class VerificationService:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        limits: DocumentLimits | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._limits = limits

    async def verdicts(self, job_id: int) -> tuple[StoredJob, list[Verdict]]:
        """A job's verdicts, one per (measurement, applicable spec), and one per applicable
        spec of a metric it did not measure (not tested).  Raises ``NotFoundError``."""
        async with self._sessionmaker() as session:
            job = await JobStore(session).get(job_id)
            if job is None:
                raise NotFoundError(f"no job {job_id}", location=["path", "job_id"])
            specs, units = await specs_and_units(DefinitionStore(session), [job])
        return job, job_verdicts(job, specs, units)

    async def requirements(
        self, *, dataset: str | None, branch: str, known_dataset: bool = False
    ) -> BuildStatus:
        """Every requirement's status on the latest build of ``branch`` (and ``dataset``).

        Raises:
            NotFoundError: ``known_dataset`` and no build of ``dataset`` on ``branch`` (for a
                client, an unknown name must not read as "nothing verified").
        """
        async with self._sessionmaker() as session:
            jobs = await JobStore(session).latest_build(dataset=dataset, branch=branch)
            if not jobs and known_dataset and dataset is not None:
                raise NotFoundError(
                    f"no build of dataset {dataset[:100]!r} on branch {branch[:100]!r}",
                    location=["query", "dataset"],
                )
            definitions = DefinitionStore(session)
            specs = await definitions.active_specs()
            units = await metric_units(definitions, specs)
            matrix = {r.id: r for r in await RequirementStore(session).all()}
        # Requirements named only in spec YAML (``requirements:``) count too.
        for spec in specs:
            for identifier in spec.requirements:
                matrix.setdefault(identifier, Requirement(identifier))
        verdicts = [v for job in jobs for v in job_verdicts(job, specs, units)]
        statuses = [
            requirement_status(requirement, specs_of(requirement, specs), verdicts)
            for requirement in sorted(matrix.values(), key=lambda r: r.id)
        ]
        return BuildStatus(jobs, statuses)

    async def import_requirements(
        self, text: str, *, source: str, allowed_packages: Collection[str] | None = None
    ) -> UpsertCounts:
        """Upsert a verification matrix (YAML or CSV).

        Raises:
            DefinitionError: a malformed matrix.
            PermissionDeniedError: a token limited to packages (requirements span them all).
        """
        if allowed_packages:
            raise PermissionDeniedError(
                "requirements span every package; a token limited to packages "
                f"({', '.join(sorted(allowed_packages))}) may not import them"
            )
        requirements = parse_requirements(text, source=source, limits=self._limits)
        async with self._sessionmaker() as session, session.begin():
            return await RequirementStore(session).upsert(requirements, datetime.now(UTC))

    async def import_requirements_file(self, path: Path) -> UpsertCounts:
        text = await anyio.Path(path).read_text(encoding="utf-8")
        return await self.import_requirements(text, source=path.name)
