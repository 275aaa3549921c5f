"""The ``specwatch`` command line.  Settings come from ``SPECWATCH_*``; errors print one line."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click

from specwatch.collectors.cli import LazyGroup
from specwatch.exceptions import ClientError, SpecwatchError

if TYPE_CHECKING:
    from specwatch.config import Settings

P = ParamSpec("P")
T = TypeVar("T")


def _one_line_errors(function: Callable[P, T]) -> Callable[P, T]:
    """Print a ``SpecwatchError`` as one line on stderr and exit 1 (2 for bad input)."""

    @wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return function(*args, **kwargs)
        except SpecwatchError as error:
            click.echo(f"specwatch: error: {error}", err=True)
            sys.exit(2 if isinstance(error, ClientError) else 1)

    return wrapper


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


SERVER_EXTRA_HINT = "the server is not installed here: pip install 'specwatch[server]'"


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    lazy={  # the collector's commands: they need neither the server nor its settings
        "upload": (
            "specwatch.collectors.cli:upload_command",
            "Send lsst.verify job files to the server (retries, spool, CI gate).",
        ),
        "collect": (
            "specwatch.collectors.cli:collect_group",
            "Compute metrics from a build's outputs (catalogs, timings, benchmarks).",
        ),
        "context": (
            "specwatch.collectors.context_cli:context_command",
            "Print the CI context and packages that an upload would add.",
        ),
    },
)
@click.version_option(package_name="specwatch")
def main() -> None:
    """Specwatch: ingest lsst.verify jobs, verify metrics against specifications."""


def load_settings() -> Settings:
    """The server's settings (``SPECWATCH_*``), with logging configured; once per process."""
    try:
        from specwatch.config import Settings
        from specwatch.logging import configure_logging
    except ImportError as error:  # a collector-only install
        click.echo(f"specwatch: error: {SERVER_EXTRA_HINT} ({error.name} missing)", err=True)
        sys.exit(2)
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    return settings


def pass_settings(function: Callable[..., T]) -> Callable[..., T]:
    """Pass the settings, loaded when a server command runs (not for the collector's)."""

    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        root = click.get_current_context().find_root()
        if root.obj is None:
            root.obj = load_settings()
        return function(root.obj, *args, **kwargs)

    return wrapper


# --- serve -------------------------------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="Processes.")
@click.option(
    "--root-path",
    default=None,
    help="Path prefix a proxy serves Specwatch under (SPECWATCH_ROOT_PATH; default: the path "
    "of SPECWATCH_PUBLIC_URL).",
)
@click.option(
    "--proxy-headers/--no-proxy-headers",
    default=True,
    show_default=True,
    help="Trust X-Forwarded-For/-Proto from the addresses in FORWARDED_ALLOW_IPS (default "
    "127.0.0.1) for client addresses and https links.",
)
@pass_settings
@_one_line_errors
def serve(
    settings: Settings,
    host: str,
    port: int,
    workers: int,
    root_path: str | None,
    proxy_headers: bool,
) -> None:
    """Serve the API and the dashboard (refuses a database that is not at the latest
    migration).  With SPECWATCH_BACKGROUND=off it only serves: run `specwatch worker`."""
    import os

    import uvicorn

    from specwatch.services.alerts import load_rules

    _check_schema(settings)
    load_rules(settings)  # a bad rules file: one line now, not a traceback from each worker
    multiprocess = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if multiprocess:  # /metrics sums the workers' files: start from none (the client's rule)
        for stale in Path(multiprocess).glob("*.db"):
            stale.unlink()
    if root_path is not None:
        # The server processes (one per worker) read their settings from the environment.
        os.environ["SPECWATCH_ROOT_PATH"] = root_path
        settings = settings.model_copy(update={"root_path": root_path})
    prefix = settings.effective_root_path
    click.echo(
        f"Specwatch on http://{host}:{port}{prefix}/dashboard/  (API: {prefix}/api/v1, docs: "
        f"{prefix}/docs; Ctrl-C stops)"
    )
    uvicorn.run(
        "specwatch.server:create_server",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        access_log=False,  # the API writes its own (SPECWATCH_ACCESS_LOG), with the request id
        server_header=False,  # do not announce the server software
        proxy_headers=proxy_headers,
    )


