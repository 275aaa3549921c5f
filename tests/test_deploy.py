"""The deployment: Dockerfile, .dockerignore and compose.yaml, checked without Docker, and the
commands the image runs, run from the wheel as a non-root user.

There is no Docker daemon here, so: hadolint lints the Dockerfile, its shape is read from the
file, compose.yaml is validated against the Compose Specification and wired to the settings
and the CLI, and the commands compose starts (``db upgrade``, ``serve``, ``worker``) run from a
clean install of the wheel, with the image's and compose's environment, as uid 65534, against
PostgreSQL and a real influxd.

``tests/data/compose-spec.json`` is ``schema/compose-spec.json`` of
github.com/compose-spec/compose-spec at commit 00655e2222608fa6eaecdf12ac5195889ca2244a,
verbatim (74,133 characters).
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import httpx
import jsonschema
import pytest
import yaml
from conftest import empty_postgres_database, running_influxdb
from influxdb_server import free_port
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from wheel_build import build_wheel

from specwatch.cli import main
from specwatch.config import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
COMPOSE_SCHEMA = Path(__file__).with_name("data") / "compose-spec.json"
SPECWATCH_SERVICES = ("migrate", "api", "worker")
NOBODY = 65534
# What the test stands in for: compose's interpolation variables (the password goes nowhere
# here: the commands are pointed at a local database below).
VARIABLES = {"POSTGRES_PASSWORD": "unused-in-this-test"}


# --- the Dockerfile, as instructions and stages ------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        value = json.loads(self.arguments)
        assert isinstance(value, list), f"{self.keyword} is not in exec form: {self.arguments}"
        return [str(item) for item in value]


def dockerfile_stages() -> list[list[Instruction]]:
    """The instructions of each stage (line continuations joined, comments dropped)."""
    stages: list[list[Instruction]] = []
    logical = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not logical):
            continue
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        keyword, _, arguments = (logical + stripped).partition(" ")
        logical = ""
        instruction = Instruction(keyword.upper(), arguments.strip())
        if instruction.keyword == "FROM":
            stages.append([])
        assert stages, f"{instruction.keyword} before the first FROM"
        stages[-1].append(instruction)
    return stages


def of(stage: list[Instruction], keyword: str) -> list[Instruction]:
    return [instruction for instruction in stage if instruction.keyword == keyword]


def image_environment() -> dict[str, str]:
    """The ``ENV`` of the final stage: what every container of the image starts with."""
    env: dict[str, str] = {}
    for instruction in of(dockerfile_stages()[-1], "ENV"):
        for item in shlex.split(instruction.arguments):
            name, equals, value = item.partition("=")
            assert equals, f"ENV {instruction.arguments}: use the NAME=value form"
            env[name] = value
    return env


def test_hadolint_passes_on_the_dockerfile() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    done = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert done.returncode == 0, f"hadolint:\n{done.stdout}{done.stderr}"


def test_the_dockerfile_builds_wheels_then_installs_only_them_as_a_non_root_user() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage: the build's tools stay out of the final image"
    stage_names = {
        stage[0].arguments.split()[-1] for stage in stages if " AS " in stage[0].arguments
    }
    for stage in stages:
        base = stage[0].arguments.split()[0]
        if base not in stage_names:  # an image from a registry: pinned by its tag
            name, _, tag = base.rpartition(":")
            assert name and tag and tag != "latest", f"FROM {base}: pin the base by its tag"
    final = stages[-1]
    assert final[0].arguments.split()[0].startswith("python:3.11-slim")

    build_runs = " ".join(run.arguments for run in of(stages[0], "RUN"))
    assert re.search(r"pip wheel .*--wheel-dir /wheels .*\.\[server\]", build_runs)

    runs = " ".join(run.arguments for run in of(final, "RUN"))
    for tool in ("gcc", "g++", "build-essential", "apt-get", "clang", "curl", "wget"):
        assert not re.search(rf"(?<![\w-]){re.escape(tool)}(?![\w-])", runs), tool
    (install,) = (run.arguments for run in of(final, "RUN") if "pip install" in run.arguments)
    for flag in ("--no-cache-dir", "--no-index", "--find-links=/wheels"):
        assert flag in install, f"the final stage installs the wheels only: {flag}"
    for copied in of(final, "COPY") + of(final, "ADD"):  # never the source tree
        assert copied.arguments.startswith("--from="), copied

    users = of(final, "USER")
    assert users, "the final stage runs as a user of its own"
    user = users[-1].arguments.split(":")[0]
    assert user.isdigit() and int(user) != 0, f"USER {users[-1].arguments}: a numeric non-root uid"
    assert of(final, "WORKDIR")

    assert of(final, "ENTRYPOINT")[-1].exec_form() == ["specwatch"]
    command = of(final, "CMD")[-1].exec_form()
    assert command[:2] == ["serve", "--host"]
    assert ipaddress.ip_address(command[2]).is_unspecified  # every interface of the container
    port = command[command.index("--port") + 1]
    assert port in " ".join(expose.arguments for expose in of(final, "EXPOSE")).split()
    (healthcheck,) = of(final, "HEALTHCHECK")
    assert "urllib.request" in healthcheck.arguments
    assert f"http://127.0.0.1:{port}/healthz" in healthcheck.arguments

    env = image_environment()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["PYTHONUNBUFFERED"] == "1"
    assert settings_of(env).log_format == "json"


# --- .dockerignore -------------------------------------------------------------------------------


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's matching: ``*`` and ``?`` within a path element, ``**`` across elements."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves out ``path`` (a pattern on a folder covers its files;
    the last matching pattern wins, ``!`` re-includes)."""
    parts = path.split("/")
    result = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _pattern_regex(pattern.lstrip("!").strip("/"))
        if any(regex.fullmatch("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            result = not negated
    return result


def test_the_build_context_holds_what_the_wheel_needs_and_nothing_else() -> None:
    patterns = dockerignore_patterns()
    context: set[str] = set()
    for directory, subdirs, files in os.walk(ROOT):  # links are not followed
        relative = Path(directory).relative_to(ROOT).as_posix()
        prefix = "" if relative == "." else relative + "/"
        subdirs[:] = [d for d in subdirs if not ignored(prefix + d, patterns)]
        context.update(prefix + f for f in files if not ignored(prefix + f, patterns))
    # pip wheel needs pyproject.toml, the readme and every source folder (alembic/ is where
    # store/migrations links to).
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert {"pyproject.toml", config["project"]["readme"]} <= context
    folders = {*config["tool"]["setuptools"]["package-dir"].values(), "alembic"}
    for folder in sorted(folders):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in {".py", ".yaml", ".mako"} and "__pycache__" not in path.parts:
                assert path.relative_to(ROOT).as_posix() in context, path
    for left_out in (
        ".git/HEAD",
        ".venv/bin/python",
        ".env",
        "tests/test_deploy.py",
        "specwatch.sqlite3",
        "data/specwatch.sqlite3-wal",
        "api/__pycache__/app.cpython-311.pyc",
        "build/lib/specwatch/cli.py",
        "specwatch.egg-info/PKG-INFO",
        ".mypy_cache/3.11/x.json",
    ):
        assert ignored(left_out, patterns), left_out
    assert not {p for p in context if p.startswith((".venv/", ".git/", "tests/", "build/"))}


# --- compose.yaml --------------------------------------------------------------------------------


def load_compose() -> dict[str, Any]:
    compose = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(compose, dict)
    return compose


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<bare>\w+))"
)


