"""The seeded demo history that ``specwatch demo`` loads: definitions and lsst.verify jobs.

Pure and deterministic: it reads only the ``verify_metrics``-style YAML tree shipped in
``specwatch.services/demo`` and draws from ``numpy.random.default_rng(seed)``, so the same
``seed`` and ``now`` give byte-identical bodies under stable idempotency keys. `demo_events`
lists what was injected: steps, a drift, outliers, gaps, one NaN and a regressing PR.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import yaml

from specwatch.metrics.units import conversion_factor

DEFAULT_SEED = 20261125
DEFAULT_NOW = datetime(2026, 11, 20, tzinfo=UTC)
HISTORY_DAYS = 180
MIN_MAIN_BUILDS = 320
REPOSITORY = "https://github.com/lsst/pipe_tasks"

Array = npt.NDArray[np.float64]
EventKind = Literal["step", "drift", "outlier", "nan", "gap", "pr_regression"]


@dataclass(frozen=True, slots=True)
class DemoJob:
    """One job to ingest: a stable idempotency key and an lsst.verify job JSON body."""

    idempotency_key: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DemoEvent:
    """One injected event: the ground truth for regression detection.

    ``build`` is a main build index (``pr_regression``: the build the PR branches from).
    ``size`` is in the metric's unit: after minus before (step), the total change over
    ``build``..``end_build`` (drift), the excess over the level (outlier, PR); 0 for ``nan``
    and ``gap``. ``metric``/``dataset`` are None when a gap hits every metric or dataset.
    """

    kind: EventKind
    metric: str | None
    dataset: str | None
    build: int
    size: float = 0.0
    end_build: int | None = None
    branch: str = "main"
    pr: int | None = None


@dataclass(frozen=True, slots=True)
class _Dataset:
    name: str
    instrument: str
    filter: str
    ci_name: str
    ci_base: int  # Jenkins build number of main build 0
    runtime_min: int  # from build start to the job's time
    packages: tuple[str, ...]  # besides pipe_tasks, the repository under test


_DATASETS = (
    _Dataset("HSC-RC2", "HSC", "HSC-I", "ci_hsc", 2400, 95, ("meas_algorithms", "validate_drp")),
    _Dataset("CI-HiTS", "DECam", "g", "ap_verify_ci_hits2015", 1700, 40, ("ap_association",)),
)
_DS = {ds.name: i for i, ds in enumerate(_DATASETS)}

# metric, level on HSC-RC2 and on CI-HiTS (metric's unit), relative noise, noise model
# ("normal": additive, "skewed": log-normal for wall times, "count": additive integer), and
# the unit each dataset sends it in when not the metric's (to exercise unit conversion).
_PROFILES: tuple[tuple[str, float, float, float, str, str | None, str | None], ...] = (
    ("validate_drp.PA1", 4.9, 6.2, 0.03, "normal", None, None),
    ("validate_drp.PA2_design_gri", 11.5, 14.0, 0.04, "normal", None, None),
    ("validate_drp.PF1_design_gri", 4.2, 7.5, 0.08, "normal", None, None),
    ("validate_drp.AM1", 7.8, 9.1, 0.04, "normal", None, "arcsec"),
    ("validate_drp.AM2", 7.2, 8.8, 0.04, "normal", None, "arcsec"),
    ("validate_drp.AM3", 9.5, 11.0, 0.05, "normal", None, None),
    ("validate_drp.AD1_design", 15.5, 18.0, 0.04, "normal", "marcsec", None),
    ("validate_drp.AF1_design", 3.1, 5.2, 0.08, "normal", None, None),
    ("validate_drp.TE1", 4.0e-6, 1.2e-5, 0.10, "normal", None, None),
    ("validate_drp.TE2", 1.5e-6, 3.0e-6, 0.10, "normal", None, None),
    ("pipe_tasks.processCcd_wallTime", 40.0, 34.0, 0.06, "skewed", "min", None),
    ("pipe_tasks.processCcd_maxRSS", 2850.0, 2100.0, 0.02, "normal", "GB", None),
    ("pipe_tasks.CharacterizeImageTime", 14.5, 9.8, 0.10, "skewed", None, "ms"),
    ("pipe_tasks.CalibrateTime", 21.0, 15.0, 0.10, "skewed", None, None),
    ("pipe_tasks.numDeblendedSciSources", 1450.0, 820.0, 0.03, "count", None, None),
    ("ap_association.AssociationTime", 3.2, 5.5, 0.12, "skewed", "ms", None),
    ("ap_association.DiaPipelineMemory", 1.9e9, 2.4e9, 0.02, "normal", "MB", "MB"),
    ("ap_association.numNewDiaObjects", 310.0, 640.0, 0.06, "count", None, None),
    ("ap_association.totalUnassociatedDiaObjects", 1200.0, 2650.0, 0.04, "count", None, None),
    ("ap_association.fracUpdatedDiaObjects", 78.0, 84.0, 0.02, "normal", None, None),
    ("ap_pipe.ApFakesCompletenessMag20t22", 95.5, 96.0, 0.01, "normal", None, None),
    ("ap_pipe.ApFakesCompletenessMag22t24", 81.0, 76.0, 0.02, "normal", None, None),
    ("ap_pipe.ApPipelineTime", 2600.0, 1450.0, 0.08, "skewed", None, "min"),
    ("ip_diffim.ImagePsfMatchTime", 7.5, 5.2, 0.10, "skewed", None, None),
    ("ip_diffim.fracDiaSourcesToSciSources", 6.0, 14.0, 0.05, "normal", None, None),
    ("ip_diffim.numSciSources", 5200.0, 3100.0, 0.03, "count", None, "count"),
    ("ip_isr.IsrTime", 6.5, 4.1, 0.08, "skewed", None, None),
    ("meas_astrom.AstrometryTime", 2.4, 1.7, 0.10, "skewed", None, None),
)
_METRICS = tuple(profile[0] for profile in _PROFILES)
_M = {name: i for i, name in enumerate(_METRICS)}

# Injected: metric, dataset (None: both), main build index, size relative to the level.
_STEPS = (
    ("validate_drp.PA1", "HSC-RC2", 96, -0.10),  # improvement, 3.3 sigma
    ("pipe_tasks.processCcd_wallTime", None, 150, 0.18),  # 3 sigma, crosses HSC stretch
    ("ip_diffim.fracDiaSourcesToSciSources", "HSC-RC2", 180, 0.20),  # 4 sigma
    ("validate_drp.AM1", "CI-HiTS", 205, 0.15),  # 3.75 sigma, crosses design (10 mas)
    ("ap_association.DiaPipelineMemory", None, 240, 0.09),  # 4.5 sigma
    ("ap_pipe.ApFakesCompletenessMag22t24", "CI-HiTS", 270, 0.06),  # improvement, 3 sigma
)
_DRIFT = ("pipe_tasks.processCcd_maxRSS", "HSC-RC2", 40, 0.10)  # linear up to the last build
_OUTLIERS = (
    ("pipe_tasks.CharacterizeImageTime", "HSC-RC2", 77, 2.0),
    ("validate_drp.PF1_design_gri", "CI-HiTS", 133, 0.6),
    ("ap_association.numNewDiaObjects", "CI-HiTS", 212, 1.5),
    ("meas_astrom.AstrometryTime", "HSC-RC2", 288, 3.0),
)
_NAN = ("validate_drp.TE2", "CI-HiTS", 165)
_FAILED_BUILDS = (61, 190, 301)  # no job from either dataset
_FAILED_JOBS = (("CI-HiTS", 58), ("CI-HiTS", 59), ("CI-HiTS", 222))
_OUTAGE_DAYS = range(97, 103)  # CI down: no build at all
_UNMEASURED = 8  # random (metric, dataset, build) left out of their job
# branch, PR number, branches from main build (last - k), number of builds, factor on PA1
_PA1 = "validate_drp.PA1"
_PRS = (
    ("tickets/DM-47103", 1057, 12, 2, 1.0),
    ("tickets/DM-47311", 1063, 6, 3, 1.3),
    ("tickets/DM-47420", 1066, 3, 1, 1.0),
)

# Blobs on every 15th main build and on PR builds: metric -> arrays (name, unit, label,
# description, length, how drawn around the measured value).
_BLOBS = {
    _PA1: (
        ("magResid", "mmag", "Magnitude residual", "Residuals of bright stars.", 40, "residual"),
        ("magMean", "mag", "Mean magnitude", "Mean magnitude of the stars.", 40, "magnitude"),
    ),
    "validate_drp.AM1": (
        ("rmsDistMas", "marcsec", "rmsDistMas", "rms distance of star pairs.", 30, "rms"),
    ),
    "pipe_tasks.processCcd_wallTime": (
        ("ccdWallTime", "s", "CCD wall time", "Wall time of each CCD.", 48, "spread"),
    ),
}
Row = dict[str, Any]  # metric -> value in the metric's unit


def demo_definition_files() -> dict[str, str]:
    """The shipped demo tree: relative path (``metrics/pipe_tasks.yaml``) -> YAML text."""
    found: dict[str, str] = {}
    _collect(files("specwatch.services") / "demo", "", found)
    return dict(sorted(found.items()))


def demo_requirements() -> str:
    """The demo's verification matrix (YAML, LDM-503 Appendix A style)."""
    return (files("specwatch.services") / "demo" / "requirements.yaml").read_text("utf-8")


