"""Alert rules as written in a rules file, and what a rule or a silence matches (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from specwatch.exceptions import DefinitionError, InvalidInputError
from specwatch.metrics.alerts import (
    CHANNELS,
    AlertItem,
    AlertKind,
    Rule,
    RuleSet,
    Silence,
    default_rules,
    parse_duration,
    parse_rules,
)
from specwatch.metrics.model import Level

SOURCE = "alerts.yaml"
NOW = datetime(2026, 8, 1, tzinfo=UTC)


def refusal(text: str) -> str:
    """The message ``parse_rules`` refuses ``text`` with."""
    with pytest.raises(DefinitionError) as raised:
        parse_rules(text, source=SOURCE)
    return str(raised.value)


# --- parse_rules: what it accepts ------------------------------------------------------------


def test_defaults_are_merged_into_every_rule_and_a_rule_overrides_them() -> None:
    rules = parse_rules(
        """
defaults:
  channels: [slack]
  cooldown: 15m
  datasets: HSC-RC2
rules:
  - name: regression
    kind: regression
    metrics: ["validate_drp.PA*"]
  - name: quiet-stale
    kind: stale
    cooldown: 0
    builds: 5
    channels: [webhook, webhook]
monitor_only: ["ap_pipe.*", "validate_drp.TE3"]
""",
        source=SOURCE,
    )
    assert rules.source == SOURCE
    assert rules.monitor_only == ("ap_pipe.*", "validate_drp.TE3")
    regression, stale = rules.rules
    assert regression == Rule(
        "regression",
        AlertKind.REGRESSION,
        metrics=("validate_drp.PA*",),
        datasets=("HSC-RC2",),
        channels=("slack",),
        cooldown_s=900.0,
    )
    assert stale == Rule(
        "quiet-stale",
        AlertKind.STALE,
        datasets=("HSC-RC2",),
        channels=("webhook",),  # listed twice, kept once
        cooldown_s=0.0,
        builds=5,
    )
    assert rules.get("quiet-stale") is stale and rules.get("nope") is None


def test_a_rule_without_overrides_takes_the_documented_defaults() -> None:
    (rule,) = parse_rules("rules:\n  - {name: levels, kind: spec_level}\n").rules
    assert rule == Rule("levels", AlertKind.SPEC_LEVEL)
    assert rule.channels == CHANNELS == ("slack", "webhook", "github")
    assert (rule.confirm, rule.cooldown_s, rule.builds, rule.branches) == (None, 3600.0, 3, None)
    assert rule.levels == (Level.DESIGN, Level.MINIMUM)
    assert rule.as_dict()["branches"] == ["main"]


def test_a_list_at_the_top_level_is_the_rules() -> None:
    rules = parse_rules("- {name: a, kind: stale}\n- {name: b, kind: pr_regression}\n")
    assert [(r.name, r.kind) for r in rules.rules] == [
        ("a", AlertKind.STALE),
        ("b", AlertKind.PR_REGRESSION),
    ]
    assert rules.monitor_only == ()


@pytest.mark.parametrize("text", ["", "# no rules yet\n", "rules:\n", "rules: []\n"])
def test_an_empty_file_has_no_rules(text: str) -> None:
    assert parse_rules(text, source=SOURCE) == RuleSet((), (), SOURCE)


def test_of_kind_lists_the_enabled_rules_of_a_kind() -> None:
    rules = parse_rules(
        """