class MissingVariable(ValueError):
    pass


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose's interpolation: ``${V}``, ``${V:-default}``, ``${V-default}``, ``${V:?error}``,
    ``${V?error}``, ``$V`` and ``$$``."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, argument = match["op"] or "", match["arg"] or ""
        value = variables.get(name)
        missing = value is None or (op.startswith(":") and value == "")
        if op.endswith("?") and missing:
            raise MissingVariable(f"{name}: {argument}")
        if op.endswith("-") and missing:
            return argument
        return value or ""

    return _VARIABLE.sub(replace, value)


def service_environment(
    compose: Mapping[str, Any], service: str, variables: Mapping[str, str]
) -> dict[str, str]:
    """A service's environment as its container gets it: interpolated, and a variable without
    a value passed through from ``variables`` (unset when it is not there)."""
    env: dict[str, str] = {}
    for name, value in compose["services"][service].get("environment", {}).items():
        if value is None:
            if name in variables:
                env[name] = variables[name]
        else:
            assert isinstance(value, str), f"{service}: quote {name}'s value ({value!r})"
            env[name] = interpolate(value, variables)
    return env


def settings_values(env: Mapping[str, str]) -> dict[str, str]:
    return {
        name.removeprefix("SPECWATCH_").lower(): value
        for name, value in env.items()
        if name.startswith("SPECWATCH_")
    }


