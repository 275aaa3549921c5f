"""Where a ``specwatch collect …`` command puts the jobs it builds: stdout, a file, or the server.

Every collect command takes the same output options (:func:`job_output_options`) and ends with
:func:`emit_jobs`, so that ``--output`` and ``--upload`` (with every option of
``specwatch upload``) mean the same thing everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson

from .errors import BadInputError
from .options import UploadOptions, upload_options

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class NamedJob:
    """A job document and the file stem it is written under (``--output DIR``)."""

    name: str
    document: dict[str, Any]


@dataclass(frozen=True)
class JobOutput:
    """What the user asked for: a file or directory, an upload, or stdout."""

    path: Path | None
    upload: bool
    options: UploadOptions


def job_output_options(function: F) -> F:
    """Add ``--output`` and ``--upload`` and the upload options; pass ``output: JobOutput``."""

    def build(**kwargs: Any) -> Any:
        path = kwargs.pop("output_path")
        upload = kwargs.pop("upload")
        options = kwargs.pop("upload_options")
        return function(output=JobOutput(path, upload, options), **kwargs)

    build.__name__ = function.__name__
    build.__doc__ = function.__doc__
    wrapped = upload_options(build)
    wrapped = click.option(
        "--upload", is_flag=True, help="Send the job(s) to the server (see `specwatch upload`)."
    )(wrapped)
    wrapped = click.option(
        "--output",
        "-o",
        "output_path",
        type=click.Path(dir_okay=True, path_type=Path),
        help="Write the job JSON here (a directory when there are several jobs); "
        "default: stdout, one job per line.",
    )(wrapped)
    return wrapped  # type: ignore[return-value]  # click keeps the signature it was given


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "job"


def write_jobs(jobs: Sequence[NamedJob], path: Path | None) -> list[Path]:
    """Write the jobs to ``path`` (a file for one job, else a directory), or to stdout."""
    if path is None:
        for job in jobs:
            click.echo(orjson.dumps(job.document).decode())
        return []
    if len(jobs) == 1 and not path.is_dir():
        targets = [path]
    else:
        if path.exists() and not path.is_dir():
            raise BadInputError(f"--output {path}: {len(jobs)} jobs need a directory")
        path.mkdir(parents=True, exist_ok=True)
        targets = [path / f"{_file_name(job.name)}.json" for job in jobs]
    for job, target in zip(jobs, targets, strict=True):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(orjson.dumps(job.document, option=orjson.OPT_INDENT_2))
    return targets


def emit_jobs(jobs: Sequence[NamedJob], output: JobOutput) -> None:
    """Write and/or upload the jobs as asked.  Raises a ``CollectorError`` with its exit code."""
    if not jobs:
        raise BadInputError("no job to write: the input held nothing to measure")
    if output.path is not None or not output.upload:
        write_jobs(jobs, output.path)
    if output.upload:
        from .upload import upload_documents

        upload_documents([(job.name, job.document) for job in jobs], output.options)
