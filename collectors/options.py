"""The options every uploading command shares (``specwatch upload``, ``collect … --upload``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])
GateLevel = Literal["minimum", "design", "stretch", "regression"]
GATE_LEVELS: tuple[GateLevel, ...] = ("minimum", "design", "stretch", "regression")


def default_spool_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """``$XDG_CACHE_HOME/specwatch/spool`` (``~/.cache/…``): a CI cache can keep it."""
    cache = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "specwatch" / "spool"


@dataclass(frozen=True)
class UploadOptions:
    """Where and how to upload, and what fails the build."""

    server: str | None = None
    token: str | None = None
    retry_for_s: float = 600.0
    timeout_s: float = 60.0
    spool_dir: Path | None = None
    fail_on: tuple[GateLevel, ...] = ()
    base_branch: str | None = None
    dry_run: bool = False
    quiet: bool = False
    detect_context: bool = True
    packages: str | None = None
    meta: Mapping[str, str] = field(default_factory=dict)


def _meta_pairs(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{value!r} is not KEY=VALUE")
        pairs[key.strip()] = text
    return pairs


def upload_options(function: F) -> F:
    """Add the upload options; pass them as one ``upload_options: UploadOptions`` argument."""

    def build(**kwargs: Any) -> Any:
        spool_dir, no_spool = kwargs.pop("spool_dir"), kwargs.pop("no_spool")
        spool = None if no_spool else spool_dir or default_spool_dir()
        options = UploadOptions(
            server=kwargs.pop("server"),
            token=kwargs.pop("token"),
            retry_for_s=kwargs.pop("retry_for") * 60.0,
            timeout_s=kwargs.pop("timeout"),
            spool_dir=spool,
            fail_on=tuple(dict.fromkeys(kwargs.pop("fail_on"))),
            base_branch=kwargs.pop("base_branch"),
            dry_run=kwargs.pop("dry_run"),
            quiet=kwargs.pop("quiet"),
            detect_context=not kwargs.pop("no_context"),
            meta=kwargs.pop("meta"),
            packages=kwargs.pop("packages"),
        )
        return function(upload_options=options, **kwargs)

    build.__name__ = function.__name__
    build.__doc__ = function.__doc__
    decorators = [
        click.option(
            "--server",
            envvar="SPECWATCH_SERVER",
            metavar="URL",
            help="The Specwatch server, e.g. https://specwatch.example.org [SPECWATCH_SERVER].",
        ),
        click.option(
            "--token",
            envvar="SPECWATCH_TOKEN",
            help="A token with write:jobs (and write:definitions for jobs that define their "
            "metrics) [SPECWATCH_TOKEN].",
        ),
        click.option(
            "--retry-for",
            type=click.FloatRange(min=0),
            default=10.0,
            show_default=True,
            envvar="SPECWATCH_RETRY_FOR",
            metavar="MINUTES",
            help="Keep retrying connection errors, 429 and 5xx this long, then spool.",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0.1),
            default=60.0,
            show_default=True,
            metavar="SECONDS",
            help="One request's time limit.",
        ),
        click.option(
            "--spool-dir",
            type=click.Path(file_okay=False, path_type=Path),
            envvar="SPECWATCH_SPOOL_DIR",
            help="Where jobs wait when the server is unreachable "
            "[SPECWATCH_SPOOL_DIR; default ~/.cache/specwatch/spool].",
        ),
        click.option("--no-spool", is_flag=True, help="Never spool: just exit 3."),
        click.option(
            "--fail-on",
            type=click.Choice(GATE_LEVELS),
            multiple=True,
            help="Exit 1 if a specification of this level (or a lower one) fails, or, "
            "for 'regression', if the PR comparison regresses.  Repeatable.",
        ),
        click.option(
            "--base-branch",
            metavar="BRANCH",
            help="Baseline branch of --fail-on regression (default: the PR's target, else main).",
        ),
        click.option(
            "--meta",
            multiple=True,
            callback=_meta_pairs,
            metavar="KEY=VALUE",
            help="Set a meta key of every job (wins over the job and the detected context).",
        ),
        click.option(
            "--packages",
            metavar="SOURCE",
            help="Add meta.packages, the versions the build ran with: pip, conda, "
            "lsstsw:DIR, or a file (JSON/YAML in dispatch_verify's shape, or name==version "
            "lines).  A job's own meta.packages wins.",
        ),
        click.option(
            "--no-context", is_flag=True, help="Do not add the detected CI context to meta."
        ),
        click.option("--dry-run", is_flag=True, help="Print what would be sent; send nothing."),
        click.option("--quiet", "-q", is_flag=True, help="Print only errors and the gate table."),
    ]
    wrapped: Any = build
    for decorator in reversed(decorators):
        wrapped = decorator(wrapped)
    return wrapped  # type: ignore[no-any-return]
