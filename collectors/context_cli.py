"""``specwatch context``: what ``specwatch upload`` would add to each job's ``meta``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from .context import detect_context
from .errors import CollectorError
from .packages import collect_packages


@click.command("context")
@click.option("--json", "as_json", is_flag=True, help="Print the meta as JSON.")
@click.option(
    "--packages",
    "packages_source",
    metavar="SOURCE",
    help="Also list meta.packages from pip, pip:DIR, conda, lsstsw:DIR or a file.",
)
@click.pass_context
def context_command(ctx: click.Context, as_json: bool, packages_source: str | None) -> None:
    """Print the CI context detected here (a table and warnings, or --json)."""
    context = detect_context(os.environ, Path.cwd())
    try:
        packages = (
            collect_packages(packages_source, environ=os.environ, cwd=Path.cwd())
            if packages_source
            else None
        )
    except CollectorError as error:
        click.echo(f"specwatch: error: {error}", err=True)
        ctx.exit(error.exit_code)
    if as_json:
        meta: dict[str, Any] = context.meta()
        if packages is not None:
            meta["packages"] = packages
        click.echo(json.dumps(meta, indent=2))
    else:
        rows = context.describe()
        if packages is not None:
            rows.append(("packages", f"{len(packages)} from {packages_source}"))
        width = max(len(key) for key, _ in rows)
        for key, value in rows:
            click.echo(f"{key:<{width}}  {value}")
    for warning in context.warnings:
        click.echo(f"warning: {warning}", err=True)