# --- db ----------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """The SQL schema (Alembic migrations)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@pass_settings
@_one_line_errors
def db_upgrade(settings: Settings, revision: str) -> None:
    """Migrate the database to the latest schema (creates it on first use)."""
    from alembic import command

    from specwatch.store.database import alembic_config

    command.upgrade(alembic_config(settings.database_url), revision)
    click.echo(f"database at {revision}: {_safe_url(settings.database_url)}")


@db.command("check")
@pass_settings
@_one_line_errors
def db_check(settings: Settings) -> None:
    """Exit 0 if the database is at the latest migration."""
    _check_schema(settings)
    click.echo("database is up to date")


def _check_schema(settings: Settings) -> None:
    """Raise ``DatabaseNotReadyError`` unless the database is at the latest migration."""
    from specwatch.store.database import check_schema, create_engine

    async def check() -> None:
        engine = create_engine(settings.database_url)
        try:
            await check_schema(engine)
        finally:
            await engine.dispose()

    _run(check())


def _safe_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


# --- services from the CLI -----------------------------------------------------------------------


def _with_context(
    settings: Settings,
    action: Callable[[Any], Awaitable[T]],
    *,
    background: bool = False,
    serve: bool = False,
) -> T:
    from specwatch.services.context import ProcessContext

    async def run() -> T:
        context = await ProcessContext.open(settings, background=background, serve=serve)
        try:
            return await action(context)
        finally:
            await context.close()

    return _run(run())


@main.group()
def token() -> None:
    """API tokens (stored hashed; a new token is printed once)."""


@token.command("create")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help="write:jobs, write:definitions, triage or read (repeatable).",
)
@click.option(
    "--package", "packages", multiple=True, help="Limit writes to a package (repeatable)."
)
@click.option("--expires", default=None, help="Lifetime, e.g. 90d, 12h, 2w (default: never).")
@click.option("--name", default="", help="A note saying who uses it.")
@pass_settings
@_one_line_errors
def token_create(
    settings: Settings,
    scopes: tuple[str, ...],
    packages: tuple[str, ...],
    expires: str | None,
    name: str,
) -> None:
    """Create a token and print it (only this once)."""
    from specwatch.services.tokens import parse_duration

    lifetime = parse_duration(expires) if expires else None
    plain, record = _with_context(
        settings,
        lambda c: c.tokens().create(
            scopes=scopes, packages=packages, expires_in=lifetime, name=name
        ),
    )
    click.echo(plain)
    click.echo(
        f"key {record.key}, scopes {', '.join(record.scopes)}"
        + (f", expires {record.expires_at:%Y-%m-%d %H:%M}Z" if record.expires_at else ""),
        err=True,
    )


@token.command("list")
@pass_settings
@_one_line_errors
def token_list(settings: Settings) -> None:
    """List tokens (keys only, never secrets)."""
    records = _with_context(settings, lambda c: c.tokens().list_tokens())
    for r in records:
        state = "revoked" if r.revoked_at else "active"
        expires = f"{r.expires_at:%Y-%m-%d}" if r.expires_at else "never"
        packages = ",".join(r.packages) or "*"
        click.echo(
            f"{r.key}  {state:7}  scopes={','.join(r.scopes)}  packages={packages}  "
            f"expires={expires}  {r.name}"
        )


@token.command("revoke")
@click.argument("key")
@pass_settings
@_one_line_errors
def token_revoke(settings: Settings, key: str) -> None:
    """Revoke a token by its key (or the whole token)."""
    _with_context(settings, lambda c: c.tokens().revoke(key))
    click.echo("revoked")


@main.group()
def definitions() -> None:
    """Metric and specification definitions (lsst.verify verify_metrics trees)."""


