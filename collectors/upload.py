"""``specwatch upload``: send lsst.verify job files to the server, never losing or doubling one.

Order of work: every input is read and checked first (a bad file fails the command before
anything is sent: exit 2), then each job gets the detected CI context in ``meta`` (the job's own
keys win; ``--meta`` wins over both) and is sent with its idempotency key.  If the server stays
unreachable past ``--retry-for``, this job and the ones after it go to the spool (exit 3);
a job the server refuses (4xx) is reported and the others still go (exit 2 at the end).
Then ``--fail-on`` asks the server for its verdicts (exit 1 when they cross the line).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import click
import orjson

from .client import Deadline, JobReceipt, SpecwatchClient, idempotency_key
from .errors import (
    BadInputError,
    GateFailedError,
    RefusedError,
    UnreachableError,
)
from .gate import GateResult, evaluate, markdown, rows
from .job import read_json_file
from .options import UploadOptions
from .spool import Spool

MAX_LISTED = 5


@dataclass(frozen=True)
class PreparedJob:
    """One job ready to send: its name (file), body and how many measurements it holds."""

    name: str
    body: bytes
    measurements: int

    @property
    def key(self) -> str:
        return idempotency_key(self.body)


@dataclass
class UploadResult:
    """What happened to each job."""

    receipts: list[tuple[str, JobReceipt]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    spooled: list[str] = field(default_factory=list)
    unreachable: str | None = None


# --- reading inputs --------------------------------------------------------------------------


def find_job_files(paths: Sequence[Path]) -> list[Path]:
    """The files to send: each file given, and every ``*.json`` under each directory given."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*.json") if p.is_file())
            if not files:
                raise BadInputError(f"{path}: no *.json file in this directory")
            found += files
        elif path.is_file():
            found.append(path)
        else:
            raise BadInputError(f"{path}: no such file or directory")
    return list(dict.fromkeys(found))


def read_job(path: Path) -> dict[str, Any]:
    """A job document from a file (lsst.verify's bare NaN accepted)."""
    document = read_json_file(path, "an lsst.verify job")
    check_job(document, str(path))
    return document  # type: ignore[no-any-return]  # checked to be a dict above


def check_job(document: Any, name: str) -> None:
    """Refuse what is plainly not an lsst.verify job (the server checks the rest)."""
    if not isinstance(document, dict):
        raise BadInputError(f"{name}: not a job: the document is not a JSON object")
    measurements = document.get("measurements")
    if not isinstance(measurements, list):
        raise BadInputError(f"{name}: not an lsst.verify job: no 'measurements' list")
    meta = document.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise BadInputError(f"{name}: 'meta' is not an object")


# --- meta ------------------------------------------------------------------------------------