class SettingsOfValues(Settings):
    """The settings, from the values given only (not from this test process's environment)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def settings_of(env: Mapping[str, str]) -> Settings:
    """The settings a process with environment ``env`` gets (validated: a bad value raises)."""
    return SettingsOfValues.model_validate(settings_values(env))


def cli_command(argv: list[str]) -> click.Command:
    """The ``specwatch`` command of ``argv``, its options parsed as click would (bad ones raise
    ``click.UsageError``), without running it."""
    command: click.Command = main
    context = click.Context(main, info_name="specwatch")
    args = list(argv)
    while isinstance(command, click.Group):
        name, sub, args = command.resolve_command(context, args)
        assert name is not None and sub is not None, argv
        command, context = sub, click.Context(sub, info_name=name, parent=context)
    command.make_context(context.info_name, args, parent=context.parent)
    return command


def test_compose_validates_against_the_compose_specification() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    assert "draft-07" in schema["$schema"]
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    compose = load_compose()
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(compose)
    ]
    assert errors == []
    assert "version" not in compose  # obsolete in the Compose Specification
    # The schema is strict where it matters: a misspelt key or condition does not pass.
    broken = copy.deepcopy(compose)
    broken["services"]["api"]["enviroment"] = broken["services"]["api"].pop("environment")
    broken["services"]["worker"]["depends_on"]["migrate"]["condition"] = "service_completed"
    assert len(list(validator.iter_errors(broken))) == 2


def test_compose_wires_settings_services_and_commands() -> None:
    text = COMPOSE.read_text()
    compose = load_compose()
    services: dict[str, Any] = compose["services"]
    # Every SPECWATCH_* name (keys, interpolations, comments) is a setting: a typo fails here.
    named = set(re.findall(r"\bSPECWATCH_[A-Z0-9_]+", text))
    unknown = {
        n for n in named if n.removeprefix("SPECWATCH_").lower() not in Settings.model_fields
    }
    assert named and unknown == set()

    for service in SPECWATCH_SERVICES:
        env = service_environment(compose, service, VARIABLES)
        settings = settings_of(env)  # values of the right type and range
        assert settings.log_format == "json"
        # The URLs name compose services: PostgreSQL through asyncpg, and InfluxDB.
        database = urlsplit(settings.database_url)
        assert database.scheme == "postgresql+asyncpg" and database.hostname in services
        assert urlsplit(settings.influxdb_url or "").hostname in services
        assert settings.slack_webhook_url is None  # unset on the host: no Slack channel
        with pytest.raises(MissingVariable, match="POSTGRES_PASSWORD"):  # no default password
            service_environment(compose, service, {})
    api_env = service_environment(compose, "api", VARIABLES)
    worker_env = service_environment(compose, "worker", VARIABLES)
    assert settings_of(api_env).background == "off"
    assert settings_of(worker_env).background == "inline"
    assert {k: v for k, v in api_env.items() if k != "SPECWATCH_BACKGROUND"} == worker_env
    assert (
        interpolate(services["postgres"]["environment"]["POSTGRES_PASSWORD"], VARIABLES)
        == (VARIABLES["POSTGRES_PASSWORD"])
    )

    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on an unknown {dependency}"
            if condition["condition"] == "service_healthy":
                check = services[dependency].get("healthcheck", {})
                assert check.get("test") and not check.get("disable"), dependency
            if condition["condition"] == "service_completed_successfully":
                assert services[dependency]["restart"] == "no", dependency
    for service in ("api", "worker"):
        assert services[service]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"

    # One image, built from this Dockerfile, runs the three Specwatch services.
    images = {(services[s]["image"], json.dumps(services[s]["build"])) for s in SPECWATCH_SERVICES}
    assert len(images) == 1
    build = services["api"]["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    assert services["worker"]["command"] == ["worker"]
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["api"]["command"][0] == "serve"
    for service in SPECWATCH_SERVICES:  # each command and its options exist in the CLI
        cli_command(services[service]["command"])
    assert cli_command(["worker"]).name == "worker"
    with pytest.raises(click.UsageError):  # (the check can fail)
        cli_command(["serve", "--workerz", "2"])

    # The API listens where the image says, and compose checks it on /readyz.
    command = services["api"]["command"]
    port = command[command.index("--port") + 1]
    assert any(str(p).endswith(f":{port}") for p in services["api"]["ports"])
    assert f"http://127.0.0.1:{port}/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    for service in ("migrate", "worker"):  # they serve nothing: the image's check is off
        assert services[service]["healthcheck"] == {"disable": True}


# --- what the image would run --------------------------------------------------------------------


def process_ids(pid: int) -> tuple[list[int], list[int]]:
    """The uids (real, effective, saved, fs) and supplementary groups of a running process."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return [int(u) for u in fields["Uid"].split()], [int(g) for g in fields["Groups"].split()]


