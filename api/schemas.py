"""The response models of the API: what every route answers, as the OpenAPI document says.

Handlers build plain data (``views``) and send it with orjson; these models declare it, so the
document clients generate code from is true (the schemathesis test checks every response
against them).  Numbers that may be NaN or infinite in the store are ``null`` in JSON.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from specwatch.metrics.limits import (
    CI_CHARS,
    COMMIT_CHARS,
    INT32_MAX,
    LABEL_CHARS,
    METRIC_CHARS,
    URL_CHARS,
)

Number = float | None  # JSON has no NaN: a value that is not finite is null
NO_NUL = r"^[^\x00]*$"  # PostgreSQL stores no NUL character (the edge refuses them too)
Text = Annotated[str, Field(pattern=NO_NUL)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Request(BaseModel):
    """A request body: exactly its fields, of exactly their types (no 0 for false)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class DefinitionUpload(Request):
    """A verify_metrics tree: relative path -> YAML text."""

    files: dict[str, Text] = Field(
        description="e.g. {'metrics/validate_drp.yaml': '…', 'specs/validate_drp/PA1.yaml': '…'}",
        min_length=1,
        json_schema_extra={"propertyNames": {"pattern": NO_NUL}},  # the edge refuses NUL keys
    )
    retire: bool = Field(
        True, description="Retire the imported packages' specifications missing from the upload."
    )


class RequirementsUpload(Request):
    """A verification matrix (LDM-503 Appendix A style) as YAML or CSV text."""

    text: Text = Field(
        min_length=1, description="YAML list of {id, title, method, specs} or CSV with a header"
    )
    format: Literal["yaml", "csv"] = "yaml"


class TriageNote(Request):
    note: Text = Field("", max_length=2000, description="Why (shown beside the change)")


class Exclusion(Request):
    reason: Text = Field("", max_length=2000, description="Why the job's points are bad data")


class ErrorItem(Model):
    location: list[str | int] = Field(description="Where the bad input is, e.g. ['query', 'pr']")
    message: str
    type: str | None = None


class Problem(Model):
    """An RFC 9457 problem (``application/problem+json``)."""

    type: str = Field(examples=["urn:specwatch:problem:invalid_input"])
    title: str
    status: int
    detail: str = Field(description="What is wrong, for a person")
    instance: str = Field(description="The request path")
    code: str = Field(description="Stable, for a program: invalid_input, not_found, …")
    location: list[str | int] | None = None
    errors: list[ErrorItem] | None = None


class Health(Model):
    status: Literal["ok"]
    version: str
    series_store: str
    outbox_pending: int = Field(description="Jobs whose points wait for the series store")
    detection_pending: int = Field(description="Series waiting for change detection")
    alerts_unsent: int = Field(description="Alert notifications not delivered yet")


class ReadinessCheck(Model):
    ok: bool
    detail: str = Field(description="What was found, in one line")


class ReadinessChecks(Model):
    database: ReadinessCheck = Field(description="The schema is at the latest migration")
    series_store: ReadinessCheck = Field(description="The time-series store answers")
    outbox: ReadinessCheck = Field(
        description="At most SPECWATCH_READY_MAX_OUTBOX jobs wait for the series store"
    )


class Readiness(Model):
    """Every check passed (a failed one makes the answer a 503 problem naming it)."""

    status: Literal["ready"]
    checks: ReadinessChecks


class JobCreated(Model):
    id: int
    url: str
    created: bool = Field(description="False: the same job was already stored (200)")
    specs_ignored: int = Field(
        description="Specifications the job carried that were not registered: the token "
        "lacks write:definitions"
    )


class JobSummary(Model):
    id: int
    url: str
    time: str = Field(description="Build time, UTC")
    created_at: str
    n_measurements: int
    ci_name: str | None
    ci_id: str | None
    ci_url: str | None
    build_url: str | None
    repository: str | None
    commit: str | None
    branch: str | None
    pr: int | None
    pr_url: str | None
    base_commit: str | None
    dataset: str | None
    instrument: str | None
    filter: str | None
    status: int | None


class JobList(Model):
    jobs: list[JobSummary]
    next_cursor: str | None = Field(description="Give it as `cursor` for the next page")


class SentValue(Model):
    value: Number
    unit: str


class MeasurementView(Model):
    metric: str
    value: Number = Field(description="In the metric's unit; null when not finite")
    unit: str
    non_finite: Literal["NaN", "Infinity", "-Infinity"] | None = None
    identifier: str | None = None
    sent: SentValue | None = Field(None, description="What was sent, when it was converted")
    blob_refs: list[str] | None = None
    extras: dict[str, Any] | None = None
    notes: dict[str, Any] | None = None


class BlobView(Model):
    identifier: str
    name: str
    data: dict[str, Any]


class JobDetail(JobSummary):
    idempotency_key: str
    meta: dict[str, Any]
    packages: dict[str, Any]
    measurements: list[MeasurementView]
    blobs: list[BlobView]


class MetricView(Model):
    name: str = Field(examples=["validate_drp.PA1"])
    package: str
    metric: str
    unit: str
    description: str
    tags: list[str]
    reference: dict[str, Any]
    direction: Literal["lower", "higher", "none"]


