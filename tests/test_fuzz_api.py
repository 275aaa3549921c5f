"""Fuzz the whole OpenAPI schema with schemathesis 4, in process, on the production stack.

The app runs on PostgreSQL (migrated, truncated) and a real InfluxDB, seeded with definitions,
requirements, a main history with a step (so there is a change point) and a PR build. Its
lifespan runs in schemathesis's own event loop thread (``schemathesis.python.asgi`` starts it on
the first request and keeps it until ``shutdown_lifespans()``), so every request goes through
that loop, the seeding included; the write token is made by a ProcessContext of its own.

Per operation: the coverage phase's deterministic cases (boundary values, missing and wrongly
typed parameters, unexpected methods; positive and negative; their number does not depend on
the settings below), then ``SPECWATCH_FUZZ_EXAMPLES`` Hypothesis examples per generation mode
(positive, negative), seeded from ``SPECWATCH_FUZZ_SEED``; fuzz dictionaries put edge values
(extreme date-times and offsets, 64-bit bounds, cursors, the seeded names) in some parameters.
Then ``SPECWATCH_FUZZ_STATEFUL`` scenarios follow the links schemathesis infers between routes
(job ids, metric names, change ids).

The schema is the app's ``/openapi.json``. The token (every scope) is schemathesis's
``auth.openapi.<scheme>.bearer`` for the schema's HTTP bearer security scheme, so schemathesis
sends it, except in the negative cases that leave it out on purpose, and ``ignored_auth`` checks
that an operation declaring the scheme refuses no or a wrong token. Should the schema declare the
token as a plain ``Authorization`` header parameter instead (FastAPI's ``Header()``), that header
is turned into a bearer scheme on the non-GET operations first: fuzzing it as data while sending a
valid token would only produce artefacts.

A failing check is recorded, not raised: a failing explicit (coverage) case would stop Hypothesis
before its generated examples, and one raise per operation would hide the other failures (no
shrinking, then: the smallest failing request seen is kept). Each operation's test fails at its
end with its distinct failures, grouped by (operation, check, status). A 500 names the exception
the app logged for it (by ``X-Request-ID``) and its innermost Specwatch frame; an exception that
escapes the app (Starlette re-raises after its 500) is recorded the same way. The terminal
summary lists every distinct failure; ``SPECWATCH_FUZZ_REPORT=path.json`` writes them as JSON.

Environment: ``SPECWATCH_FUZZ_EXAMPLES`` (at most, per operation and mode; default 250),
``SPECWATCH_FUZZ_BUDGET_S`` (wall-clock budget of the per-operation phase, default 300: the
example counts are cut to fit it, never below 20), ``SPECWATCH_FUZZ_STATEFUL`` (scenarios, default
100; 0: none), ``SPECWATCH_FUZZ_SEED``, ``SPECWATCH_FUZZ_COVERAGE`` (0: no coverage phase),
``SPECWATCH_FUZZ_DICTIONARY`` (probability of a dictionary value, default 0.1; 0: none),
``SPECWATCH_FUZZ_CHECKS`` (comma-separated check names), ``SPECWATCH_FUZZ_REPORT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import sys
import time
import traceback
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import hypothesis
import pytest
import requests
import schemathesis
import structlog
from api_helpers import DEMO_FILES
from conftest import truncate_all
from hypothesis import HealthCheck, Phase, Verbosity
from influxdb_server import InfluxDBServer
from schemathesis import APIOperation, BaseSchema, CheckFunction, GenerationMode
from schemathesis import Case as AnyCase
from schemathesis.core import NotSet
from schemathesis.core.result import Ok
from schemathesis.core.transport import Response
from schemathesis.engine.recorder import ScenarioRecorder
from schemathesis.errors import FailureGroup
from schemathesis.generation import overrides
from schemathesis.generation.drivers import CoverageGenerator
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.python import asgi

from specwatch.api.app import create_app
from specwatch.config import Settings
from specwatch.services.context import ProcessContext

T = TypeVar("T")
Operation = APIOperation[Any, Any, Any, Any]
Case = AnyCase[Operation]

EXAMPLES = int(os.environ.get("SPECWATCH_FUZZ_EXAMPLES", "250"))
# Wall-clock budget of the per-operation fuzzing (all operations together): each operation gets
# an equal share of what is left, and its example counts are cut to what fits at the rate its
# coverage phase ran (never below MIN_EXAMPLES).  CI stays within its time whatever the machine.
BUDGET_S = float(os.environ.get("SPECWATCH_FUZZ_BUDGET_S", "300"))
MIN_EXAMPLES = 20
SEED = int(os.environ.get("SPECWATCH_FUZZ_SEED", "20260101"))
COVERAGE = os.environ.get("SPECWATCH_FUZZ_COVERAGE", "1") != "0"
STATEFUL_SCENARIOS = int(os.environ.get("SPECWATCH_FUZZ_STATEFUL", "100"))
STATEFUL_STEPS = 6
REPORT = os.environ.get("SPECWATCH_FUZZ_REPORT")
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
DEFAULT_CHECKS = (
    "not_a_server_error",
    "response_schema_conformance",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "ignored_auth",
)
CHECK_NAMES = tuple(
    name.strip()
    for name in os.environ.get("SPECWATCH_FUZZ_CHECKS", ",".join(DEFAULT_CHECKS)).split(",")
    if name.strip()
)
SEMANTIC_BODIES = ("/api/v1/jobs", "/api/v1/definitions", "/api/v1/requirements")
POSITIVE_EXPECTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]  # its default
STATEFUL_CHECKS = ("use_after_free", "ensure_resource_availability")  # need a scenario
PROJECT = Path(__file__).resolve().parents[1]
SCOPES = ["write:jobs", "write:definitions", "triage"]
BEARER = "bearer"
# Fuzz dictionaries (schemathesis 4 ``[dictionaries]`` + ``[parameters]`` bindings): edge values
# that replace a generated parameter with a probability; the ones its schema refuses are used in
# negative cases only. (FastAPI's optional parameters are ``anyOf [T, null]``, which schemathesis's
# type-wide bindings skip, hence bindings by name.)
DICTIONARIES: dict[str, list[str | int | float]] = {
    "datetimes": [
        "0001-01-01T00:00:00+14:00",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999-23:59",
        "9999-12-31T23:59:59Z",
        "1677-09-21T00:12:43.145224Z",
        "2262-04-11T23:47:16.854776Z",
        "1970-01-01T00:00:00Z",
        "2026-01-01T00:12:00Z",
    ],
    "refs": ["pr:7", "pr:0", "pr:2147483648", "13", "0", "9223372036854775808", f"{20:040x}"],
    "cursors": ["0.1", "-1.1", "9999999999999999999.9999999999999999999", "-62135596800000000.1"],
    "names": ["demo.PA1", "demo", "HSC-RC2", "main", "r", "%", "_", "\\", "'", "/.*/", "a.b.c"],
    "ints": [0, -1, 2147483647, 2147483648, 9223372036854775807, 9223372036854775808],
}
BINDINGS = {
    "datetimes": ("query.since", "query.until"),
    "refs": ("query.head", "query.base"),
    "cursors": ("query.cursor",),
    "names": (
        "path.name",
        *(f"query.{q}" for q in ("dataset", "branch", "filter", "instrument", "pipeline")),
        *("query.package", "query.commit"),
    ),
    "ints": ("path.job_id", "path.change_id", "query.pr", "query.limit", "query.n"),
}
DICTIONARY_PROBABILITY = float(os.environ.get("SPECWATCH_FUZZ_DICTIONARY", "0.1"))
REQUIREMENTS_YAML = (
    "requirements:\n"
    "  - {id: DMS-REQ-0275, title: Photometry, method: Test, specs: ['demo.PA1.*']}\n"
    "  - {id: DMS-REQ-0029, title: Completeness, method: Analysis, specs: ['demo.COMP.*']}\n"
)


def _operation_labels() -> list[str]:
    """The operations of the app's schema (at collection; no database needed)."""
    spec = create_app(Settings()).openapi()
    return [f"{method.upper()} {path}" for path, item in spec["paths"].items() for method in item]


