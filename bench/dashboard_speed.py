"""Dashboard speed in headless Chromium: a metric page of 20,000 points, an overview of 200 series.

Run ``.venv/bin/python bench/dashboard_speed.py --runs 3`` (``make browser`` first).  It fills a
fresh SQLite database in process (200 metrics with design and minimum specs; one dataset of
20,000 main builds of ``bench.m000``, the last 40 of them measuring all 200 metrics), serves
it with ``specwatch serve`` and, per run, in a new browser tab each time:

- metric page: from navigation start until the plot holds all 20,000 points and nothing loads;
- overview: from navigation start until the table lists the 200 series;
- the reference, in the same browser and run: plotly alone drawing the same 20,000 points
  (``plotly.graph_objects`` written as a standalone HTML page loading plotly.js: the floor
  any plotly dashboard stands on), and the ratio of the metric page to it.

The server time of every callback comes from its ``Server-Timing`` header (the dashboard writes
one per callback, named by its output), read from the browser's resource timings.  Medians over
the runs; targets: each page < 2 s, each callback < 200 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import plotly.graph_objects as go
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from specwatch.config import Settings
from specwatch.logging import configure_logging
from specwatch.services.context import ProcessContext

SPECWATCH = str(Path(sys.executable).with_name("specwatch"))
N_POINTS, N_METRICS, N_FULL_BUILDS, DATASET = 20_000, 200, 40, "bench-ds"
PAGE_TARGET_S, CALLBACK_TARGET_MS = 2.0, 200.0


def _metrics_yaml() -> str:
    return "".join(
        f"m{i:03d}:\n  description: Benchmark metric {i}.\n  unit: mmag\n  tags: [t{i % 5}]\n"
        for i in range(N_METRICS)
    )


def _specs_yaml() -> str:
    documents = []
    for i in range(N_METRICS):
        for level, value in (("design", 10.0), ("minimum", 12.0)):
            documents.append(
                f"metric: m{i:03d}\nname: {level}\nlevel: {level}\n"
                f"threshold: {{value: {value}, unit: mmag, operator: '<='}}\n"
            )
    return "---\n" + "---\n".join(documents)


def _job(build: int, start: datetime, rng: random.Random) -> bytes:
    full = build >= N_POINTS - N_FULL_BUILDS
    names = range(N_METRICS) if full else (0,)
    step = 1 if build < N_POINTS // 2 else 0  # one change point half way
    measurements = [
        {
            "metric": f"bench.m{i:03d}",
            "value": round(8.0 + 0.5 * i / N_METRICS + step + rng.gauss(0, 0.2), 4)
            if build % 997 != 13
            else math.nan,  # a few NaN builds: gaps
            "unit": "mmag",
        }
        for i in names
    ]
    meta = {
        "dataset": DATASET,
        "instrument": "HSC",
        "filter_name": "r",
        "branch": "main",
        "commit": f"{build:040x}",
        "time": (start + timedelta(minutes=30 * build)).isoformat(),
        "ci_id": str(build),
        "ci_url": f"https://ci.example.org/job/{build}",
    }
    return orjson.dumps(
        {"measurements": measurements, "meta": meta}, option=orjson.OPT_SERIALIZE_NUMPY
    )


async def fill(database_url: str) -> None:
    """The benchmark's data, ingested in process (as ``POST /api/v1/jobs`` would)."""
    configure_logging(level="WARNING")
    settings = Settings(database_url=database_url, detect_on_ingest=False)
    context = await ProcessContext.open(settings, background=False)
    try:
        await context.definitions().import_files(
            {"metrics/bench.yaml": _metrics_yaml(), "specs/bench/bench.yaml": _specs_yaml()}
        )
        rng = random.Random(20261203)
        start = datetime(2025, 1, 1, tzinfo=UTC)
        jobs = context.jobs()
        for build in range(N_POINTS):
            await jobs.ingest(_job(build, start, rng))
            if build % 2000 == 1999:
                await context.deliverer.drain()
        await context.deliverer.drain()
        regressions = context.regressions()
        await regressions.detect_many(await regressions.all_keys())
    finally:
        await context.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--use-angle=swiftshader",
        "--enable-unsafe-swiftshader",
        "--window-size=1400,1000",
    ):
        options.add_argument(argument)
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    return webdriver.Chrome(options=options, service=Service(driver))


