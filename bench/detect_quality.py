"""Quality of ``specwatch detect`` on TCPD and on seeded synthetic CI histories, beside peers.

    .venv/bin/python bench/detect_quality.py                 # ~2 minutes
    .venv/bin/python bench/detect_quality.py --series 100 --peers zero,binseg

Scoring is the cpd tool's (``/work/shared/tools/cpd``, van den Burg & Williams 2020): F1 with a
margin of 5 and cover on TCPD's univariate series, pooled F1, false alarms per 1000 builds and
online delay (rerun on growing prefixes) on the synthetic set, written in the tool's "hidden"
format to a temporary folder. Specwatch is scored in process through the tool's functions, and
through ``python -m specwatch.detect_cli --stdin`` (the tool's ``--cmd``) on TCPD as a check;
the peers (zero, PELT, BinSeg, Otava, …) run in the tool itself, in a venv with the tool's
pinned requirements (``--cpd-python``, else created once under the temp folder).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import synthetic_ci
from peer_venv import peer_python

from specwatch.metrics.changepoint import change_points

CPD = Path(os.environ.get("SPECWATCH_CPD_TOOL", "/work/shared/tools/cpd"))
PAPER = CPD.parents[1] / "datasets" / "tcpdbench" / "default_scores_univariate.json"
SPECWATCH_CMD = f"{sys.executable} -m specwatch.detect_cli --stdin"
Row = dict[str, Any]


def cpd_module(name: str) -> ModuleType:
    """A module of the cpd tool (``run`` or ``metrics``)."""
    if str(CPD) not in sys.path:
        sys.path.insert(0, str(CPD))
    return importlib.import_module(name)


def cpd_python(given: str | None) -> str:
    """A Python with the cpd tool's requirements (ruptures, apache-otava, …)."""
    requirements = ["-r", str(CPD / "requirements.txt")]
    return peer_python(given, "specwatch-cpd-venv", requirements, "import ruptures, otava, asv")


