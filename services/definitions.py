"""Use cases on definitions: import a verify_metrics tree, register what a job carries."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from specwatch.exceptions import DefinitionError, PermissionDeniedError, SeriesStoreError
from specwatch.metrics.definitions import (
    Definitions,
    infer_directions,
    parse_definition_files,
    parse_job_metrics,
    parse_job_specs,
)
from specwatch.metrics.limits import DocumentLimits
from specwatch.store.definitions import DefinitionStore

log = structlog.get_logger("specwatch.definitions")


@dataclass(frozen=True, slots=True)
class ImportSummary:
    metrics_added: int
    metrics_updated: int
    metrics_unchanged: int
    specs_added: int
    specs_updated: int
    specs_unchanged: int
    specs_retired: int
    # Series whose changes are detected again: their metric's direction or floor changed.
    series_redetected: int = 0


def read_definition_tree(root: Path) -> dict[str, str]:
    """The YAML files of a ``verify_metrics`` tree, relative path -> text.

    Raises:
        DefinitionError: ``root`` has neither ``metrics/`` nor ``specs/``.
    """
    if not (root / "metrics").is_dir() and not (root / "specs").is_dir():
        raise DefinitionError(f"{root} holds neither metrics/ nor specs/ (a verify_metrics tree)")
    files: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.suffix in (".yaml", ".yml") and relative.split("/")[0] in ("metrics", "specs"):
            files[relative] = path.read_text(encoding="utf-8")
    return files


def check_packages(packages: Collection[str], allowed: Collection[str] | None) -> None:
    """Raise ``PermissionDeniedError`` if a package is outside a token's ``allowed`` ones."""
    if allowed:
        denied = sorted(set(packages) - set(allowed))
        if denied:
            raise PermissionDeniedError(
                f"this token may not write package(s) {', '.join(denied)}; "
                f"it is limited to {', '.join(sorted(allowed))}"
            )


async def register_job_definitions(
    store: DefinitionStore,
    metric_items: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    spec_items: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    now: datetime,
    *,
    allowed_packages: Collection[str] | None = None,
) -> None:
    """Add the metrics and specs a job carries that are not known yet.

    A job is one build's snapshot: it adds what is missing, never rewrites a definition
    (that is what an import does).  A set already seen costs one primary-key lookup.
    """
    if not metric_items and not spec_items:
        return
    digest = hashlib.sha256(
        orjson.dumps([metric_items, spec_items], option=orjson.OPT_SORT_KEYS)
    ).hexdigest()
    if not allowed_packages and await store.digest_seen(digest):
        return
    specs = parse_job_specs(spec_items)
    metrics = infer_directions(parse_job_metrics(metric_items), specs)
    # A token limited to some packages may not define others through a job either.
    check_packages({m.package for m in metrics} | {s.package for s in specs}, allowed_packages)
    if allowed_packages and await store.digest_seen(digest):
        return
    await store.upsert_metrics(metrics, now, only_new=True)
    await store.upsert_specs(specs, now, source="job", only_new=True)
    await store.remember_digest(digest, now)


# Re-detects the series of some metrics (names); returns how many series that is.
Redetect = Callable[[Sequence[str]], Awaitable[int]]


class DefinitionService:
    """Imports of metric and specification definitions."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        redetect: Redetect | None = None,
        limits: DocumentLimits | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._redetect = redetect
        self._limits = limits or DocumentLimits()

    async def import_files(
        self,
        files: Mapping[str, str],
        *,
        retire: bool = True,
        allowed_packages: Collection[str] | None = None,
    ) -> ImportSummary:
        """Parse and import a verify_metrics tree given as relative path -> YAML text."""
        definitions = await anyio.to_thread.run_sync(
            parse_definition_files, dict(files), self._limits
        )
        return await self.import_definitions(
            definitions, retire=retire, allowed_packages=allowed_packages
        )

    async def import_directory(self, root: Path, *, retire: bool = True) -> ImportSummary:
        files = await anyio.to_thread.run_sync(read_definition_tree, root)
        return await self.import_files(files, retire=retire)

    async def import_definitions(
        self,
        definitions: Definitions,
        *,
        retire: bool = True,
        allowed_packages: Collection[str] | None = None,
    ) -> ImportSummary:
        """Upsert metrics and specs in one transaction; retire the imported packages' other specs.

        Raises:
            DefinitionError: a metric's unit would change meaning.
            PermissionDeniedError: a package outside ``allowed_packages``.
        """
        packages = {m.package for m in definitions.metrics} | {s.package for s in definitions.specs}
        check_packages(packages, allowed_packages)
        now = datetime.now(UTC)
        async with self._sessionmaker() as session, session.begin():
            store = DefinitionStore(session)
            metrics = await store.upsert_metrics(definitions.metrics, now)
            specs = await store.upsert_specs(definitions.specs, now, source="import")
            retired = 0
            if retire:
                spec_packages = {s.package for s in definitions.specs}
                retired = await store.retire_specs(
                    spec_packages, {s.full_name for s in definitions.specs}, now
                )
        redetected = 0
        if metrics.detection_changed and self._redetect is not None:
            try:
                redetected = await self._redetect(metrics.detection_changed)
            except SeriesStoreError as error:  # the import stands; the next ingest or
                log.warning(  # `specwatch detect --all` brings the changes up to date
                    "re-detection after import failed",
                    metrics=list(metrics.detection_changed),
                    error=str(error),
                )
        summary = ImportSummary(
            metrics.added,
            metrics.updated,
            metrics.unchanged,
            specs.added,
            specs.updated,
            specs.unchanged,
            retired,
            redetected,
        )
        log.info("definitions imported", **asdict(summary))
        return summary
