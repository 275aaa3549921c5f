"""Speed of the change-point detector beside Apache Otava 0.8, on the same synthetic histories.

    .venv/bin/python bench/detect_speed.py                    # 1000 × 2000 builds, 3 runs each

Both run on one core (the process is pinned to one CPU; BLAS/OpenMP threads set to 1) over the
same seeded CI histories (``synthetic_ci``: noise, outliers, missing builds, drifts, steps).
Specwatch: ``detect_many`` in this process. Otava: ``otava.analysis.compute_change_points`` with
its defaults (``AnalysisOptions``: window 50, p ≤ 0.001), after its own ``fill_missing``, in a
venv of its own (it pins numpy 2.2): ``--otava-python``, else one created once under the temp
folder with ``pip install apache-otava==0.8.0``. Times exclude start-up and loading; each is the
median of ``--runs`` runs. F1 (margin 5, pooled), precision, recall and false alarms per 1000
builds are scored against the known steps with the cpd tool's matching.
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
import time
from pathlib import Path
from typing import Any

import numpy as np
import synthetic_ci
from peer_venv import peer_python

from specwatch.metrics.changepoint import detect_many

CPD = Path(os.environ.get("SPECWATCH_CPD_TOOL", "/work/shared/tools/cpd"))
OTAVA = "apache-otava==0.8.0"
SINGLE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}

OTAVA_RUNNER = """
import json, os, sys, time
os.sched_setaffinity(0, {int(sys.argv[3])})
from otava.analysis import compute_change_points, fill_missing
from otava.series import AnalysisOptions
opts = AnalysisOptions()
series = json.load(open(sys.argv[1]))
times, found = [], []
for _ in range(int(sys.argv[2])):
    start = time.perf_counter()
    found = []
    for values in series:
        data = list(values)
        fill_missing(data)
        cps, _ = compute_change_points(data, window_len=opts.window_len,
                                       max_pvalue=opts.max_pvalue,
                                       min_magnitude=opts.min_magnitude)
        found.append([int(cp.index) for cp in cps])
    times.append(time.perf_counter() - start)
print(json.dumps({"times": times, "change_points": found}))
"""


def otava_python(given: str | None) -> str:
    """A Python with apache-otava 0.8 (given, or a venv created once under the temp folder)."""
    return peer_python(given, "specwatch-otava-venv", [OTAVA], "import otava.analysis")


def score(truth: list[list[int]], found: list[list[int]], builds: int) -> dict[str, float]:
    """Pooled precision, recall, F1 (margin 5) and false alarms per 1000 builds."""
    if str(CPD) not in sys.path:
        sys.path.insert(0, str(CPD))
    metrics = importlib.import_module("metrics")
    tp = fp = fn = 0
    for t, f in zip(truth, found, strict=True):
        counts = metrics.confusion(t, f, 5)
        tp, fp, fn = tp + counts["tp"], fp + counts["fp"], fn + counts["fn"]
    precision, recall, f1 = metrics.prf(tp, fp, fn)
    return {"precision": precision, "recall": recall, "f1": f1, "fa_per_1000": 1000 * fp / builds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--builds", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=10_000)
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin (default: the first)")
    parser.add_argument("--otava-python", help="a Python with apache-otava 0.8 installed")
    parser.add_argument("--skip-otava", action="store_true")
    args = parser.parse_args()

    cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    histories = [synthetic_ci.make_history(args.seed + i, args.builds) for i in range(args.series)]
    arrays = [np.array(h.values, dtype=float) for h in histories]  # None → NaN
    truth = [h.change_points for h in histories]
    builds = args.series * args.builds
    print(
        f"{args.series} histories × {args.builds} builds, {sum(map(len, truth))} true steps; "
        f"CPU {cpu}; {args.runs} runs each",
        flush=True,
    )

    times, found = [], []
    for _ in range(args.runs):
        start = time.perf_counter()
        found = detect_many(arrays)
        times.append(time.perf_counter() - start)
    results: dict[str, dict[str, Any]] = {
        "specwatch": {"times": times, **score(truth, found, builds)}
    }

    if not args.skip_otava:
        python = otava_python(args.otava_python)
        with tempfile.TemporaryDirectory(prefix="specwatch-speed-") as tmp:
            data = Path(tmp) / "series.json"
            data.write_text(json.dumps([h.values for h in histories]))
            done = subprocess.run(
                [python, "-c", OTAVA_RUNNER, str(data), str(args.runs), str(cpu)],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, **SINGLE_THREAD},
            )
        otava = json.loads(done.stdout)
        results["otava 0.8"] = {
            "times": otava["times"],
            **score(truth, otava["change_points"], builds),
        }

    print(
        "\ndetector   median s  runs (s)              ms/series  builds/s     F1  precision"
        "  recall  FA/1k builds"
    )
    for name, r in results.items():
        median = statistics.median(r["times"])
        runs = " ".join(f"{t:.2f}" for t in r["times"])
        print(
            f"{name:<10} {median:8.2f}  {runs:<20} {1000 * median / args.series:10.2f}  "
            f"{builds / median:8.0f}  {r['f1']:.3f}  {r['precision']:9.3f}  {r['recall']:6.3f}"
            f"  {r['fa_per_1000']:12.2f}"
        )
    if "otava 0.8" in results:
        ratio = statistics.median(results["otava 0.8"]["times"]) / statistics.median(times)
        print(f"\nspecwatch is {ratio:.1f}× faster than Otava (median of {args.runs} runs each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
