"""The one settings object: every ``SPECWATCH_*`` environment variable, typed, with defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from specwatch.metrics.limits import DocumentLimits

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./specwatch.sqlite3"


def normalize_database_url(url: str) -> str:
    """An async SQLAlchemy URL: plain ``sqlite://`` and ``postgresql://`` get async drivers."""
    for plain, driver in (
        ("sqlite://", "sqlite+aiosqlite://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


class Settings(BaseSettings):
    """Configuration of the API server, the CLI and the background tasks."""

    # An empty variable is unset (compose's `${VAR:-}`), never an empty URL or token.
    model_config = SettingsConfigDict(
        env_prefix="SPECWATCH_", extra="ignore", env_ignore_empty=True
    )

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL of the metadata database: a SQLite file by default, "
        "postgresql://… (asyncpg) or postgresql+psycopg://… in production.",
    )
    influxdb_url: str | None = Field(
        None, description="InfluxDB base URL (v1 HTTP API); unset: the embedded series store."
    )
    influxdb_database: str = Field("specwatch", description="InfluxDB database (v1) / bucket.")
    influxdb_token: SecretStr | None = Field(
        None, description="InfluxDB 2.x/3.x token, sent as 'Authorization: Token …'."
    )
    influxdb_username: str | None = Field(None, description="InfluxDB 1.x user name.")
    influxdb_password: SecretStr | None = Field(None, description="InfluxDB 1.x password.")
    influxdb_timeout_s: float = Field(10.0, description="Timeout of one InfluxDB request.")
    max_job_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="Largest accepted job body (POST /api/v1/jobs); refused with 413 (the "
        "declared Content-Length at once, else as it streams).",
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        description="Largest accepted body of every other route (definitions, requirements, "
        "triage); refused with 413 before it is read.",
    )
    max_json_depth: int = Field(
        64,
        ge=4,
        le=200,
        description="Deepest nesting of objects and lists in a JSON body or a YAML file.",
    )
    max_string_chars: int = Field(
        1_000_000, ge=1000, description="Longest string (value or key) in a JSON body or YAML."
    )
    max_yaml_nodes: int = Field(
        200_000,
        ge=1000,
        description="Most YAML nodes in one request, aliases counted as what they expand to.",
    )
    max_param_chars: int = Field(
        1024, ge=64, description="Longest query or path parameter value (characters)."
    )
    read_token_required: bool = Field(
        False,
        description="Require a read:* token for reads too (the OpenAPI document then says so).",
    )
    public_url: str | None = Field(
        None, description="Base URL of the API as clients see it (for the 'url' of resources)."
    )
    series_write_wait_s: float = Field(
        2.0,
        description="How long an ingest waits for its points to reach the series store before "
        "answering anyway (the outbox delivers them later).",
    )
    outbox_retry_initial_s: float = Field(0.5, description="First back-off of outbox delivery.")
    outbox_retry_max_s: float = Field(60.0, description="Longest back-off of outbox delivery.")
    outbox_batch_jobs: int = Field(200, description="Most jobs delivered in one series write.")
    detect_on_ingest: bool = Field(
        True, description="Look for changes in the series that receive points (background)."
    )
    detect_debounce_s: float = Field(
        5.0, description="Seconds a touched series waits, so a burst costs one detection."
    )
    slack_webhook_url: SecretStr | None = Field(
        None,
        description="Slack incoming webhook URL: alerts go to Slack when set (a secret: "
        "whoever has it can post to the channel).",
    )
    alert_rules: Path | None = Field(
        None,
        description="YAML file of alert rules (see Alerts); unset: the default rules (spec "
        "level lost on main, confirmed regression, regressing pull request, metric not "
        "reported).",
    )
    alert_webhook_url: str | None = Field(
        None, description="Generic webhook that receives every alert as JSON."
    )
    alert_webhook_secret: SecretStr | None = Field(
        None,
        description="Key of the webhook's HMAC-SHA256 signature (X-Specwatch-Signature-256).",
    )
    github_token: SecretStr | None = Field(
        None,
        description="GitHub token (statuses and pull-request comments write access): pull "
        "requests get a commit status and one summary comment, and `rerun` alert rules dispatch "
        "reruns (repository_dispatch) with it.",
    )
    github_api_url: str = Field(
        "https://api.github.com", description="GitHub API base URL (GitHub Enterprise: …/api/v3)."
    )
    alert_delivery: bool = Field(
        True,
        description="Send alert notifications from this process (`specwatch serve`); false "
        "when `specwatch worker` processes do it.",
    )
    alert_group_wait_s: float = Field(
        1.0,
        ge=0,
        le=600,
        description="How long a new alert waits for more items of the same build before it "
        "is sent (one message per build, not per metric).",
    )
    alert_retry_initial_s: float = Field(1.0, gt=0, description="First back-off of a failed send.")
    alert_retry_max_s: float = Field(300.0, gt=0, description="Longest back-off of a send.")
    alert_lease_s: float = Field(
        30.0,
        gt=0,
        description="How long a worker holds a notification it is sending; a crashed worker's "
        "are sent by another after this.",
    )
    background: Literal["inline", "off"] = Field(
        "inline",
        description="'inline': this process also runs the background work (series delivery "
        "from the outbox, change detection, alert delivery); 'off': it only serves, and "
        "`specwatch worker` processes do the background work.",
    )
    root_path: str = Field(
        "",
        description="Path prefix under which a proxy serves Specwatch (e.g. '/specwatch'); "
        "unset: the path of SPECWATCH_PUBLIC_URL, if any.",
    )
    ready_max_outbox: int = Field(
        10_000,
        ge=1,
        description="GET /readyz answers 503 while more jobs than this wait for the series store.",
    )
    database_pool_size: int = Field(10, description="Connections per process (PostgreSQL).")
    access_log: bool = Field(
        True,
        description="Log one line per request (method, path, status, duration, client, "
        "request id).",
    )
    log_format: Literal["console", "json"] = Field(
        "console",
        description="Log renderer: `console` for a terminal; `json` in production, one object "
        "per line with tracebacks as one string.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Least severe level of the messages logged."
    )

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return normalize_database_url(value)

    @property
    def effective_root_path(self) -> str:
        """The proxy's path prefix without a trailing slash ('' at the root): the setting, else
        the path of the public URL."""
        path = self.root_path or (urlsplit(self.public_url).path if self.public_url else "")
        return "/" + path.strip("/") if path.strip("/") else ""

    @property
    def document_limits(self) -> DocumentLimits:
        return DocumentLimits(self.max_json_depth, self.max_string_chars, self.max_yaml_nodes)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