def influx_points(url: str, database: str, measurement: str) -> int:
    response = httpx.get(
        f"{url}/query",
        params={"db": database, "q": f'SELECT count(*) FROM "{measurement}"'},
        timeout=5,
    )
    response.raise_for_status()
    series = response.json()["results"][0].get("series", [])
    return max(series[0]["values"][0][1:]) if series else 0


def wait_for(what: str, check: Callable[[], bool], timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout_s} s; log:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)


class Runner:
    """``specwatch`` commands of a clean venv, run as uid/gid 65534 in its own home."""

    def __init__(self, venv: Path, home: Path, logs: Path) -> None:
        self.specwatch = str(venv / "bin" / "specwatch")
        self.home = home
        self.logs = logs
        self.base = {
            "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "LANG": "C.UTF-8",
        }
        self.processes: list[subprocess.Popen[bytes]] = []

    def _options(self, env: Mapping[str, str]) -> dict[str, Any]:
        return {
            "env": {**self.base, **env},
            "cwd": self.home,
            "user": NOBODY,
            "group": NOBODY,
            "extra_groups": [],  # not root's supplementary groups either
        }

    def run(self, args: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.specwatch, *args],
            capture_output=True,
            text=True,
            timeout=120,
            **self._options(env),
        )

    def start(self, name: str, args: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                [self.specwatch, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._options(env),
            )
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)  # its session: uvicorn's workers too
                    process.wait()


DEFINITIONS = {"metrics/deploy.yaml": "PA1:\n  unit: mmag\n  description: rms\n"}
JOB = {
    "measurements": [{"metric": "deploy.PA1", "value": 5.5, "unit": "mmag"}],
    "meta": {
        "dataset": "HSC-RC2",
        "branch": "main",
        "commit": "d1",
        "time": "2026-05-01T00:00:00Z",
    },
}


