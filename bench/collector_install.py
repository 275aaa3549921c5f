"""Benchmark: how long a CI job takes to install the collector, and how big it is.

Builds the wheel, then, in fresh virtual environments with pip's cache off (a CI runner's
first install), times ``pip install specwatch.whl`` (the collector: upload, context,
importers), ``specwatch.whl[kpm]`` (+ catalog KPMs: numpy, astropy) and, as the reference,
``specwatch.whl[server]`` (what one package would cost without the split).  Prints seconds
and installed MB, medians of 3, and each one's ratio to the server install.

    .venv/bin/python bench/collector_install.py [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from wheel_build import build_wheel  # noqa: E402

VARIANTS = {"collector": "", "collector + kpm": "[kpm]", "server (reference)": "[server]"}


def size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def install(wheel: Path, extra: str, folder: Path) -> tuple[float, float]:
    """Seconds to install, and MB the install added to a fresh venv."""
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    empty = size_mb(venv)
    started = time.perf_counter()
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--no-cache-dir",
         "--disable-pip-version-check", f"{wheel}{extra}"],
        check=True,
        capture_output=True,  # pip's warnings about this machine's local indexes
    )  # fmt: skip
    seconds = time.perf_counter() - started
    added = size_mb(venv) - empty
    shutil.rmtree(venv)
    return seconds, added


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="specwatch-install-") as tmp:
        wheel = build_wheel(Path(tmp))
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
        for _ in range(args.runs):  # interleaved, so that a noisy minute hits all alike
            for name, extra in VARIANTS.items():
                results[name].append(install(wheel, extra, Path(tmp)))
    reference = statistics.median(s for s, _ in results["server (reference)"])
    print(f"{'install':<22}{'seconds':>9}{'MB':>9}{'× server time':>15}")
    for name, runs in results.items():
        seconds = statistics.median(s for s, _ in runs)
        megabytes = statistics.median(m for _, m in runs)
        print(f"{name:<22}{seconds:>9.1f}{megabytes:>9.1f}{seconds / reference:>15.2f}")


if __name__ == "__main__":
    main()