def _wait(driver: webdriver.Chrome, script: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not driver.execute_script(script):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for: {script}")
        time.sleep(0.01)


_IDLE = "!document.querySelector('[data-dash-is-loading=\"true\"]')"
_METRIC_DRAWN = (
    "const gd = document.querySelector('#page .js-plotly-plot');"
    "return !!gd && !!gd._fullData"
    f" && gd._fullData.some(t => t.x && t.x.length >= {N_POINTS - 100}) && {_IDLE};"
)
_OVERVIEW_DRAWN = (
    f"return document.querySelectorAll('#page table tbody tr').length >= {N_METRICS} && {_IDLE};"
)
_ELAPSED = "return performance.now();"  # ms since this document's navigation started
_CALLBACKS = """
return performance.getEntriesByType('resource')
  .filter(e => e.name.includes('_dash-update-component'))
  .flatMap(e => e.serverTiming.map(s => [s.description, s.duration]));
"""


def _time_page(driver: webdriver.Chrome, url: str, drawn: str) -> tuple[float, list[Any]]:
    driver.switch_to.new_window("tab")
    driver.get(url)
    _wait(driver, drawn)
    elapsed_s = driver.execute_script(_ELAPSED) / 1000
    time.sleep(0.2)  # late resource entries
    callbacks = driver.execute_script(_CALLBACKS)
    driver.close()
    driver.switch_to.window(driver.window_handles[0])
    return elapsed_s, callbacks


def _reference_page(folder: Path) -> Path:
    """Plotly alone drawing what the metric page draws, shaped as the page sends it: one
    Scattergl trace of 20,000 builds, x in UTC milliseconds on a date axis, y and the job ids
    as arrays, a hover text per build; plotly.js a file beside the page (cached, like the
    dashboard's), not inlined in it."""
    rng = np.random.default_rng(1)
    start_ms = datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000
    figure = go.Figure(
        go.Scattergl(
            x=start_ms + np.arange(N_POINTS) * 1_800_000.0,
            y=8 + rng.normal(0, 0.2, N_POINTS),
            customdata=list(range(1, N_POINTS + 1)),
            text=[f"commit {i:010x}<br>CI build {i}" for i in range(N_POINTS)],
            mode="lines+markers",
            hovertemplate="%{y} mmag<br>%{text}<br>job %{customdata}",
        ),
        layout={"xaxis": {"type": "date"}, "height": 460},
    )
    target = folder / "reference.html"
    figure.write_html(target, include_plotlyjs="directory", full_html=True, div_id="reference")
    return target


_REFERENCE_DRAWN = (
    "const gd = document.getElementById('reference');"
    f"return !!gd && !!gd._fullData && gd._fullData[0].x.length === {N_POINTS};"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dashboard-bench-") as tmp:
        folder = Path(tmp)
        database_url = f"sqlite+aiosqlite:///{folder / 'bench.sqlite3'}"
        env = {"SPECWATCH_DATABASE_URL": database_url, "SPECWATCH_ACCESS_LOG": "false"}
        subprocess.run([SPECWATCH, "db", "upgrade"], env=env, check=True, capture_output=True)
        began = time.perf_counter()
        asyncio.run(fill(database_url))
        print(
            f"filled: {N_POINTS:,} builds, {N_METRICS} metrics"
            f" in {time.perf_counter() - began:.0f} s"
        )
        port = _free_port()
        server = subprocess.Popen(
            [SPECWATCH, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env={**env, "PATH": "/usr/bin:/bin"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        reference = _reference_page(folder)
        driver = None
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("specwatch serve did not start")
                time.sleep(0.1)
            driver = _browser()
            driver.get(base + "/dashboard/")  # warm: the server's first page and the caches
            metric_url = f"{base}/dashboard/metric/bench.m000?dataset={DATASET}&limit={N_POINTS}"
            overview_url = f"{base}/dashboard/?dataset={DATASET}"
            _time_page(driver, metric_url, _METRIC_DRAWN)
            figures: dict[str, list[float]] = defaultdict(list)
            callbacks: dict[str, list[float]] = defaultdict(list)
            for run in range(arguments.runs):
                seconds, timings = _time_page(driver, metric_url, _METRIC_DRAWN)
                figures["metric page (20,000 points)"].append(seconds)
                for name, duration in timings:
                    callbacks[f"metric: {name}"].append(duration)
                seconds, timings = _time_page(driver, overview_url, _OVERVIEW_DRAWN)
                figures["overview (200 series)"].append(seconds)
                for name, duration in timings:
                    callbacks[f"overview: {name}"].append(duration)
                seconds, _ = _time_page(driver, reference.as_uri(), _REFERENCE_DRAWN)
                figures["reference: plotly alone, 20,000 points"].append(seconds)
                print(
                    f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in figures.items())
                )
        finally:
            if driver is not None:
                driver.quit()
            server.terminate()
            server.wait(timeout=10)
    median = {name: statistics.median(values) for name, values in figures.items()}
    print(
        f"\nmedians of {arguments.runs} runs (targets: page < {PAGE_TARGET_S} s,"
        f" callback < {CALLBACK_TARGET_MS:.0f} ms)"
    )
    for name, value in median.items():
        flag = "" if name.startswith("reference") or value < PAGE_TARGET_S else "  OVER TARGET"
        print(f"  {name:42s} {value:6.2f} s{flag}")
    ratio = median["metric page (20,000 points)"] / median["reference: plotly alone, 20,000 points"]
    print(f"  metric page / plotly alone: {ratio:.2f}x")
    print("server time per callback (median, ms)")
    for name, values in sorted(callbacks.items()):
        value = statistics.median(values)
        flag = "" if value < CALLBACK_TARGET_MS else "  OVER TARGET"
        print(f"  {name:42s} {value:7.1f} ms{flag}")


if __name__ == "__main__":
    main()
