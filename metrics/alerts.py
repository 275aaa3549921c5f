"""Alerts: the rules that raise them and the records notifiers render.  Pure: no I/O, no clock.

A **rule** says what is worth telling people (its ``kind``), about which series (scope:
packages, metrics, tags, datasets, branches), to which channels, and how patient to be
(``confirm`` builds, ``cooldown``).  Four kinds:

- ``spec_level``: on a branch, a metric lost a specification level it met (design → minimum),
  or fails its minimum, on ``confirm`` builds in a row; it resolves after ``confirm`` builds
  back at the level (hysteresis: one build either side of a threshold changes nothing).
- ``regression``: a change point for the worse, once ``confirm`` builds follow it (default:
  as soon as the detector reports it, which already waits 3–4 builds); it resolves when the
  change is accepted or no longer found.
- ``pr_regression``: a pull-request build regresses a metric against its baseline (outside
  the baseline's noise); it resolves when a later build of the pull request no longer does.
- ``stale``: a metric reported before is missing from the last ``builds`` builds of its series.

An **alert** groups the items (one per series) a rule found in one build, so a build that moves
twelve metrics makes one message.  An item's de-duplication key is the rule and its series (and,
for a regression, its change): a key already open raises nothing new, and a key resolved less
than ``cooldown`` ago stays quiet.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any, Literal
from urllib.parse import quote, urlencode

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
)

from specwatch.exceptions import DefinitionError

from .limits import DocumentLimits, YamlBudget, check_document, check_text, check_yaml
from .model import Level


class AlertKind(enum.StrEnum):
    SPEC_LEVEL = "spec_level"
    REGRESSION = "regression"
    PR_REGRESSION = "pr_regression"
    STALE = "stale"


class AlertState(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    INVALID = "invalid"
    RESOLVED = "resolved"

    @property
    def active(self) -> bool:
        """Open or acknowledged: its items still de-duplicate and may still resolve."""
        return self in (AlertState.OPEN, AlertState.ACKNOWLEDGED)


class NotificationEvent(enum.StrEnum):
    OPENED = "opened"  # a new alert
    UPDATED = "updated"  # items added to an alert already sent
    RESOLVED = "resolved"  # every item back to normal (or the alert resolved by a person)
    PR_SUMMARY = "pr_summary"  # GitHub: the comparison of a pull-request build (status, comment)
    RERUN = "rerun"  # GitHub: ask CI to rerun the build of a suspected change
    TEST = "test"  # ``specwatch alerts test``


Channel = Literal["slack", "webhook", "github"]
CHANNELS: tuple[Channel, ...] = ("slack", "webhook", "github")

_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(s|m|h|d)?\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any) -> float:
    """Seconds of ``30``, ``"90s"``, ``"15m"``, ``"6h"`` or ``"2d"``.  Raises ``ValueError``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text like 15m, 6h, 2d")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration (like 90s, 15m, 6h, 2d)")
        seconds = float(match.group(1)) * _SECONDS[match.group(2)]
    if not 0 <= seconds <= 366 * 86400:
        raise ValueError("a duration must be between 0 and 366 days")
    return seconds