def merge_meta(
    document: Mapping[str, Any],
    context: Mapping[str, Any],
    overrides: Mapping[str, str],
    packages: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The job with its ``meta``: the detected context, under the job's own keys, under
    ``--meta``; ``meta.env`` merged the same way, one level down."""
    own = dict(document.get("meta") or {})
    meta: dict[str, Any] = {**context, **own}
    if isinstance(context.get("env"), Mapping) and isinstance(own.get("env"), Mapping):
        meta["env"] = {**context["env"], **own["env"]}
    if packages and not own.get("packages"):
        meta["packages"] = dict(packages)
    for key, value in overrides.items():
        meta[key] = int(value) if key == "pr" and value.strip().isdigit() else value
    return {**document, "meta": meta}


def encode(document: Mapping[str, Any]) -> bytes:
    """The body to send: compact JSON; NaN becomes null (lsst.verify's "not measured")."""
    try:
        return orjson.dumps(document)
    except TypeError:  # an integer beyond 64 bits: the standard library writes it
        return json.dumps(_nan_to_none(document), separators=(",", ":")).encode()


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


# --- the command's work ----------------------------------------------------------------------


@dataclass
class Uploader:
    """Sends prepared jobs and reports as it goes (a bar on a terminal, a line per job in logs)."""

    options: UploadOptions
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    interactive: bool = field(default_factory=lambda: sys.stderr.isatty())
    target_branch: str | None = None

    def context_meta(self) -> dict[str, Any]:
        """The CI context to add to every job (nothing with ``--no-context``)."""
        if not self.options.detect_context:
            return {}
        from .context import detect_context

        context = detect_context(self.environ, Path.cwd())
        self.target_branch = context.target_branch
        return context.meta()

    def packages(self) -> dict[str, Any] | None:
        if not self.options.packages:
            return None
        from .packages import collect_packages

        return collect_packages(self.options.packages, environ=self.environ, cwd=Path.cwd())

    def prepare(self, named: Sequence[tuple[str, Mapping[str, Any]]]) -> list[PreparedJob]:
        context, packages = self.context_meta(), self.packages()
        jobs = []
        for name, document in named:
            full = merge_meta(document, context, self.options.meta, packages)
            jobs.append(PreparedJob(name, encode(full), len(full.get("measurements", []))))
        return jobs

    def say(self, text: str) -> None:
        if not self.options.quiet:
            click.echo(text, err=True)

    def dry_run(self, jobs: Sequence[PreparedJob]) -> None:
        target = (self.options.server or "<--server>").rstrip("/") + "/api/v1/jobs"
        for job in jobs:
            meta = orjson.loads(job.body).get("meta", {})
            packages = meta.pop("packages", None)
            click.echo(
                f"would send {job.name}: {job.measurements} measurements, "
                f"{len(job.body):,} bytes, Idempotency-Key {job.key}, to {target}"
            )
            if packages:
                meta["packages"] = f"<{len(packages)} packages>"
            click.echo(orjson.dumps(meta, option=orjson.OPT_INDENT_2).decode())

    def client(self, deadline: Deadline) -> SpecwatchClient:
        if not self.options.server:
            raise BadInputError("no server: give --server URL or set SPECWATCH_SERVER")

        def on_retry(reason: str, wait: float) -> None:
            self.say(f"  retrying in {wait:.1f} s: {reason}")

        return SpecwatchClient(
            self.options.server,
            self.options.token,
            deadline=deadline,
            timeout_s=self.options.timeout_s,
            on_retry=on_retry,
        )

    def send(
        self,
        jobs: Sequence[PreparedJob],
        client: SpecwatchClient,
        on_stored: Callable[[PreparedJob], None] | None = None,
    ) -> UploadResult:
        """Send each job; after the deadline passes, spool the rest without trying."""
        result = UploadResult()
        total = sum(len(job.body) for job in jobs)
        with self._progress(total, len(jobs)) as advance:
            for job in jobs:
                if result.unreachable is not None:
                    self._spool(job, result)
                    continue
                step = _BodyProgress(len(job.body), advance)
                try:
                    receipt = client.post_job(job.body, progress=step)
                except RefusedError as error:
                    result.refused.append((job.name, str(error)))
                    click.echo(f"specwatch: refused: {job.name}: {error}", err=True)
                    continue
                except UnreachableError as error:
                    result.unreachable = str(error)
                    self._spool(job, result)
                    continue
                finally:
                    step.finish()
                result.receipts.append((job.name, receipt))
                if on_stored:
                    on_stored(job)
                state = "stored" if receipt.created else "already stored"
                if not self.interactive or len(jobs) == 1:
                    count = f", {job.measurements} measurements" if job.measurements >= 0 else ""
                    self.say(
                        f"uploaded {job.name} → job {receipt.id} ({state}{count}) {receipt.url}"
                    )
        if self.interactive and len(jobs) > 1 and result.receipts:  # the bar is gone: sum up
            created = sum(receipt.created for _, receipt in result.receipts)
            self.say(
                f"uploaded {len(result.receipts)} job(s): {created} stored, "
                f"{len(result.receipts) - created} already stored"
            )
        return result

    def _spool(self, job: PreparedJob, result: UploadResult) -> None:
        if self.options.spool_dir is None:
            return
        Spool(self.options.spool_dir).add(job.body, name=job.name, server=self.options.server or "")
        result.spooled.append(job.name)

    @contextmanager
    def _progress(self, total_bytes: int, count: int) -> Iterator[Callable[[int], None]]:
        if not self.interactive or self.options.quiet or (count < 2 and total_bytes < 1 << 20):
            yield lambda _n: None
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        with Progress(
            TextColumn("uploading {task.fields[count]} job(s)"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as progress:
            task = progress.add_task("upload", total=total_bytes, count=count)
            yield lambda n: progress.advance(task, n)

    def finish(self, result: UploadResult, client: SpecwatchClient) -> None:
        """Report, gate, and raise the error whose exit code the command must give."""
        if result.unreachable is not None:
            where = (
                f"{len(result.spooled)} job(s) spooled in {self.options.spool_dir}; send them "
                "later with `specwatch upload --spooled`"
                if result.spooled
                else "nothing spooled (--no-spool)"
            )
            raise UnreachableError(f"server unreachable ({result.unreachable}); {where}")
        if result.refused:
            names = ", ".join(name for name, _ in result.refused[:MAX_LISTED])
            raise RefusedError(
                f"{len(result.refused)} job(s) refused by the server: {names}",
                400,
            )
        if self.options.fail_on and result.receipts:
            self.gate([receipt for _, receipt in result.receipts], client)

    def gate(self, receipts: Sequence[JobReceipt], client: SpecwatchClient) -> GateResult:
        base = self.options.base_branch or self.target_branch or "main"
        try:
            outcome = evaluate(client, receipts, self.options.fail_on, base)
        except UnreachableError as error:
            raise UnreachableError(f"jobs stored, but the gate could not ask: {error}") from error
        print_gate(outcome)
        summary = self.environ.get("GITHUB_STEP_SUMMARY")
        if summary:
            try:
                with open(summary, "a", encoding="utf-8") as handle:
                    handle.write(markdown(outcome))
            except OSError as error:
                self.say(f"cannot write the GitHub job summary {summary}: {error.strerror}")
        if outcome.failed:
            raise GateFailedError(
                f"gate failed (--fail-on {' '.join(self.options.fail_on)}): "
                f"{len(outcome.spec_failures)} specification(s) failed, "
                f"{len(outcome.regressions)} regression(s)"
            )
        return outcome


class _BodyProgress:
    """Advances a progress bar by the bytes of one body; a retry's bytes are not counted."""

    def __init__(self, size: int, advance: Callable[[int], None]) -> None:
        self.size, self.sent, self.advance = size, 0, advance

    def __call__(self, n: int) -> None:
        if self.sent < self.size:
            self.advance(min(n, self.size - self.sent))
        self.sent += n

    def finish(self) -> None:
        self.advance(max(0, self.size - self.sent))
        self.sent = max(self.sent, self.size)


def print_gate(result: GateResult) -> None:
    """The gate's tables on stdout (rich tables; plain text when not a terminal)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 200)
    spec_header, spec_rows, reg_header, reg_rows = rows(result)
    for title, header, body in (
        ("Failed specifications", spec_header, spec_rows),
        ("Regressions against the baseline", reg_header, reg_rows),
    ):
        if not body:
            continue
        table = Table(title=title, title_justify="left")
        for column in header:
            table.add_column(column, overflow="fold")
        for row in body:
            table.add_row(*row)
        console.print(table)
    if not result.failed:
        click.echo(f"gate passed (--fail-on {' '.join(result.fail_on)})")


def upload_documents(
    named: Sequence[tuple[str, Mapping[str, Any]]],
    options: UploadOptions,
    environ: Mapping[str, str] | None = None,
) -> UploadResult:
    """Upload job documents (``collect … --upload``); raises ``CollectorError`` on failure."""
    for name, document in named:
        check_job(document, name)
    uploader = Uploader(options, environ if environ is not None else os.environ)
    jobs = uploader.prepare(named)
    if options.dry_run:
        uploader.dry_run(jobs)
        return UploadResult()
    deadline = Deadline(options.retry_for_s)
    with uploader.client(deadline) as client:
        result = uploader.send(jobs, client)
        uploader.finish(result, client)
    return result


def upload_files(
    paths: Sequence[Path], options: UploadOptions, environ: Mapping[str, str] | None = None
) -> UploadResult:
    """Upload job files and directories of them."""
    named = [(str(path), read_job(path)) for path in find_job_files(paths)]  # all read first
    return upload_documents(named, options, environ)


def upload_spooled(
    options: UploadOptions, environ: Mapping[str, str] | None = None
) -> UploadResult:
    """Send the spool's jobs as they are (their context was added when they were spooled)."""
    if options.spool_dir is None:
        raise BadInputError("--spooled needs a spool: drop --no-spool")
    spool = Spool(options.spool_dir)
    waiting = list(spool.jobs())
    uploader = Uploader(options, environ if environ is not None else os.environ)
    if not waiting:
        uploader.say(f"the spool {options.spool_dir} is empty")
        return UploadResult()
    jobs = [PreparedJob(job.name, job.body(), -1) for job in waiting]
    by_body = {job.body: entry for job, entry in zip(jobs, waiting, strict=True)}
    if options.dry_run:
        uploader.dry_run(jobs)
        return UploadResult()
    deadline = Deadline(options.retry_for_s)
    uploader.options = replace(options, spool_dir=None)  # a spooled job stays where it is
    with uploader.client(deadline) as client:
        result = uploader.send(jobs, client, on_stored=lambda job: spool.remove(by_body[job.body]))
        if result.unreachable is not None:
            left = len(list(spool.jobs()))
            raise UnreachableError(
                f"server unreachable ({result.unreachable}); {left} job(s) still in the spool "
                f"{options.spool_dir}"
            )
        uploader.finish(result, client)
    return result