@definitions.command("import")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--no-retire", is_flag=True, help="Keep specs that the tree no longer has.")
@pass_settings
@_one_line_errors
def definitions_import(settings: Settings, directory: Path, no_retire: bool) -> None:
    """Import DIRECTORY (metrics/<package>.yaml, specs/<package>/**.yaml); an upsert."""
    summary = _with_context(
        settings, lambda c: c.definitions().import_directory(directory, retire=not no_retire)
    )
    click.echo(
        f"metrics: {summary.metrics_added} added, {summary.metrics_updated} updated, "
        f"{summary.metrics_unchanged} unchanged; specs: {summary.specs_added} added, "
        f"{summary.specs_updated} updated, {summary.specs_unchanged} unchanged, "
        f"{summary.specs_retired} retired"
        + (f"; {summary.series_redetected} series re-detected" if summary.series_redetected else "")
    )


@main.group()
def requirements() -> None:
    """Requirements of the verification matrix (LDM-503 Appendix A style)."""


@requirements.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_settings
@_one_line_errors
def requirements_import(settings: Settings, file: Path) -> None:
    """Import FILE (YAML list or CSV: id, title, method, specs or spec patterns); an upsert."""
    counts = _with_context(settings, lambda c: c.verification().import_requirements_file(file))
    click.echo(
        f"requirements: {counts.added} added, {counts.updated} updated, "
        f"{counts.unchanged} unchanged"
    )


@main.command("detect")
@click.option(  # as specwatch.detect_cli's, which imports numpy: not at start-up
    "--stdin",
    "from_stdin",
    is_flag=True,
    help='Read {"values": [...]} from stdin, print {"change_points": [...]}.',
)
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Re-detect the changes of every stored series (last 500 builds of each).",
)
@click.pass_context
def detect(ctx: click.Context, from_stdin: bool, everything: bool) -> None:
    """Find persistent level shifts (regressions, improvements) in metric histories."""
    from specwatch import detect_cli

    if from_stdin == everything:
        click.echo("specwatch: error: give exactly one of --stdin and --all", err=True)
        sys.exit(2)
    if from_stdin:
        ctx.invoke(detect_cli.detect, from_stdin=True)
        return
    settings = load_settings()

    async def run(context: Any) -> tuple[int, int]:
        regressions = context.regressions()
        keys = await regressions.all_keys()
        return len(keys), await regressions.detect_many(keys)

    try:
        series, changes = _with_context(settings, run)
    except SpecwatchError as error:
        click.echo(f"specwatch: error: {error}", err=True)
        sys.exit(1)
    click.echo(f"detect: {series} series, {changes} change points")


@main.command()
@click.option("--dataset", required=True, help="The dataset whose latest build is reported.")
@click.option("--branch", default="main", show_default=True)
@click.option(
    "--format", "fmt", type=click.Choice(["md", "html", "ipynb"]), default="md", show_default=True
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write (default: standard output).",
)
@pass_settings
@_one_line_errors
def report(settings: Settings, dataset: str, branch: str, fmt: str, output: Path | None) -> None:
    """The verification report of the latest build: requirements (VCD), every spec verdict,
    changes since the previous report, and plots (html, ipynb: an executed notebook)."""
    from specwatch.report import render

    data = _with_context(settings, lambda c: c.report().build(dataset, branch=branch))
    text = render(data, fmt)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"report written to {output}", err=True)


@main.command()
@click.option("--seed", default=20261125, show_default=True, type=int)
@pass_settings
@_one_line_errors
def demo(settings: Settings, seed: int) -> None:
    """Load the seeded demo history (idempotent: loading twice changes nothing)."""
    from specwatch.services.demo import load_demo

    async def load(context: Any) -> Any:
        report = await load_demo(context, seed=seed)
        if context.dispatcher is not None and context.alerts().channels:
            await context.dispatcher.drain()  # the demo's alerts, now rather than at the next start
        return report

    report = _with_context(settings, load, background=True)
    click.echo(
        f"demo: {report.metrics} metrics, {report.specs} specs, {report.jobs_created} jobs "
        f"created, {report.jobs_existing} already there; {report.changes} change points"
    )


# --- background work and alerts ------------------------------------------------------------------