def demo_jobs(seed: int = DEFAULT_SEED, now: datetime | None = None) -> list[DemoJob]:
    """The demo's jobs in time order; main history over the 180 days before ``now``."""
    return _History(seed, now).jobs()


def demo_events(seed: int = DEFAULT_SEED, now: datetime | None = None) -> list[DemoEvent]:
    """What `demo_jobs` with the same arguments injected, ordered by build index."""
    history = _History(seed, now)
    history.jobs()  # draws the random gaps
    return sorted(history.events, key=lambda e: (e.build, e.kind, e.dataset or "", e.metric or ""))


class _History:
    """One generation: schedule, levels with their events, noisy values, then job bodies."""

    def __init__(self, seed: int, now: datetime | None) -> None:
        now = DEFAULT_NOW if now is None else now
        self.now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
        self.seed, self.rng = seed, np.random.default_rng(seed)
        self.units = _metric_units()
        if set(self.units) != set(_METRICS):
            raise RuntimeError("demo metric profiles and shipped metric definitions differ")
        first = self.now - timedelta(days=HISTORY_DAYS)
        self.first_day = first.replace(hour=0, minute=0, second=0, microsecond=0)
        self.times = _schedule(self.rng, self.first_day)
        self.base = np.array([[p[1], p[2]] for p in _PROFILES])  # (metric, dataset)
        self.noise = np.array([p[3] for p in _PROFILES])
        self.upper = np.array([100.0 if self.units[m] == "%" else np.inf for m in _METRICS])
        self.levels = np.repeat(self.base[:, :, None], len(self.times), axis=2)
        self.events: list[DemoEvent] = []

    def jobs(self) -> list[DemoJob]:
        """Every job, in time order, filling ``events`` (call once per instance)."""
        self._shift_levels()
        values = self._noisy(self.levels, self.rng.standard_normal(self.levels.shape))
        for metric, name, b, rel in _OUTLIERS:
            size = rel * self.levels[_M[metric], _DS[name], b]
            values[_M[metric], _DS[name], b] += size
            self.events.append(DemoEvent("outlier", metric, name, b, _num(size)))
        metric, name, b = _NAN
        values[_M[metric], _DS[name], b] = math.nan
        self.events.append(DemoEvent("nan", metric, name, b))
        absent = {(d, b) for b in _FAILED_BUILDS for d in range(len(_DATASETS))}
        absent |= {(_DS[name], b) for name, b in _FAILED_JOBS}
        outage_end = self.first_day + timedelta(days=_OUTAGE_DAYS.stop)
        self.events += [
            *(DemoEvent("gap", None, None, b) for b in _FAILED_BUILDS),
            *(DemoEvent("gap", None, name, b) for name, b in _FAILED_JOBS),
            DemoEvent("gap", None, None, sum(t < outage_end for t in self.times)),
        ]
        last = len(self.times) - 1
        pr_bases = [_last_built(last - back, absent) for _, _, back, _, _ in _PRS]
        busy = {e.build + k for e in self.events for k in (-1, 0, 1)} | set(pr_bases)
        skip = self._pick_unmeasured(busy | {b for _, b in absent})
        jobs = []
        for b, when in enumerate(self.times):
            for d, ds in enumerate(_DATASETS):
                if (d, b) not in absent:
                    row = {
                        m: values[i, d, b] for i, m in enumerate(_METRICS) if (i, d, b) not in skip
                    }
                    jobs.append(self._job(ds, b, when, row, None))
        jobs += self._pr_jobs(pr_bases)
        return sorted(jobs, key=lambda job: (job.body["meta"]["time"], job.idempotency_key))

    def _shift_levels(self) -> None:
        """Apply the steps and the drift to the levels, recording their sizes."""
        for metric, name, b, rel in _STEPS:
            for d in range(len(_DATASETS)) if name is None else (_DS[name],):
                size = rel * self.levels[_M[metric], d, b]
                self.levels[_M[metric], d, b:] += size
                self.events.append(DemoEvent("step", metric, _DATASETS[d].name, b, _num(size)))
        metric, name, start, rel = _DRIFT
        m, d, last = _M[metric], _DS[name], len(self.times) - 1
        size = rel * self.levels[m, d, start]
        self.levels[m, d, start:] += size * np.arange(last + 1 - start) / (last - start)
        self.events.append(DemoEvent("drift", metric, name, start, _num(size), end_build=last))

    def _noisy(self, levels: Array, z: Array) -> Array:
        """Measured values around ``levels`` (metric, dataset, build) for normal draws ``z``."""
        kinds = np.array([p[4] for p in _PROFILES])[:, None, None]
        additive = levels + (self.noise[:, None] * self.base)[:, :, None] * z
        skewed = levels * np.exp(self.noise[:, None, None] * z)
        values = np.where(kinds == "skewed", skewed, additive)
        values = np.where(kinds == "count", np.round(values), values)
        return np.clip(values, 0.0, self.upper[:, None, None])

    def _pick_unmeasured(self, busy: set[int]) -> set[tuple[int, int, int]]:
        picked: set[tuple[int, int, int]] = set()
        high = (len(_METRICS), len(_DATASETS), len(self.times) - 20)
        while len(picked) < _UNMEASURED:
            m, d, b = (int(x) for x in self.rng.integers((0, 0, 5), high))
            if b not in busy and (m, d, b) not in picked:
                picked.add((m, d, b))
                self.events.append(DemoEvent("gap", _METRICS[m], _DATASETS[d].name, b))
        return picked

    def _pr_jobs(self, bases: list[int]) -> list[DemoJob]:
        jobs = []
        for number, ((branch, pr, _, n_builds, factor), b) in enumerate(
            zip(_PRS, bases, strict=True)
        ):
            levels = self.levels[:, :, b].copy()
            for d, ds in enumerate(_DATASETS) if factor != 1.0 else ():
                size = (factor - 1.0) * levels[_M[_PA1], d]
                levels[_M[_PA1], d] += size
                event = DemoEvent("pr_regression", _PA1, ds.name, b, _num(size), branch=branch)
                self.events.append(replace(event, pr=pr))
            room = self.now - timedelta(hours=2) - self.times[b]
            for k in range(n_builds):
                offset = min(timedelta(hours=2 + 4 * k), room * (k + 1) / (n_builds + 1))
                start = (self.times[b] + offset).replace(microsecond=0)
                values = self._noisy(
                    levels[:, :, None], self.rng.standard_normal((len(_METRICS), 2, 1))
                )
                commit, ci_id = _sha(self.seed, branch, k), 38001 + 3 * number + k
                pr_build = _PrBuild(branch, pr, k + 1, commit, ci_id)
                for d, ds in enumerate(_DATASETS):
                    row = {m: values[i, d, 0] for i, m in enumerate(_METRICS)}
                    jobs.append(self._job(ds, b, start, row, pr_build))
        return jobs

    def _job(self, ds: _Dataset, b: int, start: datetime, row: Row, pr: _PrBuild | None) -> DemoJob:
        """The job of dataset ``ds`` in main build ``b`` (or in a build of PR ``pr``)."""
        key = f"demo/{ds.name}/{pr.branch}/{pr.index:04d}" if pr else f"demo/{ds.name}/main/{b:04d}"
        measurements, blob_list = [], []
        for metric, value in row.items():
            unit = _PROFILES[_M[metric]][5 + _DS[ds.name]] or self.units[metric]
            with_blob = metric in _BLOBS and math.isfinite(value) and (pr or b % 15 == 0)
            blob = self._blob(key, metric, float(value)) if with_blob else None
            blob_list += [blob] if blob else []
            factor = conversion_factor(self.units[metric], unit)
            measurements.append(
                {
                    "metric": metric,
                    "identifier": _sha(key, metric)[:32],
                    "unit": unit,
                    "value": _num(value * factor),
                    "blob_refs": [blob["identifier"]] if blob else [],
                }
            )
        main_commit = _sha(self.seed, "main", b)
        ci_name, ci_id = ("stack-os-matrix", pr.ci_id) if pr else (ds.ci_name, ds.ci_base + b)
        ci_url = f"https://ci.example.org/job/{ci_name}/{ci_id}/"
        when = (start + timedelta(minutes=ds.runtime_min)).isoformat()
        meta = {
            "env": {
                "ci_id": str(ci_id),
                "ci_name": ci_name,
                "ci_url": ci_url,
                "ci_dataset": ds.name,
                "ci_label": "rubin-rhel8",
                "date": when,
                "status": 0,
                "env_name": "jenkins",
            },
            "packages": self._packages(ds, b, pr.commit if pr else main_commit, pr),
            "repository": REPOSITORY,
            "commit": pr.commit if pr else main_commit,
            "branch": pr.branch if pr else "main",
            "pr": pr.number if pr else None,
            "pr_url": f"{REPOSITORY}/pull/{pr.number}" if pr else None,
            "build_url": ci_url,
            "dataset": ds.name,
            "instrument": ds.instrument,
            "filter": ds.filter,
            "time": when,
            "base_commit": main_commit if pr else None,
        }
        body = {
            "measurements": measurements,
            "blobs": blob_list,
            "metrics": [],
            "specs": [],
            "meta": meta,
        }
        return DemoJob(key, body)

    def _packages(self, ds: _Dataset, b: int, commit: str, pr: _PrBuild | None) -> dict[str, Any]:
        year, week, _ = self.times[b].isocalendar()
        shas = {"pipe_tasks": commit}
        # The other packages move every few builds, independently of the repository under test.
        shas |= {name: _sha(self.seed, name, b // 9) for name in ds.packages}
        return {
            name: {
                "name": name,
                "git_sha": sha,
                "git_branch": pr.branch if pr and name == "pipe_tasks" else "main",
                "git_url": f"https://github.com/lsst/{name}.git",
                "eups_version": f"w.{year}.{week:02d}-g{sha[:7]}",
            }
            for name, sha in shas.items()
        }

    def _blob(self, key: str, metric: str, value: float) -> dict[str, Any]:
        """Drill-down arrays of ``metric`` (at most 50 numbers each), drawn around ``value``."""
        data = {}
        for name, unit, label, description, size, kind in _BLOBS[metric]:
            if kind == "residual":
                draws = self.rng.normal(0.0, value, size)
            elif kind == "magnitude":
                draws = self.rng.uniform(17.0, 21.5, size)
            elif kind == "rms":
                draws = np.abs(self.rng.normal(value, 0.4 * value, size))
            else:
                draws = value * self.rng.lognormal(0.0, 0.15, size)
            numbers = [round(float(v), 4) for v in draws]
            data[name] = {
                "value": numbers,
                "unit": unit,
                "label": label,
                "description": description,
            }
        return {"identifier": _sha(key, "blob", metric)[:32], "name": metric, "data": data}


@dataclass(frozen=True, slots=True)
class _PrBuild:
    branch: str
    number: int
    index: int  # 1 for the PR's first build
    commit: str
    ci_id: int


def _schedule(rng: np.random.Generator, first_day: datetime) -> list[datetime]:
    """Build start times: nightly (some nights skipped) plus daytime builds, sorted."""
    days = [first_day + timedelta(days=day) for day in range(HISTORY_DAYS)]
    skipped = rng.random(HISTORY_DAYS) < 0.07
    nightly = rng.integers(0, 45, HISTORY_DAYS)
    extras = rng.poisson([1.3 if day.weekday() < 5 else 0.25 for day in days])
    extra_minutes = iter(rng.integers(13 * 60, 21 * 60, int(extras.sum())).tolist())
    times: list[datetime] = []
    for i, day in enumerate(days):
        minutes = [] if skipped[i] else [3 * 60 + int(nightly[i])]
        minutes += [next(extra_minutes) for _ in range(int(extras[i]))]
        if i not in _OUTAGE_DAYS:
            times += [day + timedelta(minutes=minute) for minute in minutes]
    i = HISTORY_DAYS - 1
    while len(set(times)) < MIN_MAIN_BUILDS:  # a quiet seed: add afternoon builds
        if i not in _OUTAGE_DAYS:
            times.append(days[i] + timedelta(hours=12, minutes=7))
        i = (i - 1) % HISTORY_DAYS
    return sorted(set(times))


def _collect(node: Traversable, prefix: str, found: dict[str, str]) -> None:
    for child in node.iterdir():
        if child.is_dir():
            _collect(child, f"{prefix}{child.name}/", found)
        elif child.name.endswith(".yaml"):
            found[f"{prefix}{child.name}"] = child.read_text(encoding="utf-8")


def _metric_units() -> dict[str, str]:
    units: dict[str, str] = {}
    for path, text in demo_definition_files().items():
        if path.startswith("metrics/"):
            package = path.removeprefix("metrics/").removesuffix(".yaml")
            for name, body in (yaml.safe_load(text) or {}).items():
                units[f"{package}.{name}"] = str(body.get("unit") or "")
    return units


def _last_built(index: int, absent: set[tuple[int, int]]) -> int:
    while any((d, index) in absent for d in range(len(_DATASETS))):
        index -= 1
    return index


def _num(value: float) -> float:
    """A plain float with 6 significant digits (NaN stays NaN)."""
    return float(f"{float(value):.6g}")


def _sha(*parts: object) -> str:
    """A stable 40-hex digest of ``parts`` (commits, identifiers)."""
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:40]
