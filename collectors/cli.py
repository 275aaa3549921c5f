"""The collector commands: ``specwatch upload``, ``specwatch context``, ``specwatch collect …``.

Nothing here imports the server: a CI job that installs only the collector runs all of these.
The ``collect`` subcommands are imported when called, so ``specwatch --help`` stays fast and an
upload never loads numpy or astropy.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from .errors import CollectorError, ExitCode
from .options import UploadOptions, upload_options

KPM_MODULES = frozenset({"numpy", "astropy", "erfa"})  # the [kpm] extra's
P = ParamSpec("P")
T = TypeVar("T")

EXIT_CODES_HELP = (
    "\b\nExit codes:\n"
    f"  {ExitCode.OK}  every job stored (and the gate, if any, passed)\n"
    f"  {ExitCode.GATE_FAILED}  the gate failed: the server's verdicts crossed --fail-on\n"
    f"  {ExitCode.BAD_INPUT}  bad input or usage, or the server refused a job (4xx)\n"
    f"  {ExitCode.SPOOLED}  the server stayed unreachable: jobs spooled (or, with "
    "--no-spool, not sent)"
)


def one_line_errors(function: Callable[P, T]) -> Callable[P, T]:
    """Print a ``CollectorError`` as one line on stderr and exit with its code."""

    @wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return function(*args, **kwargs)
        except CollectorError as error:
            click.echo(f"specwatch: error: {error}", err=True)
            sys.exit(int(error.exit_code))

    return wrapper


@click.command("upload", epilog=EXIT_CODES_HELP)
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--spooled", is_flag=True, help="Send the jobs waiting in the spool (first).")
@upload_options
@one_line_errors
def upload_command(paths: tuple[Path, ...], spooled: bool, upload_options: UploadOptions) -> None:
    """Send lsst.verify job files (or every *.json under a directory) to the server, with the
    CI context added to their meta; retry, spool, and gate the build on the verdicts."""
    import os

    from .upload import upload_files, upload_spooled

    if not paths and not spooled:
        raise click.UsageError("give job files or directories, or --spooled")
    if spooled:
        upload_spooled(upload_options, os.environ)
    if paths:
        upload_files(list(paths), upload_options, os.environ)


class LazyGroup(click.Group):
    """A group whose commands are imported only when one is called.

    ``lazy`` maps a command's name to ``(module:attribute, short help)``: ``--help`` lists
    them from the short help, without importing (numpy, astropy) what they need.
    """

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.lazy:
            return super().get_command(ctx, name)
        module, attribute = self.lazy[name][0].split(":")
        try:
            command = getattr(importlib.import_module(module, __package__), attribute)
        except ModuleNotFoundError as error:
            if error.name is None or error.name.split(".")[0] == "specwatch":
                raise
            extra = "kpm" if error.name.split(".")[0] in KPM_MODULES else "server"
            click.echo(
                f"specwatch: error: `{name}` needs {error.name}, which is not installed here: "
                f"pip install 'specwatch[{extra}]'",
                err=True,
            )
            sys.exit(int(ExitCode.BAD_INPUT))
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.lazy[name][0]} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        entries = []
        for name in self.list_commands(ctx):
            if name in self.lazy:
                entries.append((name, self.lazy[name][1]))
                continue
            command = super().get_command(ctx, name)
            if command is not None and not command.hidden:
                entries.append((name, command.get_short_help_str(formatter.width - 6 - len(name))))
        if entries:
            with formatter.section("Commands"):
                formatter.write_dl(entries)


collect_group = LazyGroup(
    "collect",
    help="Compute metrics from a build's outputs and write (or --upload) lsst.verify jobs.\n\n"
    "Every subcommand writes the job JSON to stdout, to --output, or sends it with --upload "
    "(and every option of `specwatch upload`).",
    epilog=EXIT_CODES_HELP,
    lazy={
        "catalog": (
            ".catalog:catalog_command",
            "LPM-17 photometric and astrometric KPMs of matched catalogs, as faro computes them.",
        ),
        "run": (".run:run_command", "Run a command; record its wall and CPU time, peak memory."),
        "asv": (".importers.asv:asv_command", "airspeed velocity results, one job per commit."),
        "pytest-benchmark": (
            ".importers.pytest_benchmark:pytest_benchmark_command",
            "A pytest-benchmark --benchmark-json file.",
        ),
        "gbench": (
            ".importers.gbench:gbench_command",
            "A Google Benchmark --benchmark_format=json file.",
        ),
    },
)