class _RuleModel(BaseModel):
    """One rule as written in the rules file (validated, then frozen into ``Rule``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
    kind: AlertKind
    description: str = Field("", max_length=1000)
    enabled: StrictBool = True
    packages: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()  # full names or fnmatch patterns (validate_drp.PA*)
    tags: tuple[str, ...] = ()  # a metric with any of these tags
    datasets: tuple[str, ...] = ()
    branches: tuple[str, ...] | None = None  # None: main (series kinds), or any PR target
    channels: tuple[Channel, ...] = CHANNELS
    confirm: StrictInt | None = Field(None, ge=1, le=100)
    cooldown: float = 3600.0
    levels: tuple[Level, ...] = (Level.DESIGN, Level.MINIMUM)
    builds: StrictInt = Field(3, ge=1, le=100)  # stale: builds without the metric
    include_missing: StrictBool = False  # pr_regression: a metric the PR build stopped reporting
    rerun: StrictBool = False  # regression: ask CI to rerun a suspected change's build first

    @field_validator("cooldown", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("packages", "metrics", "tags", "datasets", "branches", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if isinstance(value, str):
            return (value,)
        return value


class _RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: tuple[_RuleModel, ...] = ()
    monitor_only: tuple[str, ...] = ()  # metrics (names or patterns) that never alert
    defaults: Mapping[str, Any] = Field(default_factory=dict)  # fields every rule starts from


@dataclass(frozen=True, slots=True)
class Rule:
    """One alert rule.  Empty scope lists match everything."""

    name: str
    kind: AlertKind
    description: str = ""
    enabled: bool = True
    packages: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    branches: tuple[str, ...] | None = None
    channels: tuple[str, ...] = CHANNELS
    confirm: int | None = None
    cooldown_s: float = 3600.0
    levels: tuple[Level, ...] = (Level.DESIGN, Level.MINIMUM)
    builds: int = 3
    include_missing: bool = False
    rerun: bool = False

    def matches_metric(self, metric: str, tags: Sequence[str] = ()) -> bool:
        """Whether the rule's package, metric and tag scope holds ``metric``."""
        package = metric.partition(".")[0]
        if self.packages and package not in self.packages:
            return False
        if self.metrics and not any(fnmatchcase(metric, p) for p in self.metrics):
            return False
        return not self.tags or bool(set(self.tags) & set(tags))

    def matches_context(self, dataset: str | None, branch: str | None) -> bool:
        """Whether the rule watches this dataset and branch (for a PR: its target branch)."""
        if self.datasets and (dataset or "") not in self.datasets:
            return False
        branches = self.branches if self.branches is not None else ("main",)
        return not branches or (branch or "") in branches or "*" in branches

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind.value,
            "description": self.description,
            "enabled": self.enabled,
            "packages": list(self.packages),
            "metrics": list(self.metrics),
            "tags": list(self.tags),
            "datasets": list(self.datasets),
            "branches": list(self.branches) if self.branches is not None else ["main"],
            "channels": list(self.channels),
            "confirm": self.confirm,
            "cooldown_s": self.cooldown_s,
            "levels": [level.value for level in self.levels],
            "builds": self.builds,
            "include_missing": self.include_missing,
            "rerun": self.rerun,
        }


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...]
    monitor_only: tuple[str, ...] = ()
    source: str = "default rules"

    def monitored_only(self, metric: str) -> bool:
        return any(fnmatchcase(metric, pattern) for pattern in self.monitor_only)

    def of_kind(self, kind: AlertKind) -> list[Rule]:
        return [rule for rule in self.rules if rule.kind == kind and rule.enabled]

    def get(self, name: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.name == name), None)


def default_rules() -> RuleSet:
    """What runs when no rules file is given: the four kinds, on main, to every channel."""
    return RuleSet(
        (
            Rule(
                "spec-level",
                AlertKind.SPEC_LEVEL,
                "A metric on main lost a specification level (design → minimum) or fails "
                "its minimum, on 2 builds in a row.",
                confirm=2,
            ),
            Rule(
                "regression",
                AlertKind.REGRESSION,
                "A confirmed change for the worse in a metric's history on main.",
            ),
            Rule(
                "pr-regression",
                AlertKind.PR_REGRESSION,
                "A pull-request build outside the noise of its baseline on main, for the worse.",
            ),
            Rule(
                "stale",
                AlertKind.STALE,
                "A metric main used to report is missing from its last 3 builds.",
                builds=3,
            ),
        )
    )


def _rule(model: _RuleModel) -> Rule:
    return Rule(
        name=model.name,
        kind=model.kind,
        description=model.description,
        enabled=model.enabled,
        packages=model.packages,
        metrics=model.metrics,
        tags=model.tags,
        datasets=model.datasets,
        branches=model.branches,
        channels=tuple(dict.fromkeys(model.channels)),
        confirm=model.confirm,
        cooldown_s=model.cooldown,
        levels=tuple(dict.fromkeys(model.levels)),
        builds=model.builds,
        include_missing=model.include_missing,
        rerun=model.rerun,
    )


