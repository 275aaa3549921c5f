"""CI gating: the server's verdicts on the jobs just uploaded, against ``--fail-on``.

``--fail-on minimum|design|stretch`` fails when a measured specification of that level, or of
a lower one, fails (a stretch goal missed does not fail ``--fail-on design``); a specification
without a level gates at every level.  ``--fail-on regression`` fails when the server's
comparison of the job with its baseline (the last builds of the target branch) says
"regressed": worse than the baseline by more than its noise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .client import JobReceipt, SpecwatchClient
from .options import GateLevel

_RANK = {"minimum": 0, "design": 1, "stretch": 2}


@dataclass(frozen=True)
class SpecFailure:
    """A specification a job's measurement fails."""

    job_id: int
    metric: str
    spec: str
    level: str | None
    value: float | None
    operator: str
    threshold: float
    unit: str


@dataclass(frozen=True)
class Regression:
    """A metric worse than its baseline by more than the baseline's noise."""

    job_id: int
    metric: str
    dataset: str | None
    filter: str | None
    base_mean: float | None
    base_std: float | None
    base_n: int
    value: float | None
    delta: float | None
    delta_pct: float | None
    delta_sigma: float | None
    unit: str


@dataclass
class GateResult:
    """What the gate found; ``failed`` decides the exit code."""

    fail_on: tuple[GateLevel, ...]
    spec_failures: list[SpecFailure] = field(default_factory=list)
    regressions: list[Regression] = field(default_factory=list)
    baselines_missing: list[int] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.spec_failures or self.regressions)


def gates(level: str | None, fail_on: Iterable[GateLevel]) -> bool:
    """Whether a failing spec of ``level`` fails a build gated on ``fail_on``."""
    lines = [_RANK[f] for f in fail_on if f in _RANK]
    if not lines:
        return False
    return level is None or _RANK.get(level, 0) <= max(lines)


def spec_failures(
    job_id: int, verdicts: Mapping[str, Any], fail_on: Sequence[GateLevel]
) -> list[SpecFailure]:
    """The failing, measured verdicts of a ``/jobs/{id}/verdicts`` answer that gate."""
    failures = []
    for v in verdicts.get("verdicts", []):
        if v.get("status") == "fail" and v.get("measured", True) and gates(v.get("level"), fail_on):
            failures.append(
                SpecFailure(
                    job_id,
                    str(v["metric"]),
                    str(v["spec"]),
                    v.get("level"),
                    v.get("value"),
                    str(v["operator"]),
                    float(v["threshold"]),
                    str(v.get("unit", "")),
                )
            )
    return failures


def regressions(job_id: int, comparison: Mapping[str, Any]) -> list[Regression]:
    """The "regressed" metrics of a ``/compare`` answer."""
    return [
        Regression(
            job_id,
            str(m["metric"]),
            m.get("dataset"),
            m.get("filter"),
            m.get("base_mean"),
            m.get("base_std"),
            int(m.get("base_n", 0)),
            m.get("head_value"),
            m.get("delta"),
            m.get("delta_pct"),
            m.get("delta_sigma"),
            str(m.get("unit", "")),
        )
        for m in comparison.get("metrics", [])
        if m.get("verdict") == "regressed"
    ]


def evaluate(
    client: SpecwatchClient,
    receipts: Sequence[JobReceipt],
    fail_on: Sequence[GateLevel],
    base_branch: str,
) -> GateResult:
    """Ask the server about each job and collect what crosses the line."""
    result = GateResult(tuple(fail_on))
    for receipt in receipts:
        if any(level in _RANK for level in fail_on):
            verdicts = client.get(f"/api/v1/jobs/{receipt.id}/verdicts")
            result.spec_failures += spec_failures(receipt.id, verdicts, fail_on)
        if "regression" in fail_on:
            comparison = client.get(
                "/api/v1/compare", {"head": str(receipt.id), "base": "auto", "branch": base_branch}
            )
            if not comparison.get("base", {}).get("jobs"):
                result.baselines_missing.append(receipt.id)
            result.regressions += regressions(receipt.id, comparison)
    return result


def number(value: float | None, unit: str = "") -> str:
    """A value for the table: six significant digits, its unit; "—" when not measured."""
    if value is None or not math.isfinite(value):
        return "—"
    text = f"{value:.6g}"
    return f"{text} {unit}".strip()


def signed(value: float | None, suffix: str = "") -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:+.3g}{suffix}"


def rows(result: GateResult) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    """The two tables (header and rows): failed specifications, then regressions."""
    spec_header = ["job", "metric", "value", "spec", "threshold", "level"]
    spec_rows = [
        [
            str(f.job_id),
            f.metric,
            number(f.value, f.unit),
            f.spec,
            f"{f.operator} {number(f.threshold, f.unit)}",
            f.level or "—",
        ]
        for f in result.spec_failures
    ]
    reg_header = ["job", "metric", "value", "baseline", "change", "change %", "noise units"]
    reg_rows = [
        [
            str(r.job_id),
            r.metric + (f" [{r.dataset}{'/' + r.filter if r.filter else ''}]" if r.dataset else ""),
            number(r.value, r.unit),
            f"{number(r.base_mean, r.unit)} ± {number(r.base_std)} (n={r.base_n})",
            f"{signed(r.delta)} {r.unit}".strip(),
            signed(r.delta_pct, " %"),
            signed(r.delta_sigma, " σ"),
        ]
        for r in result.regressions
    ]
    return spec_header, spec_rows, reg_header, reg_rows


def markdown(result: GateResult) -> str:
    """The tables in GitHub-flavoured markdown (the job summary)."""
    spec_header, spec_rows, reg_header, reg_rows = rows(result)
    lines = [
        "### Specwatch: "
        + ("gate failed" if result.failed else "gate passed")
        + f" (--fail-on {' '.join(result.fail_on)})",
        "",
    ]
    for title, header, body in (
        ("Failed specifications", spec_header, spec_rows),
        ("Regressions against the baseline", reg_header, reg_rows),
    ):
        if not body:
            continue
        lines += [f"**{title}**", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "---|" * len(header))
        lines += [
            "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body
        ]
        lines.append("")
    if result.baselines_missing:
        lines.append(
            "No baseline builds on the target branch for job(s) "
            + ", ".join(map(str, result.baselines_missing))
            + ": nothing to compare with."
        )
    return "\n".join(lines) + "\n"