def run_tool(python: str, args: Sequence[str], out: Path) -> dict[str, Any]:
    """Run the cpd tool and return its JSON result."""
    command = [python, str(CPD / "run.py"), *args, "--out", str(out)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def detector() -> Callable[[Sequence[float | None]], list[int]]:
    return lambda values: change_points(values)


# --- in-process scoring --------------------------------------------------------------------------


def score_tcpd(run: ModuleType) -> tuple[list[Row], Row]:
    series, _skipped = run.load_tcpd(run.TCPD_DIR)
    rows: list[Row] = run.score_tcpd(detector(), series)
    summary: Row = run.summarize_tcpd("specwatch", rows, run.paper_set(series))
    return rows, summary


def score_hidden(run: ModuleType, folder: Path, online: bool) -> tuple[list[Row], Row]:
    series = run.load_hidden(folder)
    rows: list[Row] = run.score_hidden(detector(), series, online)
    summary: Row = run.summarize_hidden(rows)
    return rows, summary


def delays_by_size(histories: list[synthetic_ci.History], rows: list[Row]) -> Row:
    """Median online delay and recall (offline) per step-size bin."""
    by_name = {r["series"]: r for r in rows}
    out: Row = {}
    for label, lo, hi in (("1-2", 1, 2), ("2-3", 2, 3), ("3-5", 3, 99)):
        delays, found = [], []
        for h in histories:
            row = by_name[h.name]
            for step, delay, (_size, hit) in zip(
                h.steps, row["online_delays"], row["found_by_size"], strict=True
            ):
                if lo <= abs(step.shift_sigma) < hi:
                    found.append(bool(hit))
                    delays.append(delay)
        hits = [d for d in delays if d is not None]
        out[label] = {
            "steps": len(found),
            "recall": sum(found) / len(found) if found else None,
            "online_median": statistics.median(hits) if hits else None,
            "online_found_by_64": len(hits) / len(delays) if delays else None,
        }
    return out


# --- output --------------------------------------------------------------------------------------


def fmt(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for cells in [headers, ["-" * w for w in widths], *rows]:
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
        )


def print_tcpd(rows: list[Row], summary: Row, names_paper: list[str], cli_rows: list[Row]) -> None:
    paper = json.loads(PAPER.read_text())
    cols = {m: paper["methods"].index(m) for m in ("binseg", "pelt", "zero")}

    def ref(metric: str, name: str, method: str) -> float | None:
        values = paper[metric].get(name)
        return None if values is None else values[cols[method]]

    out = []
    for r in rows:
        name = r["series"]
        out.append(
            [
                name + ("" if name in names_paper else " *"),
                str(r["n_obs"]),
                fmt(r["f1"]),
                fmt(r["cover"]),
            ]
            + [fmt(ref(m, name, method)) for method in cols for m in ("f1", "cover")]
        )
    for label, names in (
        ("mean, paper set", names_paper),
        ("mean, all", [r["series"] for r in rows]),
    ):
        sel = [r for r in rows if r["series"] in names]
        means = [statistics.mean(r[k] for r in sel) for k in ("f1", "cover")]
        refs = []
        for method in cols:
            for m in ("f1", "cover"):
                vals = [ref(m, r["series"], method) for r in sel]
                refs.append(fmt(statistics.mean(v or 0.0 for v in vals)))
        out.append([label, str(len(sel)), *(fmt(v) for v in means), *refs])
    print(
        "\nTCPD univariate series: specwatch beside the paper's default binseg, pelt and zero"
        " (F1 margin 5; * = not in the paper's means; paper means count failures as 0)"
    )
    table(
        [
            "series",
            "n",
            "F1",
            "cover",
            "binseg F1",
            "cover",
            "pelt F1",
            "cover",
            "zero F1",
            "cover",
        ],
        out,
    )
    if cli_rows:
        same = all(
            a["change_points"] == b["change_points"] for a, b in zip(rows, cli_rows, strict=True)
        )
        print(
            f"through `{SPECWATCH_CMD}` (the tool's --cmd): F1 paper set "
            f"{fmt(summary['f1_paper_set'])}; identical change points: {same}"
        )


def print_hidden(summaries: dict[str, Row], stationary: dict[str, Row], sizes: Row) -> None:
    print("\nSynthetic CI histories (pooled; F1 margin 5 builds; online = rerun on each prefix)")
    rows = []
    for name, s in summaries.items():
        rows.append(
            [
                name,
                fmt(s["f1"]),
                fmt(s["precision"]),
                fmt(s["recall"]),
                fmt(s["false_alarms_per_1000_builds"], ".2f"),
                fmt(stationary.get(name, {}).get("false_alarms_per_1000_builds"), ".3f"),
                fmt(s["delay_abs_mean"], ".2f"),
                fmt(s.get("online_delay_median"), "g"),
                fmt(s.get("online_detected_by_64"), ".2f"),
                fmt(s.get("online_false_alarm_rate"), ".3f"),
                *(fmt(v) for v in s["recall_by_step_sigma"].values()),
            ]
        )
    table(
        [
            "detector",
            "F1",
            "precision",
            "recall",
            "FA/1k builds",
            "FA/1k stationary",
            "|offset|",
            "online median",
            "online ≤64",
            "online FA",
            "recall 1-2σ",
            "2-3σ",
            "3-5σ",
        ],
        rows,
    )
    print("\nspecwatch by step size")
    table(
        ["step", "steps", "recall", "online median delay", "online found ≤64"],
        [
            [
                f"{k} σ",
                str(v["steps"]),
                fmt(v["recall"]),
                fmt(v["online_median"], "g"),
                fmt(v["online_found_by_64"], ".2f"),
            ]
            for k, v in sizes.items()
        ],
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=300, help="synthetic histories with steps")
    parser.add_argument("--stationary", type=int, default=150, help="stationary histories")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--peers", default="zero,pelt,binseg,otava", help="'' for none")
    parser.add_argument("--cpd-python", help="Python with the cpd tool's requirements")
    parser.add_argument("--out", type=Path, help="write all results as JSON here")
    args = parser.parse_args(argv)
    run = cpd_module("run")

    with tempfile.TemporaryDirectory(prefix="specwatch-cpd-") as tmp:
        folder, quiet = Path(tmp) / "ci", Path(tmp) / "stationary"
        histories = synthetic_ci.make_set(args.seed, args.series)
        calm = synthetic_ci.make_set(
            args.seed + 1, args.stationary, (1000, 1000), max_steps=0, drift=False
        )
        synthetic_ci.write_hidden(histories, folder)
        synthetic_ci.write_hidden(calm, quiet)
        print(
            f"synthetic: {len(histories)} histories, {sum(len(h.values) for h in histories)} "
            f"builds, {sum(len(h.steps) for h in histories)} steps; stationary: {len(calm)} "
            f"× 1000 builds (seed {args.seed})",
            flush=True,
        )

        rows, tcpd = score_tcpd(run)
        hidden_rows, hidden = score_hidden(run, folder, online=True)
        _, calm_summary = score_hidden(run, quiet, online=False)
        summaries, stationary = {"specwatch": hidden}, {"specwatch": calm_summary}
        peers: dict[str, Any] = {}
        python = cpd_python(args.cpd_python)
        cli = run_tool(
            python,
            ["--detectors", "", "--cmd", f"specwatch={SPECWATCH_CMD}", "--sets", "tcpd"],
            Path(tmp) / "cli.json",
        )
        if args.peers:
            print(f"peers ({args.peers}) in the cpd tool …", flush=True)
            base = ["--detectors", args.peers, "--hidden-dir"]
            peers = run_tool(
                python,
                [*base, str(folder), "--sets", "tcpd,hidden", "--online-delay"],
                Path(tmp) / "peers.json",
            )
            calm_peers = run_tool(
                python, [*base, str(quiet), "--sets", "hidden"], Path(tmp) / "calm.json"
            )
            summaries.update(peers["hidden"]["summary"])
            stationary.update(calm_peers["hidden"]["summary"])

    series, _ = run.load_tcpd(run.TCPD_DIR)
    names_paper = run.paper_set(series)
    print_tcpd(rows, tcpd, names_paper, cli["tcpd"]["per_series"]["specwatch"])
    if peers:
        print("\nTCPD means from the tool (same protocol)")
        table(
            ["detector", "F1 paper set", "cover paper set", "F1 all", "cover all"],
            [
                [
                    n,
                    fmt(s["f1_paper_set"]),
                    fmt(s["cover_paper_set"]),
                    fmt(s["f1_all"]),
                    fmt(s["cover_all"]),
                ]
                for n, s in {"specwatch": tcpd, **peers["tcpd"]["summary"]}.items()
            ],
        )
    sizes = delays_by_size(histories, hidden_rows)
    print_hidden(summaries, stationary, sizes)
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "tcpd": {"summary": tcpd, "per_series": rows},
                    "hidden": summaries,
                    "stationary": stationary,
                    "by_step_size": sizes,
                },
                indent=1,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