OPERATIONS = _operation_labels()


def _in_thread(function: Callable[[], T]) -> T:
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function).result()


def with_bearer_scheme(spec: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The schema and the name of its HTTP bearer security scheme. ``Authorization`` header
    parameters become such a scheme (on every operation but the GETs) if it declares none."""
    patched: dict[str, Any] = copy.deepcopy(dict(spec))
    schemes = patched.setdefault("components", {}).setdefault("securitySchemes", {})
    name = next(
        (
            key
            for key, scheme in schemes.items()
            if scheme.get("type") == "http" and scheme.get("scheme", "").lower() == "bearer"
        ),
        None,
    )
    declared = name is not None
    name = name or BEARER
    schemes.setdefault(name, {"type": "http", "scheme": "bearer"})
    for item in patched["paths"].values():
        for method, operation in item.items():
            parameters = operation.get("parameters", [])
            kept = [
                p
                for p in parameters
                if not (p.get("in") == "header" and p.get("name", "").lower() == "authorization")
            ]
            if len(kept) == len(parameters):
                continue
            operation["parameters"] = kept
            if not declared and method != "get":
                operation["security"] = [{name: []}]
    return patched, name


def untyped_responses(spec: Mapping[str, Any]) -> list[str]:
    """Operations with a 2xx response without a schema (response_schema_conformance is blind)."""
    untyped = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content") or {}
                schemas = [media.get("schema") for media in content.values()]
                if status.startswith("2") and (not schemas or not all(schemas)):
                    untyped.append(f"{method.upper()} {path} {status}")
    return untyped


# --- what is recorded ----------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class FailureKey:
    operation: str
    check: str
    status: int | None


@dataclass
class Finding:
    """One distinct failure: the smallest reproducing request seen, and how often it occurred."""

    key: FailureKey
    title: str
    detail: str
    answer: str
    phase: str
    mode: str
    method: str
    path: str
    query: dict[str, Any] | None
    headers: dict[str, Any] | None
    body: str | None
    curl: str
    size: int
    count: int = 1

    def line(self) -> str:
        query = f" query={json.dumps(self.query, default=str)}" if self.query else ""
        headers = f" headers={json.dumps(self.headers, default=str)}" if self.headers else ""
        body = f" body={self.body}" if self.body is not None else ""
        answer = f"\n    answer: {self.answer}" if self.answer else ""
        return (
            f"{self.key.operation} | {self.key.check} | {self.key.status} | x{self.count} | "
            f"{self.title}: {self.detail}\n    {self.phase}/{self.mode}: "
            f"{self.method} {self.path}{query}{headers}{body}{answer}"
        )


def _excerpt(value: Any, limit: int = 240) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + f"…(+{len(text) - limit})"


def _server_frame(error: BaseException) -> str:
    """The innermost traceback line in Specwatch's own code (where the 500 came from)."""
    frames = traceback.extract_tb(error.__traceback__)
    own = [f for f in frames if f.filename.startswith(str(PROJECT)) and "/.venv/" not in f.filename]
    if not (own or frames):
        return ""
    frame = (own or frames)[-1]
    where = Path(frame.filename).relative_to(PROJECT) if own else frame.filename
    return f"{where}:{frame.lineno} in {frame.name}: {frame.line}"


class ServerErrorLog:
    """A structlog processor: the exception behind each error the app logs, by request id.

    The app answers an unexpected exception with a 500 problem itself and logs it (with the
    traceback) once; this keeps its type and innermost Specwatch frame for the report, and
    hands the traceback on as plain text.
    """

    def __init__(self) -> None:
        self.by_request: dict[str, str] = {}

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        error = sys.exc_info()[1]
        if error is not None and method_name in ("exception", "error", "critical"):
            request_id = structlog.contextvars.get_contextvars().get("request_id")
            if request_id is None:
                request_id = event_dict.get("request_id")
            self.by_request[str(request_id)] = _describe(error)
            # The plain traceback: the console renderer's (rich, with locals) takes ~2 s each.
            event_dict.pop("exc_info", None)
            event_dict["exception"] = "".join(traceback.format_exception(error))
        return event_dict

    def of(self, response: Response) -> str:
        values = response.headers.get("x-request-id") or [""]
        request_id = values if isinstance(values, str) else values[0]
        return self.by_request.pop(request_id, "no exception logged for its x-request-id")


def _describe(error: BaseException) -> str:
    cause = error.__cause__ or error.__context__
    kind = type(error).__name__ + (f"({type(cause).__name__})" if cause is not None else "")
    message = str(error).splitlines()[0] if str(error) else ""
    return f"{kind}: {_excerpt(message, 160)} @ {_server_frame(error)}"


@dataclass
class Recorder:
    authorization: str = ""
    cases: Counter[str] = field(default_factory=Counter)
    unsent: Counter[str] = field(default_factory=Counter)
    untyped: list[str] = field(default_factory=list)
    stateful_steps: int = 0
    examples: dict[str, int] = field(default_factory=dict)  # per mode, after the budget
    findings: dict[FailureKey, Finding] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def add(
        self,
        case: Case,
        check: str,
        status: int | None,
        title: str,
        detail: str,
        answer: str = "",
    ) -> None:
        key = FailureKey(case.operation.label, check, status)
        query = dict(case.query) if case.query else None
        headers = {
            k: "Bearer <token>" if v == self.authorization else v
            for k, v in (case.headers or {}).items()
        }
        secured = bool(case.operation.definition.raw.get("security"))
        if secured and "authorization" not in {k.lower() for k in headers}:
            headers["Authorization"] = "(none)"
        body = None if isinstance(case.body, NotSet) else _excerpt(case.body)
        size = len(json.dumps([case.formatted_path, query, headers, body], default=str))
        old = self.findings.get(key)
        if old is not None and old.size <= size:
            old.count += 1
            return
        meta = case.meta
        self.findings[key] = Finding(
            key=key,
            title=title,
            detail=_excerpt(detail, 300),
            answer=_excerpt(answer, 200),
            phase=meta.phase.name.value if meta else "?",
            mode=meta.generation.mode.value if meta else "?",
            method=case.method.upper(),
            path=case.formatted_path,
            query=query,
            headers=headers or None,
            body=body,
            curl=case.as_curl_command(),
            size=size,
            count=old.count + 1 if old else 1,
        )

    def of(self, operation: str) -> list[Finding]:
        return [f for k, f in sorted(self.findings.items()) if k.operation == operation]

    def summary(self) -> str:
        failing = sum(f.count for f in self.findings.values())
        lines = [
            f"{len(self.cases)} operations, {sum(self.cases.values())} requests "
            f"({self.stateful_steps} in stateful scenarios), {failing} failing check results, "
            f"{len(self.findings)} distinct (operation, check, status), "
            f"{time.monotonic() - self.started:.0f} s; seed {SEED}, up to {EXAMPLES} "
            f"examples/mode (budget {BUDGET_S:.0f} s: fewest "
            f"{min(self.examples.values(), default=0)})"
            + (f"; not sent (client refused): {dict(self.unsent)}" if self.unsent else "")
            + (f"; 2xx responses without a schema: {self.untyped}" if self.untyped else ""),
            *(f.line() for _, f in sorted(self.findings.items())),
        ]
        return "\n".join(lines)

    def write(self, path: str) -> None:
        document = {
            "seed": SEED,
            "examples": EXAMPLES,
            "examples_run": self.examples,
            "budget_s": BUDGET_S,
            "seconds": round(time.monotonic() - self.started, 1),
            "requests": dict(self.cases),
            "stateful_steps": self.stateful_steps,
            "unsent": dict(self.unsent),
            "untyped_responses": self.untyped,
            "findings": [
                {**asdict(f), "key": asdict(f.key)} for _, f in sorted(self.findings.items())
            ],
        }
        Path(path).write_text(json.dumps(document, indent=2, default=str), encoding="utf-8")


class SummaryPlugin:
    """Registered for the session: prints every distinct failure at the end of the run."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.recorder.cases:
            terminalreporter.section("schemathesis fuzz (tests/test_fuzz_api.py)")
            terminalreporter.write_line(self.recorder.summary())


# --- the app under test --------------------------------------------------------------------


@dataclass
class FuzzRun:
    schema: BaseSchema
    recorder: Recorder
    checks: list[CheckFunction]
    server_errors: ServerErrorLog

    def call(self, case: Case) -> Response | None:
        """Send ``case``; an exception the app raised is recorded as its 500."""
        self.recorder.cases[case.operation.label] += 1
        try:
            return case.call()
        except requests.RequestException as error:  # the client could not send it: no test
            self.recorder.unsent[f"{case.operation.label}: {type(error).__name__}"] += 1
        except Exception as error:  # raised by the app (Starlette re-raises after its 500)
            title = f"{type(error).__name__} raised by the app"
            self.recorder.add(case, "not_a_server_error", 500, title, _describe(error))
        return None

    def validate(
        self,
        case: Case,
        response: Response,
        *,
        checks: list[CheckFunction] | None = None,
        recorder: ScenarioRecorder | None = None,
    ) -> None:
        """Run each check on its own, so each failure is attributed to its check."""
        answer = response.text if response.status_code >= 400 else ""
        if response.status_code >= 500:
            answer = f"logged {self.server_errors.of(response)}; answered {answer}"
        for check in self.checks if checks is None else checks:
            try:
                case.validate_response(response, checks=[check], recorder=recorder)
            except FailureGroup as group:
                for failure in group.exceptions:
                    self.recorder.add(
                        case, check.__name__, response.status_code, failure.title,
                        failure.message, answer,
                    )  # fmt: skip

    def execute(self, case: Case) -> None:
        response = self.call(case)
        if response is not None:
            self.validate(case, response)


def _job(n: int, pa1: float, **meta: Any) -> dict[str, Any]:
    return {
        "measurements": [
            {"metric": "demo.PA1", "value": pa1, "unit": "mmag"},
            {"metric": "demo.AM1", "value": 10.0 + (n % 3) * 0.1, "unit": "marcsec"},
            {"metric": "demo.COMP", "value": 90.0 + (n % 2) * 0.2, "unit": "%"},
        ],
        "meta": {
            "dataset": "HSC-RC2",
            "filter_name": "r",
            "branch": "main",
            "commit": f"{n:040x}",
            "time": f"2026-01-01T{n // 60:02d}:{n % 60:02d}:00Z",
            **meta,
        },
    }


def _seed(client: requests.Session, auth: dict[str, str]) -> None:
    """Definitions, requirements, a main history with a step (a change point) and a PR build."""

    def ok(response: requests.Response) -> None:
        assert response.status_code < 300, response.text

    ok(client.post("/api/v1/definitions", json={"files": DEMO_FILES}, headers=auth))
    ok(client.post("/api/v1/requirements", json={"text": REQUIREMENTS_YAML}, headers=auth))
    for n in range(24):
        ok(client.post("/api/v1/jobs", json=_job(n, 4.0 + (2.0 if n >= 12 else 0.0)), headers=auth))
    pr_meta = {"branch": "tickets/DM-1", "pr": 7, "base_commit": f"{20:040x}"}
    ok(client.post("/api/v1/jobs", json=_job(30, 9.0, **pr_meta), headers=auth))
    deadline = time.monotonic() + 30
    health: dict[str, Any] = {}
    while time.monotonic() < deadline:  # change detection runs in the background
        health = client.get("/healthz").json()
        if health["detection_pending"] == 0 and health["outbox_pending"] == 0:
            changes = client.get("/api/v1/regressions", params={"status": "all"}).json()
            if changes["changes"]:
                return
        time.sleep(0.2)
    pytest.fail(f"seeding: no change point detected in 30 s ({health})")


@pytest.fixture(scope="module")
def fuzz(
    postgres_url: str, influxdb_server: InfluxDBServer, request: pytest.FixtureRequest
) -> Iterator[FuzzRun]:
    _in_thread(lambda: asyncio.run(truncate_all(postgres_url)))
    settings = Settings(
        database_url=postgres_url,
        influxdb_url=influxdb_server.url,
        influxdb_database=f"fuzz_{uuid.uuid4().hex[:12]}",
        series_write_wait_s=2.0,
        outbox_retry_initial_s=0.05,
        outbox_retry_max_s=0.2,
        influxdb_timeout_s=2.0,
        detect_debounce_s=0.1,
    )

    async def new_token() -> str:
        # A context of its own on the same database: the app's lives in schemathesis's loop.
        context = await ProcessContext.open(settings, background=False)
        try:
            plain, _ = await context.tokens().create(scopes=SCOPES, name="fuzz")
            return plain
        finally:
            await context.close()

    token = _in_thread(lambda: asyncio.run(new_token()))
    app = create_app(settings)
    auth = {"Authorization": f"Bearer {token}"}
    recorder = Recorder(authorization=auth["Authorization"])
    server_errors = ServerErrorLog()
    processors = structlog.get_config()["processors"]
    structlog.configure(processors=[server_errors, *processors])
    try:
        # The first request starts the app's lifespan in schemathesis's event loop thread.
        with asgi.get_client(app) as client:  # type: ignore[arg-type]
            spec, scheme = with_bearer_scheme(client.get("/openapi.json").json())
            recorder.untyped = untyped_responses(spec)
            _seed(client, auth)
        config = schemathesis.Config.from_dict(fuzz_config(scheme, token))
        schema = schemathesis.openapi.from_dict(spec, config=config)
        schema.app = app  # what from_asgi sets: cases are sent to the app in process
        labels = [op.ok().label for op in schema.get_all_operations() if isinstance(op, Ok)]
        assert sorted(labels) == sorted(OPERATIONS)
        checks: list[CheckFunction] = [getattr(schemathesis.checks, n) for n in CHECK_NAMES]
        request.config.pluginmanager.register(SummaryPlugin(recorder), "specwatch-fuzz-summary")
        yield FuzzRun(schema, recorder, checks, server_errors)
    finally:
        asgi.shutdown_lifespans()
        structlog.configure(processors=processors)
        if REPORT:
            recorder.write(REPORT)


def fuzz_config(scheme: str, token: str) -> dict[str, Any]:
    """schemathesis's configuration (what ``schemathesis.toml`` would say)."""
    generation: dict[str, Any] = {"mode": "all", "max-examples": EXAMPLES, "database": "none"}
    config: dict[str, Any] = {
        "seed": SEED,
        "generation": generation,
        "phases": {"stateful": {"max-steps": STATEFUL_STEPS}},
        "auth": {"openapi": {scheme: {"bearer": token}}},
        # These bodies carry content no JSON schema can check (a job's metric must be defined
        # and its unit convert; YAML and CSV must say metrics, specs, requirements): a body
        # valid by the schema may still be a 422 naming the problem. Everywhere else, valid
        # data must be accepted.
        "operations": [
            {
                "include-path": path,
                "include-method": "POST",
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": [*POSITIVE_EXPECTED, "422"]}
                },
            }
            for path in SEMANTIC_BODIES
        ],
    }
    if DICTIONARY_PROBABILITY > 0:
        config["dictionaries"] = {name: {"values": v} for name, v in DICTIONARIES.items()}
        config["parameters"] = {
            parameter: {"dictionary": name, "probability": DICTIONARY_PROBABILITY}
            for name, parameters in BINDINGS.items()
            for parameter in parameters
        }
    return config


