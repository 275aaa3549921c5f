"""The gate's rules, on the server's answers as data (the CLI runs are in test_upload_e2e)."""

from __future__ import annotations

from typing import Any

import pytest

from specwatch.collectors.gate import GateResult, gates, markdown, regressions, spec_failures
from specwatch.collectors.options import GateLevel


@pytest.mark.parametrize(
    ("level", "fail_on", "expected"),
    [
        ("minimum", ("minimum",), True),
        ("design", ("minimum",), False),
        ("minimum", ("design",), True),
        ("design", ("design",), True),
        ("stretch", ("design",), False),
        ("stretch", ("stretch",), True),
        (None, ("minimum",), True),  # a spec without a level gates at every level
        ("design", ("regression",), False),
        ("design", (), False),
        ("stretch", ("minimum", "stretch"), True),
    ],
)
def test_which_failing_levels_gate(
    level: str | None, fail_on: tuple[GateLevel, ...], expected: bool
) -> None:
    assert gates(level, fail_on) is expected


def verdict(status: str, level: str | None, measured: bool = True) -> dict[str, Any]:
    return {
        "metric": "validate_drp.PA1",
        "spec": f"validate_drp.PA1.{level}",
        "level": level,
        "status": status,
        "value": 7.5 if measured else None,
        "operator": "<=",
        "threshold": 5.0,
        "unit": "mmag",
        "measured": measured,
    }


def test_only_measured_failures_at_or_under_the_line_count() -> None:
    answer = {
        "verdicts": [
            verdict("fail", "design"),
            verdict("fail", "stretch"),
            verdict("pass", "minimum"),
            verdict("not_tested", "design", measured=False),
        ]
    }
    [failure] = spec_failures(3, answer, ("design",))
    assert (failure.job_id, failure.spec, failure.value, failure.unit) == (
        3,
        "validate_drp.PA1.design",
        7.5,
        "mmag",
    )


def test_regressions_are_the_regressed_metrics_only() -> None:
    base = {"base_mean": 10.0, "base_std": 0.1, "base_n": 8, "unit": "ms"}
    answer = {
        "metrics": [
            {"metric": "a.x", "verdict": "regressed", "head_value": 12.0, "delta": 2.0, **base},
            {"metric": "a.y", "verdict": "within_noise", "head_value": 10.05, **base},
            {"metric": "a.z", "verdict": "improved", "head_value": 8.0, **base},
        ]
    }
    assert [r.metric for r in regressions(1, answer)] == ["a.x"]


def test_the_job_summary_table_escapes_cells_and_shows_units() -> None:
    result = GateResult(("design",))
    result.spec_failures = spec_failures(
        9, {"verdicts": [{**verdict("fail", "design"), "metric": "odd|name"}]}, ("design",)
    )
    text = markdown(result)
    assert text.startswith("### Specwatch: gate failed (--fail-on design)")
    assert "| 9 | odd\\|name | 7.5 mmag | validate_drp.PA1.design | <= 5 mmag | design |" in text
