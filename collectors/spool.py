"""The spool: jobs the server could not take yet, kept on disk until ``upload --spooled``.

Each job is one file, ``<sha256>.json``, holding the exact bytes that were to be sent (so its
idempotency key does not change), next to ``<sha256>.meta.json`` (where it came from, when).
Files are written to a temporary name and renamed, so a crash never leaves half a job; a job
is removed only after the server has answered that it is stored.  No token is written.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from .client import idempotency_key
from .errors import BadInputError


@dataclass(frozen=True)
class SpooledJob:
    """One job waiting in the spool."""

    path: Path
    name: str
    server: str
    spooled_at: str

    def body(self) -> bytes:
        return self.path.read_bytes()


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Spool:
    """A directory of jobs waiting to be sent."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def add(self, body: bytes, *, name: str, server: str) -> Path:
        """Keep ``body``; the same body twice is one entry.  Returns the job's file."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise BadInputError(f"cannot create the spool {self.directory}: {error}") from error
        stem = idempotency_key(body).removeprefix("sha256:")
        path = self.directory / f"{stem}.json"
        meta = {"name": name, "server": server, "spooled_at": datetime.now(UTC).isoformat()}
        _write_atomic(path, body)  # the job first: a job without its note is still sent
        _write_atomic(self.directory / f"{stem}.meta.json", orjson.dumps(meta))
        return path

    def jobs(self) -> Iterator[SpooledJob]:
        """The waiting jobs, oldest first."""
        if not self.directory.is_dir():
            return
        paths = [p for p in self.directory.glob("*.json") if not p.name.endswith(".meta.json")]
        entries = []
        for path in paths:
            note_path = path.with_name(path.stem + ".meta.json")
            try:
                note = orjson.loads(note_path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                note = {}
            spooled_at = str(note.get("spooled_at") or "")
            entries.append(
                SpooledJob(
                    path,
                    str(note.get("name") or path.name),
                    str(note.get("server") or ""),
                    spooled_at,
                )
            )
        yield from sorted(entries, key=lambda job: (job.spooled_at, job.path.name))

    def remove(self, job: SpooledJob) -> None:
        """Forget a job the server has stored."""
        job.path.unlink(missing_ok=True)
        job.path.with_name(job.path.stem + ".meta.json").unlink(missing_ok=True)