def _settings(max_examples: int) -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
        print_blob=False,
    )


def _seed_of(*parts: str) -> int:
    return zlib.crc32(":".join((str(SEED), *parts)).encode())


@dataclass
class _Budget:
    """The time left for the operations not fuzzed yet."""

    deadline: float | None = None
    left: int = 0

    def share(self) -> float:
        if self.deadline is None:
            self.deadline, self.left = time.monotonic() + BUDGET_S, len(OPERATIONS)
        share = max(0.0, self.deadline - time.monotonic()) / max(1, self.left)
        self.left -= 1
        return share


BUDGET = _Budget()


def _fuzz_operation(run: FuzzRun, operation: Operation) -> None:
    share = BUDGET.share()
    started = time.monotonic()
    cases = 0
    if COVERAGE:  # what schemathesis's pytest plugin and engine run: auth and overrides applied
        coverage = CoverageGenerator(
            operation=operation,
            generation_modes=MODES,
            generation_config=run.schema.config.generation_for(
                operation=operation, phase="coverage"
            ),
            auth_storage=None,
            override=overrides.with_config_headers(run.schema.config, operation=operation),
            feedback=FeedbackSources(),
        )
        for case in coverage:
            run.execute(case)
            cases += 1
    per_case_s = (time.monotonic() - started) / cases if cases else 0.02
    left_s = max(0.0, share - (time.monotonic() - started))
    examples = max(MIN_EXAMPLES, min(EXAMPLES, int(left_s / len(MODES) / max(per_case_s, 1e-3))))
    run.recorder.examples[operation.label] = examples
    for mode in MODES:

        @hypothesis.seed(_seed_of(operation.label, mode.value))
        @_settings(examples)
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case: Case) -> None:
            run.execute(case)

        try:
            fuzz()
        except hypothesis.errors.Unsatisfiable:
            # No input of this mode exists (negative data for an operation without parameters).
            assert mode is GenerationMode.NEGATIVE, operation.label