def parse_rules(
    text: str, *, source: str = "alert rules", limits: DocumentLimits | None = None
) -> RuleSet:
    """Rules from YAML: ``rules:`` (a list), optional ``defaults:`` and ``monitor_only:``.

    Raises:
        DefinitionError: naming the file, the rule and the field at fault.
    """
    limits = limits or DocumentLimits()
    check_text(text, len(text), ["body", "text"], source)
    check_yaml(text, YamlBudget(limits), source)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise DefinitionError(f"{source}: not valid YAML: {error}") from error
    check_document(document, limits, ["body", "text"])
    if document is None:
        document = {}
    if isinstance(document, list):
        document = {"rules": document}
    if not isinstance(document, Mapping):
        raise DefinitionError(f"{source}: expected a mapping with a 'rules:' list")
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise DefinitionError(f"{source}: 'defaults' must be a mapping of rule fields")
    rules = document.get("rules")
    if rules is not None and not isinstance(rules, list):
        raise DefinitionError(f"{source}: 'rules' must be a list")
    for index, item in enumerate(rules or []):
        if not isinstance(item, Mapping):
            raise DefinitionError(f"{source}: rules[{index}]: a rule is a mapping (name, kind, …)")
    merged = dict(document)
    merged["rules"] = [
        {**defaults, **item} if isinstance(item, Mapping) else item for item in rules or []
    ]
    try:
        parsed = _RulesFile.model_validate(merged)
    except ValidationError as error:
        first = error.errors()[0]
        where = _location(first["loc"], merged)
        raise DefinitionError(f"{source}: {where}: {first['msg']}") from None
    seen: set[str] = set()
    for model in parsed.rules:
        if model.name in seen:
            raise DefinitionError(f"{source}: rule {model.name!r} is defined twice")
        seen.add(model.name)
    return RuleSet(tuple(_rule(m) for m in parsed.rules), parsed.monitor_only, source)


def _location(loc: Sequence[int | str], document: Mapping[str, Any]) -> str:
    """``rule 'x' (rules[2]).confirm`` for a pydantic error location."""
    parts = [str(p) for p in loc]
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        item = document["rules"][loc[1]]
        name = item.get("name") if isinstance(item, Mapping) else None
        head = f"rule {name!r} (rules[{loc[1]}])" if name else f"rules[{loc[1]}]"
        return ".".join([head, *parts[2:]])
    return ".".join(parts) or "the file"


# --- the records notifiers render -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Culprit:
    """A package whose version or commit changed across a change (a culprit candidate)."""

    name: str
    change: str  # "changed" | "added" | "removed"
    version_before: str | None = None
    version_after: str | None = None
    sha_before: str | None = None
    sha_after: str | None = None
    url: str | None = None  # the commit, or the compare view of before...after


@dataclass(frozen=True, slots=True)
class AlertItem:
    """One series an alert is about: what changed, by how much, and where.

    ``value``/``threshold`` are in ``unit`` (the metric's).  ``before``/``after``/``delta``
    describe a change (regression) or the PR against its baseline mean; ``level_before`` and
    ``level_after`` a spec level lost (``None``: below minimum).
    """

    dedup_key: str
    metric: str
    unit: str = ""
    dataset: str | None = None
    filter: str | None = None
    instrument: str | None = None
    branch: str | None = None
    pr: int | None = None
    state: str = "open"  # "open" | "resolved"
    value: float | None = None
    threshold: float | None = None
    operator: str | None = None
    spec: str | None = None
    requirements: tuple[str, ...] = ()
    level_before: str | None = None
    level_after: str | None = None
    before: float | None = None
    after: float | None = None
    delta: float | None = None
    delta_pct: float | None = None
    delta_sigma: float | None = None
    sigma: float | None = None
    confirming_builds: int | None = None  # builds after a change that agree with it
    # "high": past the detector's full test (``Tuning.confirm`` builds, or a rerun agreed; for
    # a PR, 5 σ of a baseline of 5 builds or more); "moderate": its early test only.
    confidence: str | None = None
    builds_missing: int | None = None  # stale: builds in a row without the metric
    commit_before: str | None = None
    commit_after: str | None = None
    compare_url: str | None = None
    culprits: tuple[Culprit, ...] = ()
    change_id: int | None = None
    job_id: int | None = None
    summary: str = ""  # one line, plain text (what the message says about this series)


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert: a rule's finding on one build (or pull request), and its items."""

    id: int
    rule: str
    kind: AlertKind
    state: AlertState
    title: str
    created_at: datetime
    updated_at: datetime
    branch: str | None = None
    pr: int | None = None
    commit: str | None = None
    job_id: int | None = None  # the build that raised it
    repository: str | None = None
    ci_url: str | None = None
    pr_url: str | None = None
    silenced: bool = False
    note: str = ""
    resolved_at: datetime | None = None
    items: tuple[AlertItem, ...] = ()

    @property
    def open_items(self) -> tuple[AlertItem, ...]:
        return tuple(item for item in self.items if item.state == "open")