class Threshold(Model):
    value: float
    unit: str
    operator: Literal["<", "<=", ">", ">=", "==", "!="]


class SpecView(Model):
    name: str
    metric: str
    threshold: Threshold
    level: Literal["minimum", "design", "stretch"] | None
    requirements: list[str]
    metadata_query: dict[str, Any]
    tags: list[str]
    description: str


class MetricList(Model):
    metrics: list[MetricView]
    next_cursor: str | None


class MetricDetail(MetricView):
    specs: list[SpecView]


class Series(Model):
    metric: str
    unit: str
    time: list[str]
    value: list[Number]
    job_id: list[int]
    commit: list[str | None]


class UpsertCounts(Model):
    added: int
    updated: int
    unchanged: int


Level = Literal["minimum", "design", "stretch"]


class VerdictView(Model):
    metric: str
    spec: str
    level: Level | None
    status: Literal["pass", "fail", "not_tested"]
    value: Number
    operator: str
    threshold: float
    unit: str
    measured: bool
    requirements: list[str]


class VerdictCounts(Model):
    pass_: int = Field(alias="pass")
    fail: int
    not_tested: int


class JobVerdicts(Model):
    job: JobSummary
    summary: VerdictCounts
    highest_level: dict[str, Level | None]
    verdicts: list[VerdictView]


class Build(Model):
    commit: str | None
    branch: str
    dataset: str | None
    time: str
    jobs: list[JobSummary]


class RequirementView(Model):
    id: str
    title: str
    method: str
    status: Number = Field(description="Fraction of design-level specs passing; null: none")
    levels: dict[str, VerdictCounts]
    specs: list[str]


class Requirements(Model):
    build: Build | None
    requirements: list[RequirementView]


class CompareSide(Model):
    ref: str
    jobs: list[JobSummary]


class CompareBase(CompareSide):
    branch: str
    how: list[str]


class LevelChange(Model):
    base: Level | None
    head: Level | None
    crossed: bool


class MetricComparison(Model):
    metric: str
    dataset: str | None
    filter: str | None
    verdict: Literal["regressed", "missing", "improved", "unchanged", "within_noise"]
    base_mean: Number
    base_std: Number
    base_n: int
    head_value: Number
    delta: Number
    delta_pct: Number
    delta_sigma: Number
    unit: str
    head_job: int | None
    level: LevelChange
    specs: list[VerdictView]


class Comparison(Model):
    head: CompareSide
    base: CompareBase
    metrics: list[MetricComparison]


class Commits(Model):
    before: str | None
    after: str | None


class Change(Model):
    id: int | None
    metric: str
    unit: str
    dataset: str | None
    filter: str | None
    instrument: str | None
    branch: str | None
    time: str | None
    job_id: int
    job_url: str
    previous_job_id: int | None
    commits: Commits
    before: Number
    after: Number
    delta: Number
    delta_pct: Number
    delta_sigma: Number
    sigma: Number
    verdict: Literal["worse", "better", "changed"]
    status: Literal["open", "accepted"]
    note: str


class ChangeList(Model):
    changes: list[Change]
    next_cursor: str | None


class ExclusionResult(Model):
    job_id: int
    excluded: bool
    series_redetected: int = Field(description="Series whose changes are detected again")


def _context_text(max_chars: int) -> dict[str, Any]:
    return {
        "anyOf": [
            {"type": "string", "maxLength": max_chars, "pattern": NO_NUL},
            {"type": "integer"},
            {"type": "null"},
        ]
    }


_OBJECT_OR_NULL: dict[str, Any] = {"type": ["object", "null"]}
# The lsst.verify job document, as ``metrics/jobs.py`` reads it (what it refuses, this refuses;
# what no schema can say, such as a unit that does not convert or an unknown metric, is a 422).
JOB_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["measurements"],
    "properties": {
        "measurements": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["metric"],
                "properties": {
                    "metric": {
                        "type": "string",
                        "pattern": r"^[^.\x00]+\.[^.\x00]+$",
                        "maxLength": METRIC_CHARS,
                        "examples": ["validate_drp.PA1"],
                    },
                    "value": {
                        "description": "A number; null or NaN/Infinity (bare or as a string) "
                        "when not finite",
                        "anyOf": [
                            {"type": "number"},
                            {"type": "null"},
                            {
                                "type": "string",
                                "enum": ["NaN", "nan", "Infinity", "infinity", "-Infinity"],
                            },
                        ],
                    },
                    "unit": {
                        "type": ["string", "null"],
                        "description": "An astropy unit; empty: the metric's",
                    },
                    "blob_refs": {"type": ["array", "null"], "items": {"type": "string"}},
                    "extras": _OBJECT_OR_NULL,
                    "notes": _OBJECT_OR_NULL,
                },
            },
        },
        "blobs": {
            "type": ["array", "null"],
            "items": {
                "type": "object",
                "properties": {"data": {"type": "object"}},
            },
        },
        "metrics": {"type": ["array", "object", "null"]},
        "specs": {
            "type": ["array", "object", "null"],
            "description": "Registered only with a write:definitions token (else ignored)",
        },
        "meta": {
            "type": ["object", "null"],
            "properties": {
                "env": _OBJECT_OR_NULL,
                "packages": {"type": ["object", "array", "null"]},
                "pr": {
                    "anyOf": [
                        {"type": "integer", "minimum": 1, "maximum": INT32_MAX},
                        {"type": "string", "pattern": r"^(#?[1-9][0-9]{0,8})?$"},
                        {"type": "null"},
                    ]
                },
                "time": {
                    "anyOf": [
                        {"type": "string", "format": "date-time"},
                        {"type": "number"},
                        {"type": "null"},
                        {"enum": ["", "unknown"], "description": "not given"},
                    ]
                },
                **{key: _context_text(LABEL_CHARS) for key in ("dataset", "branch")},
                **{key: _context_text(LABEL_CHARS) for key in ("instrument", "filter")},
                **{key: _context_text(COMMIT_CHARS) for key in ("commit", "base_commit")},
                **{key: _context_text(URL_CHARS) for key in ("repository", "build_url", "pr_url")},
                **{key: _context_text(CI_CHARS) for key in ("ci_name", "ci_id")},
            },
        },
    },
}