@main.command()
@pass_settings
@_one_line_errors
def worker(settings: Settings) -> None:
    """Run the background work without the API: deliver what the outbox holds to the series
    store, detect changes, raise and send alerts.  Run several beside API processes started
    with SPECWATCH_BACKGROUND=off: they share the work through the database (PostgreSQL;
    SIGTERM stops)."""
    import signal

    from specwatch.services.alerts import load_rules

    _check_schema(settings)
    load_rules(settings)

    async def run(context: Any) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        channels = sorted(context.alerts().channels) or ["none"]
        click.echo(f"specwatch worker: alert channels {', '.join(channels)} (Ctrl-C stops)")
        await stop.wait()

    # A worker is the background work, whatever SPECWATCH_BACKGROUND says for the servers.
    settings = settings.model_copy(update={"background": "inline"})
    _with_context(settings, run, background=True)


@main.group()
def alerts() -> None:
    """Alerts: check the channels, list the rules and the open alerts."""


@alerts.command("test")
@click.option(
    "--channel",
    type=click.Choice(["slack", "webhook", "github"]),
    required=True,
    help="The channel to send a sample message to.",
)
@pass_settings
@_one_line_errors
def alerts_test(settings: Settings, channel: str) -> None:
    """Send a sample alert through a channel, so an operator can check the set-up."""
    from datetime import UTC, datetime

    import httpx

    from specwatch.alerts.base import sample_message
    from specwatch.exceptions import InvalidInputError
    from specwatch.services.alert_delivery import notifiers_of

    async def run() -> None:
        async with httpx.AsyncClient(timeout=settings.influxdb_timeout_s) as client:
            notifiers, links = notifiers_of(settings, client)
            notifier = notifiers.get(channel)
            if notifier is None:
                setting = {
                    "slack": "SPECWATCH_SLACK_WEBHOOK_URL",
                    "webhook": "SPECWATCH_ALERT_WEBHOOK_URL",
                    "github": "SPECWATCH_GITHUB_TOKEN",
                }[channel]
                raise InvalidInputError(f"the {channel} channel is off: set {setting}")
            await notifier.send(sample_message(datetime.now(UTC), links))

    _run(run())
    click.echo(f"alerts test: a sample message was sent to {channel}")


@alerts.command("rules")
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Check this rules file instead of SPECWATCH_ALERT_RULES.",
)
@pass_settings
@_one_line_errors
def alerts_rules(settings: Settings, path: Path | None) -> None:
    """Check and print the alert rules in force (or those of a file)."""
    from specwatch.services.alerts import load_rules

    rules = load_rules(settings.model_copy(update={"alert_rules": path}) if path else settings)
    click.echo(f"{rules.source}: {len(rules.rules)} rules")
    for rule in rules.rules:
        scope = ", ".join(
            f"{name}={','.join(values)}"
            for name, values in (
                ("packages", rule.packages),
                ("metrics", rule.metrics),
                ("tags", rule.tags),
                ("datasets", rule.datasets),
                ("branches", rule.branches or ("main",)),
            )
            if values
        )
        state = "" if rule.enabled else " (disabled)"
        click.echo(f"  {rule.name}: {rule.kind.value}{state} → {','.join(rule.channels)}; {scope}")
    if rules.monitor_only:
        click.echo(f"  monitor only: {', '.join(rules.monitor_only)}")


@alerts.command("list")
@click.option(
    "--state",
    type=click.Choice(["active", "open", "acknowledged", "invalid", "resolved", "all"]),
    default="active",
    show_default=True,
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
@pass_settings
@_one_line_errors
def alerts_list(settings: Settings, state: str, limit: int) -> None:
    """The latest alerts, one line each."""
    from specwatch.metrics.alerts import AlertFilter
    from specwatch.metrics.formatting import format_utc

    where = AlertFilter(state=None if state == "all" else state)
    found = _with_context(
        settings, lambda c: c.alerts().list_alerts(where, after=None, limit=limit)
    )
    for alert in found:
        click.echo(
            f"#{alert.id}  {format_utc(alert.created_at)}  {alert.state.value:<12}  "
            f"{alert.rule}: {alert.title}"
        )
    if not found:
        click.echo(f"no {state} alerts")
