"""The change-point detector (``specwatch.metrics.changepoint``) and ``specwatch detect``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from click.testing import CliRunner

from specwatch.detect_cli import detect
from specwatch.metrics.changepoint import (
    Noise,
    change_points,
    detect_changes,
    detect_many,
    estimate_noise,
    settle_builds,
)
from specwatch.metrics.model import Direction

BENCH = Path(__file__).resolve().parents[1] / "bench"


def synthetic() -> ModuleType:
    """bench/synthetic_ci.py, the seeded CI histories the benchmarks use."""
    sys.path.insert(0, str(BENCH))
    import synthetic_ci

    return synthetic_ci


def noisy(seed: int, n: int, sigma: float = 1.0, level: float = 100.0) -> np.ndarray:
    return level + np.random.default_rng(seed).normal(0.0, sigma, n)


def with_step(seed: int, n: int, at: int, size: float) -> np.ndarray:
    x = noisy(seed, n)
    x[at:] += size
    return x


def seeds(count: int, start: int = 0) -> Iterator[int]:
    return iter(range(start, start + count))


# --- finding steps ---------------------------------------------------------------------------


def test_three_sigma_steps_are_found_within_one_build() -> None:
    offsets = []
    for seed in seeds(200):
        at = 80 + seed
        found = change_points(with_step(seed, 400, at, 3.0 if seed % 2 else -3.0))
        assert len(found) == 1, (seed, found)
        offsets.append(found[0] - at)
    # The best possible (the argmax of the two-sample t) gets about 97 % within ±1 here.
    assert sum(abs(o) <= 1 for o in offsets) >= 0.93 * len(offsets)
    assert max(abs(o) for o in offsets) <= 5


def test_several_steps_each_found() -> None:
    x = noisy(1, 600)
    for at, size in ((100, 4.0), (250, -3.0), (400, 2.5), (520, 5.0)):
        x[at:] += size
    assert change_points(x) == [100, 250, 400, 520]


def test_stationary_noise_has_no_change_over_many_seeds() -> None:
    syn = synthetic()
    alarms = builds = 0
    for seed in seeds(150, 7000):
        history = syn.make_history(seed, 800, max_steps=0, drift=False)
        alarms += len(change_points(history.values))
        builds += len(history.values)
    assert builds == 120_000
    assert alarms <= 6  # ≤ 0.05 per 1000 builds; the benchmark's target is 0.2


def test_outliers_are_not_changes() -> None:
    for seed in seeds(30):
        x = noisy(seed, 300)
        rng = np.random.default_rng(seed)
        for p in rng.choice(np.arange(5, 295, 6), 12, replace=False):
            x[p] += rng.uniform(6, 30) * rng.choice([-1, 1])
        x[150:152] += 25.0  # a pair
        assert change_points(x) == [], seed


def drift_alarm_rate(drift: np.ndarray, histories: int = 100) -> float:
    """Share of noisy histories with this drift in which any change is reported."""
    alarms = sum(bool(change_points(noisy(seed, drift.size) + drift)) for seed in seeds(histories))
    return alarms / histories


def test_drift_alone_is_rarely_a_change() -> None:
    t = np.arange(600)
    assert drift_alarm_rate(3.0 * t / 600) <= 0.10  # 3 σ over the history: ~6 %
    assert drift_alarm_rate(np.sin(2 * np.pi * t / 1200)) <= 0.08  # a slow wave: ~3 %
    assert drift_alarm_rate(4.0 * np.clip((t - 200) / 150, 0, 1)) <= 0.06  # a ramp: ~2 %
    # A steep ramp looks like a step to a detector of 1 σ steps: documented, not hidden.
    assert drift_alarm_rate(2.5 * np.clip((t - 200) / 50, 0, 1)) > 0.10


def test_a_step_on_a_drift_is_found() -> None:
    x = noisy(3, 600) + 3.0 * np.arange(600) / 600
    x[350:] -= 3.0
    assert change_points(x) == [350]


def test_online_a_step_is_reported_within_four_builds() -> None:
    x = with_step(5, 300, 296, 4.0)
    assert change_points(x[:298]) == []  # two builds: could be a spike pair
    assert change_points(x[:299]) == [296]
    assert change_points(x) == [296]


# --- missing builds ----------------------------------------------------------------------------


def test_missing_builds_are_counted_in_indices() -> None:
    x = with_step(2, 300, 150, 4.0).astype(object)
    x[[10, 11, 12, 60, 149]] = None
    values = [None if v is None else float(v) for v in x]
    assert change_points(values) == [150]
    with_nan = np.array([np.nan if v is None else v for v in values])
    assert change_points(with_nan) == [150]
    inf = with_nan.copy()
    inf[20] = np.inf
    assert change_points(inf) == [150]


def test_a_step_inside_a_gap_is_at_the_first_build_with_a_value() -> None:
    values: list[float | None] = [float(v) for v in with_step(4, 300, 150, 4.0)]
    values[145:153] = [None] * 8
    assert change_points(values) == [153]


def test_degenerate_histories() -> None:
    assert change_points([]) == []
    assert change_points([None, None]) == []
    assert change_points([1.0, 2.0, None]) == []
    assert change_points([5.0] * 50) == []
    assert estimate_noise([5.0] * 50) == Noise(0.0, 0.0)
    # A quantised metric: constant, then constant again at another value.
    assert change_points([3.0] * 40 + [4.0] * 40) == [40]
    with pytest.raises(ValueError, match="one-dimensional"):
        change_points(np.zeros((3, 3)))
    with pytest.raises(TypeError):
        detect_changes([1.0, 2.0], no_such_knob=1)


# --- what a change says ------------------------------------------------------------------------


def test_levels_and_sizes() -> None:
    (change,) = detect_changes(with_step(8, 400, 200, 3.0))
    assert change.index == 200
    assert change.before == pytest.approx(100.0, abs=0.25)
    assert change.after == pytest.approx(103.0, abs=0.25)
    assert change.delta == pytest.approx(change.after - change.before)
    assert change.delta_pct == pytest.approx(100 * change.delta / change.before)
    assert change.delta_pct == pytest.approx(3.0, abs=0.3)
    assert change.sigma == pytest.approx(1.0, rel=0.15)
    assert change.delta_sigma == pytest.approx(change.delta / change.sigma)
    assert change.delta_sigma == pytest.approx(3.0, rel=0.2)


def test_delta_pct_is_none_at_a_zero_level() -> None:
    x = np.zeros(200)  # a count that is usually 0 …
    x[::9] = 1.0
    x[100:] += 5.0  # … until it is usually 5
    (change,) = detect_changes(x)
    assert (change.index, change.before, change.after) == (100, 0.0, 5.0)
    assert change.delta_pct is None


@pytest.mark.parametrize(
    ("direction", "up", "down"),
    [
        (Direction.LOWER, "worse", "better"),
        (Direction.HIGHER, "better", "worse"),
        (Direction.NONE, "changed", "changed"),
    ],
)
def test_direction_gives_the_verdict(direction: Direction, up: str, down: str) -> None:
    x = noisy(11, 500)
    x[200:] += 4.0
    x[350:] -= 8.0
    rises, falls = detect_changes(x, direction=direction)
    assert (rises.index, falls.index) == (200, 350)
    assert (rises.verdict, falls.verdict) == (up, down)


def test_floors_filter_small_changes() -> None:
    x = with_step(12, 400, 200, 3.0)  # +3 on a level of 100: 3 %
    (change,) = detect_changes(x)
    assert abs(change.index - 200) <= 1
    assert detect_changes(x, min_pct=5.0) == []
    assert detect_changes(x, min_pct=2.0) == [change]
    assert detect_changes(x, min_abs=4.0) == []
    assert detect_changes(x, min_abs=2.0) == [change]


def test_a_filtered_change_does_not_split_its_neighbours() -> None:
    x = noisy(13, 600)
    x[200:] += 2.5  # small
    x[400:] += 10.0  # large
    changes = detect_changes(x, min_abs=5.0)
    assert [c.index for c in changes] == [400]
    assert changes[0].before == pytest.approx(102.5, abs=0.4)


# --- windows ------------------------------------------------------------------------------------


def test_a_window_finds_what_the_full_run_finds() -> None:
    syn = synthetic()
    settle = settle_builds()
    compared = 0
    for seed in seeds(40, 9000):
        history = syn.make_history(seed, 1500)
        noise = estimate_noise(history.values)
        full = [c.index for c in detect_changes(history.values)]
        for start in (100, 600):
            window = detect_changes(history.values[start:], noise=noise, index_offset=start)
            inside = [c.index for c in window if c.index >= start + settle]
            assert inside == [i for i in full if i >= start + settle], (seed, start)
            compared += len(inside)
    assert compared >= 40  # the windows held changes to compare


def test_detect_many_is_change_points_of_each() -> None:
    series = [with_step(s, 300, 100 + s, 4.0) for s in seeds(5)]
    assert detect_many(series) == [change_points(x) for x in series]


# --- specwatch detect --stdin --------------------------------------------------------------------


def run_module(stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "specwatch.detect_cli", "--stdin"],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_stdin_contract_in_a_subprocess() -> None:
    values: list[float | None] = [float(v) for v in with_step(14, 200, 120, 5.0)]
    values[5] = None
    result = run_module(json.dumps({"values": values}))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"change_points": [120]}
    assert result.stderr == ""


@pytest.mark.parametrize(
    "stdin",
    [
        "not json",
        "[1, 2, 3]",
        '{"value": [1, 2]}',
        '{"values": "1, 2"}',
        '{"values": [1, "2"]}',
        '{"values": [1, true]}',
        '{"values": [1, [2]]}',
    ],
)
def test_bad_input_is_one_line_and_exit_2(stdin: str) -> None:
    result = run_module(stdin)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("specwatch: error: ")


def test_stdin_contract_in_process() -> None:
    runner = CliRunner()
    ok = runner.invoke(detect, ["--stdin"], input='{"values": [1, null, NaN, 2]}')
    assert (ok.exit_code, json.loads(ok.output)) == (0, {"change_points": []})
    missing_flag = runner.invoke(detect, [], input="{}")
    assert missing_flag.exit_code == 2