# --- alerts ---------------------------------------------------------------------------------

AlertKindName = Literal["spec_level", "regression", "pr_regression", "stale"]
AlertStateName = Literal["open", "acknowledged", "invalid", "resolved"]


class AlertCulprit(Model):
    name: str
    change: Literal["changed", "added", "removed"]
    version_before: str | None
    version_after: str | None
    sha_before: str | None
    sha_after: str | None
    url: str | None


class AlertItem(Model):
    dedup_key: str = Field(description="The rule and the series (and the change)")
    metric: str
    unit: str
    dataset: str | None
    filter: str | None
    instrument: str | None
    branch: str | None
    pr: int | None
    state: Literal["open", "resolved"]
    summary: str
    value: Number
    threshold: Number
    operator: str | None
    spec: str | None
    requirements: list[str]
    level_before: str | None
    level_after: str | None = Field(description="null: below the minimum")
    before: Number
    after: Number
    delta: Number
    delta_pct: Number
    delta_sigma: Number
    sigma: Number
    confirming_builds: int | None
    confidence: Literal["high", "moderate"] | None
    builds_missing: int | None
    commit_before: str | None
    commit_after: str | None
    compare_url: str | None
    culprits: list[AlertCulprit]
    change_id: int | None
    job_id: int | None
    dashboard_url: str | None


class Alert(Model):
    id: int
    url: str
    rule: str
    kind: AlertKindName
    state: AlertStateName
    title: str
    created_at: str
    updated_at: str
    resolved_at: str | None
    branch: str | None
    pr: int | None
    commit: str | None
    job_id: int | None
    repository: str | None
    ci_url: str | None
    pr_url: str | None
    silenced: bool
    note: str
    items: list[AlertItem]


class AlertNotification(Model):
    channel: str
    event: str
    created_at: str
    attempts: int
    delivered_at: str | None
    failed_at: str | None
    last_error: str | None


class AlertDetail(Alert):
    notifications: list[AlertNotification]


class AlertList(Model):
    alerts: list[Alert]
    next_cursor: str | None


class AlertDecision(Request):
    note: Text = Field("", max_length=2000, description="Why (kept with the alert)")


class AlertRule(Model):
    name: str
    kind: AlertKindName
    description: str
    enabled: bool
    packages: list[str]
    metrics: list[str]
    tags: list[str]
    datasets: list[str]
    branches: list[str]
    channels: list[str]
    confirm: int | None
    cooldown_s: float
    levels: list[str]
    builds: int
    include_missing: bool
    rerun: bool


class AlertRuleList(Model):
    source: str
    channels: dict[str, bool] = Field(description="Which channels are configured")
    monitor_only: list[str]
    rules: list[AlertRule]


class SilenceRequest(Request):
    """What to silence (at least one matcher) and until when."""

    rule: Text | None = Field(None, min_length=1, max_length=100)
    metric: Text | None = Field(
        None, min_length=1, max_length=METRIC_CHARS, description="Name or pattern"
    )
    dataset: Text | None = Field(None, min_length=1, max_length=LABEL_CHARS)
    branch: Text | None = Field(None, min_length=1, max_length=LABEL_CHARS)
    pr: int | None = Field(None, ge=1, le=INT32_MAX)
    duration: Text | None = Field(
        None, max_length=40, description="How long: 90m, 6h, 2d (or ends_at)"
    )
    ends_at: Annotated[str | None, Field(max_length=40)] = Field(
        None, description="RFC 3339 end (or duration)"
    )
    reason: Text = Field("", max_length=2000)


class Silence(Model):
    id: int
    rule: str | None
    metric: str | None
    dataset: str | None
    branch: str | None
    pr: int | None
    reason: str
    created_by: str
    created_at: str
    ends_at: str
    active: bool


class SilenceList(Model):
    silences: list[Silence]