def _report(findings: list[Finding]) -> str:
    return f"{len(findings)} distinct failure(s):\n" + "\n".join(f.line() for f in findings)


@pytest.mark.parametrize("label", OPERATIONS)
def test_operation(fuzz: FuzzRun, label: str) -> None:
    """Coverage cases and positive + negative examples of one operation pass every check."""
    operation = fuzz.schema.find_operation_by_label(label)
    assert operation is not None
    _fuzz_operation(fuzz, operation)
    findings = fuzz.recorder.of(label)
    assert not findings, _report(findings)


def test_stateful(fuzz: FuzzRun) -> None:
    """Scenarios that follow the links schemathesis infers (job ids, metric names, change ids)."""
    if STATEFUL_SCENARIOS == 0:
        pytest.skip("SPECWATCH_FUZZ_STATEFUL=0")
    machine = fuzz.schema.as_state_machine()
    checks = [*fuzz.checks, *(getattr(schemathesis.checks, name) for name in STATEFUL_CHECKS)]
    before = set(fuzz.recorder.findings)
    steps_before = fuzz.recorder.stateful_steps

    class Workflow(machine):  # type: ignore[valid-type, misc]
        def call(self, case: Case, **kwargs: Any) -> Response:
            fuzz.recorder.stateful_steps += 1
            response = fuzz.call(case)
            hypothesis.assume(response is not None)  # an app exception is recorded; stop here
            assert response is not None
            return response

        def validate_response(
            self,
            response: Response,
            case: Case,
            additional_checks: list[CheckFunction] | None = None,
            **kwargs: Any,
        ) -> None:
            fuzz.validate(case, response, checks=checks, recorder=self.recorder)

    settings = hypothesis.settings(
        _settings(STATEFUL_SCENARIOS), stateful_step_count=STATEFUL_STEPS, derandomize=True
    )
    # The scenarios change the database they read their links from, so a scenario that
    # Hypothesis replays may find a link gone ("inconsistent data generation"): an artefact of
    # fuzzing a stateful service, not an answer of it. Every response was checked when it
    # came; those stand.
    with contextlib.suppress(hypothesis.errors.FlakyStrategyDefinition):
        Workflow.run(settings=settings)
    assert fuzz.recorder.stateful_steps > steps_before
    new = [f for key, f in sorted(fuzz.recorder.findings.items()) if key not in before]
    assert not new, _report(new)