- {name: kept, kind: regression}
- {name: disabled, kind: regression, enabled: false}
- {name: other, kind: stale}
"""
    )
    assert [r.name for r in rules.of_kind(AlertKind.REGRESSION)] == ["kept"]
    assert rules.of_kind(AlertKind.SPEC_LEVEL) == []


# --- parse_rules: refusals name the file, the rule and the field ------------------------------


@pytest.mark.parametrize(
    ("text", "where", "why"),
    [
        (
            "rules:\n  - {name: a, kind: nope}\n",
            "rule 'a' (rules[0]).kind",
            "Input should be 'spec_level', 'regression', 'pr_regression' or 'stale'",
        ),
        (
            "rules:\n  - {name: a, kind: stale, colour: red}\n",
            "rule 'a' (rules[0]).colour",
            "Extra inputs are not permitted",
        ),
        (
            "rules:\n  - {name: ok, kind: stale}\n  - {name: b, kind: regression, confirm: 0}\n",
            "rule 'b' (rules[1]).confirm",
            "Input should be greater than or equal to 1",
        ),
        (
            "rules:\n  - {name: a, kind: stale, builds: 0}\n",
            "rule 'a' (rules[0]).builds",
            "Input should be greater than or equal to 1",
        ),
        (
            "rules:\n  - {name: a, kind: stale, channels: [slack, email]}\n",
            "rule 'a' (rules[0]).channels.1",
            "Input should be 'slack', 'webhook' or 'github'",
        ),
        (
            "rules:\n  - {name: a, kind: spec_level, levels: [gold]}\n",
            "rule 'a' (rules[0]).levels.0",
            "Input should be 'minimum', 'design' or 'stretch'",
        ),
        ("rules:\n  - {kind: stale}\n", "rules[0].name", "Field required"),
        (
            "rules:\n  - {name: a, kind: regression, confirm: true}\n",
            "rule 'a' (rules[0]).confirm",
            "Input should be a valid integer",
        ),
        (
            "rules:\n  - {name: a, kind: regression, enabled: 'yes'}\n",
            "rule 'a' (rules[0]).enabled",
            "Input should be a valid boolean",
        ),
        ("rule: []\n", "rule", "Extra inputs are not permitted"),
    ],
)
def test_a_bad_field_is_refused_with_its_rule_and_field(text: str, where: str, why: str) -> None:
    assert refusal(text) == f"{SOURCE}: {where}: {why}"


def test_a_cooldown_that_is_no_duration_is_refused_with_our_message() -> None:
    message = refusal("rules:\n  - {name: slow, kind: regression, cooldown: 5 parsecs}\n")
    assert message.startswith(f"{SOURCE}: rule 'slow' (rules[0]).cooldown: ")
    assert message.endswith("'5 parsecs' is not a duration (like 90s, 15m, 6h, 2d)")


def test_a_bad_default_is_refused_on_the_rule_it_reaches() -> None:
    assert refusal("defaults: {confirm: 0}\nrules:\n  - {name: a, kind: regression}\n") == (
        f"{SOURCE}: rule 'a' (rules[0]).confirm: Input should be greater than or equal to 1"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "rules:\n  - {name: twice, kind: stale}\n  - {name: twice, kind: regression}\n",
            "rule 'twice' is defined twice",
        ),
        ("rules: {name: a, kind: stale}\n", "'rules' must be a list"),
        ("42\n", "expected a mapping with a 'rules:' list"),
        ("defaults: [confirm]\nrules: []\n", "'defaults' must be a mapping of rule fields"),
        (
            "rules:\n  - {name: a, kind: stale}\n  - stale\n",
            "rules[1]: a rule is a mapping (name, kind, …)",
        ),
    ],
)
def test_a_malformed_file_is_refused_with_our_message(text: str, message: str) -> None:
    assert refusal(text) == f"{SOURCE}: {message}"


def test_text_that_is_not_yaml_is_refused_naming_the_file() -> None:
    assert refusal("rules: [\n").startswith(f"{SOURCE}: not valid YAML: ")


def test_a_yaml_bomb_is_refused_by_the_node_budget_before_it_expands() -> None:
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for n, name in enumerate("bcdefgh"):
        previous = "abcdefgh"[n]
        levels.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 10)}]")
    with pytest.raises(InvalidInputError) as raised:
        parse_rules("\n".join(levels) + "\n", source=SOURCE)
    assert str(raised.value) == (
        f"{SOURCE}: the YAML expands to more than 200000 nodes in this request "
        "(SPECWATCH_MAX_YAML_NODES)"
    )


# --- parse_duration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (90, 90.0),
        (2.5, 2.5),
        (0, 0.0),
        ("90", 90.0),
        ("90s", 90.0),
        ("15m", 900.0),
        ("6h", 21600.0),
        ("2d", 172800.0),
        ("1.5h", 5400.0),
        (" 15 m ", 900.0),
        ("366d", 366 * 86400.0),
    ],
)
def test_a_duration_is_seconds_or_a_number_with_a_unit(value: Any, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "'' is not a duration (like 90s, 15m, 6h, 2d)"),
        ("-1", "'-1' is not a duration (like 90s, 15m, 6h, 2d)"),
        ("5 parsecs", "'5 parsecs' is not a duration (like 90s, 15m, 6h, 2d)"),
        ("1w", "'1w' is not a duration (like 90s, 15m, 6h, 2d)"),
        (True, "a duration is a number of seconds or text like 15m, 6h, 2d"),
        ("400d", "a duration must be between 0 and 366 days"),
        (-1, "a duration must be between 0 and 366 days"),
        (float("nan"), "a duration must be between 0 and 366 days"),
    ],
)
def test_a_bad_duration_is_refused(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match="duration") as raised:
        parse_duration(value)
    assert str(raised.value) == message


# --- what a rule matches -----------------------------------------------------------------------


def test_packages_limit_a_rule_to_their_metrics() -> None:
    rule = Rule("r", AlertKind.REGRESSION, packages=("validate_drp",))
    assert rule.matches_metric("validate_drp.PA1")
    assert not rule.matches_metric("ap_pipe.PA1")
    assert not rule.matches_metric("validate_drp_extra.PA1")  # the package, not a prefix


def test_metrics_are_names_or_fnmatch_patterns() -> None:
    rule = Rule("r", AlertKind.REGRESSION, metrics=("validate_drp.PA*", "ap_pipe.Time"))
    assert rule.matches_metric("validate_drp.PA1")
    assert rule.matches_metric("validate_drp.PA2_design")
    assert rule.matches_metric("ap_pipe.Time")
    assert not rule.matches_metric("ap_pipe.TimeTotal")
    assert not rule.matches_metric("validate_drp.AM1")
    assert not rule.matches_metric("validate_drp.pa1")  # case matters


def test_tags_match_a_metric_with_any_of_them() -> None:
    rule = Rule("r", AlertKind.REGRESSION, tags=("photometry", "astrometry"))
    assert rule.matches_metric("validate_drp.PA1", ["photometry", "design"])
    assert rule.matches_metric("validate_drp.AM1", ("astrometry",))
    assert not rule.matches_metric("validate_drp.TE1", ["shape"])
    assert not rule.matches_metric("validate_drp.TE1")


def test_an_empty_scope_matches_every_metric_and_scopes_combine() -> None:
    assert Rule("r", AlertKind.STALE).matches_metric("any.thing")
    both = Rule("r", AlertKind.STALE, packages=("validate_drp",), tags=("photometry",))
    assert both.matches_metric("validate_drp.PA1", ["photometry"])
    assert not both.matches_metric("ap_pipe.PA1", ["photometry"])
    assert not both.matches_metric("validate_drp.PA1", ["shape"])


def test_datasets_limit_the_context() -> None:
    rule = Rule("r", AlertKind.REGRESSION, datasets=("HSC-RC2", "DC2"))
    assert rule.matches_context("HSC-RC2", "main")
    assert rule.matches_context("DC2", "main")
    assert not rule.matches_context("CI-HSC", "main")
    assert not rule.matches_context(None, "main")
    assert Rule("r", AlertKind.REGRESSION).matches_context(None, "main")


def test_the_default_branch_is_main() -> None:
    rule = Rule("r", AlertKind.REGRESSION)
    assert rule.matches_context("HSC-RC2", "main")
    assert not rule.matches_context("HSC-RC2", "tickets/DM-1")
    assert not rule.matches_context("HSC-RC2", None)


def test_explicit_branches_and_the_star() -> None:
    listed = Rule("r", AlertKind.REGRESSION, branches=("main", "release/w.2026.30"))
    assert listed.matches_context(None, "release/w.2026.30")
    assert listed.matches_context(None, "main")
    assert not listed.matches_context(None, "release/w.2026.31")  # names, not patterns
    star = Rule("r", AlertKind.REGRESSION, branches=("*",))
    assert star.matches_context(None, "tickets/DM-1")
    assert star.matches_context(None, "main")


def test_branches_from_a_file_accept_a_single_name() -> None:
    (rule,) = parse_rules("- {name: r, kind: regression, branches: develop}\n").rules
    assert rule.branches == ("develop",)
    assert rule.matches_context(None, "develop") and not rule.matches_context(None, "main")


def test_monitor_only_names_and_patterns() -> None:
    rules = RuleSet((), monitor_only=("ap_pipe.*", "validate_drp.TE3"))
    assert rules.monitored_only("ap_pipe.Time")
    assert rules.monitored_only("validate_drp.TE3")
    assert not rules.monitored_only("validate_drp.TE30")
    assert not rules.monitored_only("validate_drp.PA1")
    assert not RuleSet(()).monitored_only("ap_pipe.Time")


# --- silences --------------------------------------------------------------------------------


def item(metric: str = "validate_drp.PA1", **fields: Any) -> AlertItem:
    values: dict[str, Any] = {"dataset": "HSC-RC2", "branch": "main", **fields}
    return AlertItem(dedup_key=f"regression|{metric}", metric=metric, **values)


def silence(**matchers: Any) -> Silence:
    return Silence(id=1, ends_at=NOW + timedelta(hours=2), created_at=NOW, **matchers)


def test_a_silence_without_matchers_matches_everything() -> None:
    assert silence().matches("regression", item())
    assert silence().matches("stale", item("ap_pipe.Time", dataset=None, branch=None, pr=7))


def test_a_silence_of_a_rule_matches_that_rule_only() -> None:
    assert silence(rule="regression").matches("regression", item())
    assert not silence(rule="regression").matches("pr-regression", item())


def test_a_silence_metric_may_be_a_pattern() -> None:
    patterned = silence(metric="validate_drp.PA*")
    assert patterned.matches("regression", item("validate_drp.PA1"))
    assert patterned.matches("regression", item("validate_drp.PA2"))
    assert not patterned.matches("regression", item("validate_drp.AM1"))
    exact = silence(metric="validate_drp.PA1")
    assert not exact.matches("regression", item("validate_drp.PA10"))


def test_a_silence_of_a_pull_request_matches_its_items_only() -> None:
    pr = silence(pr=12)
    assert pr.matches("pr-regression", item(pr=12, branch="tickets/DM-1"))
    assert not pr.matches("pr-regression", item(pr=13))
    assert not pr.matches("regression", item())


def test_a_silence_of_a_dataset_and_a_branch() -> None:
    scoped = silence(dataset="HSC-RC2", branch="main")
    assert scoped.matches("regression", item())
    assert not scoped.matches("regression", item(dataset="DC2"))
    assert not scoped.matches("regression", item(branch="release/w.1"))
    assert not scoped.matches("regression", item(dataset=None))


# --- the default rules -------------------------------------------------------------------------


def test_the_default_rules_are_the_four_kinds_enabled_on_main() -> None:
    rules = default_rules()
    assert rules.source == "default rules"
    assert rules.monitor_only == ()
    assert [(r.name, r.kind) for r in rules.rules] == [
        ("spec-level", AlertKind.SPEC_LEVEL),
        ("regression", AlertKind.REGRESSION),
        ("pr-regression", AlertKind.PR_REGRESSION),
        ("stale", AlertKind.STALE),
    ]
    for rule in rules.rules:
        assert rule.enabled
        assert rule.channels == CHANNELS
        assert rule.description
        assert rule.matches_context("HSC-RC2", "main")
        assert not rule.matches_context("HSC-RC2", "tickets/DM-1")
        assert rule.as_dict()["branches"] == ["main"]
        assert rules.of_kind(rule.kind) == [rule]
    assert rules.get("spec-level") == Rule(
        "spec-level", AlertKind.SPEC_LEVEL, rules.rules[0].description, confirm=2
    )
    stale = rules.get("stale")
    assert stale is not None and stale.builds == 3