@dataclass(frozen=True, slots=True)
class PullRequestSummary:
    """A pull-request build's comparison with its baseline, for a commit status and a comment."""

    repository: str  # https://github.com/owner/name
    pr: int
    head_sha: str
    job_id: int
    regressed: int
    improved: int
    missing: int
    compared: int
    baseline: str  # how the baseline was chosen
    worst: tuple[AlertItem, ...] = ()  # the regressed (and missing) metrics, worst first
    pr_url: str | None = None


@dataclass(frozen=True, slots=True)
class Links:
    """Where a message points: the dashboard (None without ``SPECWATCH_PUBLIC_URL``)."""

    dashboard: str | None = None  # base, e.g. https://specwatch.example.org/dashboard/

    def metric(self, item: AlertItem) -> str | None:
        if self.dashboard is None:
            return None
        query = {
            k: v
            for k, v in (
                ("dataset", item.dataset),
                ("filter", item.filter),
                ("instrument", item.instrument),
                ("branch", item.branch if item.pr is None else None),
                ("change", item.change_id),
            )
            if v not in (None, "")
        }
        suffix = f"?{urlencode(query)}" if query else ""
        return f"{self.dashboard}metric/{quote(item.metric, safe='')}{suffix}"

    def pull_request(self, number: int) -> str | None:
        return f"{self.dashboard}pr/{number}" if self.dashboard else None

    def job(self, job_id: int) -> str | None:
        return f"{self.dashboard}job/{job_id}" if self.dashboard else None

    def alerts(self) -> str | None:
        return f"{self.dashboard}regressions" if self.dashboard else None


@dataclass(frozen=True, slots=True)
class Message:
    """What a notifier sends: an alert event, or a pull request's summary (GitHub)."""

    event: NotificationEvent
    delivery_id: str  # stable across retries: receivers may de-duplicate on it
    alert: Alert | None = None
    summary: PullRequestSummary | None = None
    links: Links = field(default_factory=Links)


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """Which alerts a list shows."""

    state: str | None = None  # None: any; "active": open or acknowledged
    rule: str | None = None
    kind: str | None = None
    branch: str | None = None
    pr: int | None = None
    metric: str | None = None


@dataclass(frozen=True, slots=True)
class Silence:
    """While it lasts, alerts it matches are recorded but not sent.  ``None`` matches any;
    ``metric`` may be an fnmatch pattern."""

    id: int
    ends_at: datetime
    created_at: datetime
    rule: str | None = None
    metric: str | None = None
    dataset: str | None = None
    branch: str | None = None
    pr: int | None = None
    reason: str = ""
    created_by: str = ""

    def matches(self, rule: str, item: AlertItem) -> bool:
        return (
            (self.rule is None or self.rule == rule)
            and (self.metric is None or fnmatchcase(item.metric, self.metric))
            and (self.dataset is None or self.dataset == (item.dataset or ""))
            and (self.branch is None or self.branch == (item.branch or ""))
            and (self.pr is None or self.pr == item.pr)
        )


def item_evidence(item: AlertItem) -> dict[str, Any]:
    """An item as JSON (what the store keeps), without its key and state."""
    data = {
        name: getattr(item, name)
        for name in AlertItem.__dataclass_fields__
        if name not in ("dedup_key", "state", "culprits", "requirements")
    }
    data["requirements"] = list(item.requirements)
    data["culprits"] = [
        {name: getattr(c, name) for name in Culprit.__dataclass_fields__} for c in item.culprits
    ]
    return data


def item_from_evidence(dedup_key: str, state: str, data: Mapping[str, Any]) -> AlertItem:
    fields = {k: v for k, v in data.items() if k in AlertItem.__dataclass_fields__}
    fields["requirements"] = tuple(data.get("requirements") or ())
    fields["culprits"] = tuple(
        Culprit(**{k: v for k, v in c.items() if k in Culprit.__dataclass_fields__})
        for c in data.get("culprits") or ()
    )
    fields.pop("dedup_key", None)
    fields.pop("state", None)
    return AlertItem(dedup_key=dedup_key, state=state, **fields)