@contextlib.contextmanager
def shared_folder() -> Iterator[Path]:
    """A temp folder others may traverse (pytest's tmp_path is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="specwatch-deploy-"))
    try:
        folder.chmod(0o755)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def python_for_nobody() -> str:
    """A Python ≥ 3.11 that uid 65534 can run (a pyenv one under /root cannot): the venv's
    interpreter and standard library must be readable by the user, as in the image."""
    for candidate in (sys.executable, shutil.which("python3", path="/usr/local/bin:/usr/bin")):
        if candidate is None:
            continue
        check = "import sys; assert sys.version_info >= (3, 11); import venv, ensurepip"
        try:
            probe = subprocess.run(
                [candidate, "-c", check], capture_output=True, user=NOBODY, group=NOBODY, cwd="/"
            )
        except PermissionError:
            continue
        if probe.returncode == 0:
            return candidate
    pytest.fail("no Python >= 3.11 with venv that uid 65534 may run (apt-get install python3-venv)")


def test_the_image_commands_run_from_the_wheel_as_a_non_root_user(tmp_path: Path) -> None:
    """compose's migrate, api and worker, from ``pip install '<wheel>[server]'`` (binary
    wheels only, as the image's build stage has no compiler), with the image's ENV and
    compose's environment: the API (``SPECWATCH_BACKGROUND=off``) only serves; the worker
    delivers what the API could not."""
    if os.geteuid() != 0:
        pytest.fail("running the commands as uid 65534 needs root (as the test command runs)")
    compose = load_compose()
    services = compose["services"]
    wheel = build_wheel(tmp_path / "wheel")
    with contextlib.ExitStack() as stack:
        root = stack.enter_context(shared_folder())
        venv = root / "venv"
        subprocess.run([python_for_nobody(), "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        install = subprocess.run(
            [*pip, "--disable-pip-version-check", "--only-binary=:all:", f"{wheel}[server]"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert install.returncode == 0, install.stdout + install.stderr
        home = root / "app"  # the image's WORKDIR: the user's own; the venv stays root's
        home.mkdir(mode=0o750)
        os.chown(home, NOBODY, NOBODY)
        logs = tmp_path / "logs"
        logs.mkdir()

        database_url = stack.enter_context(empty_postgres_database())
        influxdb = stack.enter_context(running_influxdb())
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        runner = Runner(venv, home, logs)
        stack.callback(runner.stop_all)

        here = {
            "SPECWATCH_DATABASE_URL": database_url,
            "SPECWATCH_INFLUXDB_URL": influxdb.url,
            "SPECWATCH_PUBLIC_URL": url,
        }
        # Timing only: a failed series write is retried within a second, so that a sweep in
        # the API (which SPECWATCH_BACKGROUND=off forbids) would show in the wait below.
        retries = {"SPECWATCH_OUTBOX_RETRY_INITIAL_S": "0.1", "SPECWATCH_OUTBOX_RETRY_MAX_S": "0.5"}

        def env_of(service: str) -> dict[str, str]:
            env = service_environment(compose, service, VARIABLES)
            assert set(here) <= set(env), f"compose sets these for {service}: {sorted(here)}"
            return {**image_environment(), **env, **here, **retries}

        api_env, worker_env = env_of("api"), env_of("worker")
        assert api_env["SPECWATCH_BACKGROUND"] == "off" and "SPECWATCH_BACKGROUND" not in worker_env
        database = api_env["SPECWATCH_INFLUXDB_DATABASE"]

        migrated = runner.run(services["migrate"]["command"], env_of("migrate"))
        assert migrated.returncode == 0, migrated.stderr
        assert "database at head" in migrated.stdout
        created = runner.run(
            ["token", "create", "--scope", "write:jobs", "--scope", "write:definitions"], api_env
        )
        assert created.returncode == 0, created.stderr
        auth = {"Authorization": f"Bearer {created.stdout.split()[0]}"}

        command = list(services["api"]["command"])
        command[command.index("--host") + 1] = "127.0.0.1"
        command[command.index("--port") + 1] = str(port)
        api = runner.start("api", command, api_env)

        def answers() -> bool:
            assert api.poll() is None, (logs / "api.log").read_text()
            with contextlib.suppress(httpx.TransportError):
                return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
            return False

        wait_for("specwatch serve answering /healthz", answers, 90, logs / "api.log")
        uids, groups = process_ids(api.pid)
        assert uids == [NOBODY] * 4 and 0 not in groups
        health = httpx.get(f"{url}/healthz", timeout=5).json()
        assert health["status"] == "ok" and health["series_store"] == "influxdb"
        ready = httpx.get(f"{url}/readyz", timeout=10)  # compose's health check of the api
        assert ready.status_code == 200, ready.text

        response = httpx.post(
            f"{url}/api/v1/definitions", json={"files": DEFINITIONS}, headers=auth
        )
        assert response.status_code == 200, response.text
        influxdb.stop()  # the API's own write fails: the job waits in the outbox
        response = httpx.post(f"{url}/api/v1/jobs", json=JOB, headers=auth, timeout=30)
        assert response.status_code == 201, response.text
        job_id = response.json()["id"]
        stored = httpx.get(f"{url}/api/v1/jobs/{job_id}", timeout=10)
        assert stored.status_code == 200, stored.text
        assert [m["metric"] for m in stored.json()["measurements"]] == ["deploy.PA1"]
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 503  # no series store
        influxdb.start()

        # SPECWATCH_BACKGROUND=off: the API does not sweep the outbox (a sweep would deliver
        # within ~1.5 s of InfluxDB's return).
        time.sleep(4)
        assert httpx.get(f"{url}/healthz", timeout=5).json()["outbox_pending"] == 1
        assert influx_points(influxdb.url, database, "deploy") == 0

        worker = runner.start("worker", services["worker"]["command"], worker_env)
        wait_for(
            "the worker delivering the job to InfluxDB",
            lambda: influx_points(influxdb.url, database, "deploy") == 1,
            30,
            logs / "worker.log",
        )
        assert worker.poll() is None, (logs / "worker.log").read_text()
        uids, groups = process_ids(worker.pid)
        assert uids == [NOBODY] * 4 and 0 not in groups
        wait_for(
            "the outbox to empty",
            lambda: httpx.get(f"{url}/healthz", timeout=5).json()["outbox_pending"] == 0,
            10,
            logs / "worker.log",
        )
        series = httpx.get(
            f"{url}/api/v1/metrics/deploy.PA1/series", params={"dataset": "HSC-RC2"}, timeout=10
        ).json()
        assert series["job_id"] == [job_id] and series["value"] == [5.5]
        assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
        worker_log = (logs / "worker.log").read_text()
        assert "alert channels none" in worker_log  # no Slack URL on the host: no channel
        api_log = (logs / "api.log").read_text().splitlines()
        events = [json.loads(line) for line in api_log if line.startswith("{")]
        assert any(e.get("event") == "specwatch api started" for e in events)  # JSON logs
