"""Speed and memory of ``specwatch collect catalog`` on matched catalogs of 100k to 1M sources.

    .venv/bin/python bench/collect.py                  # 100k, 300k, 1M rows
    .venv/bin/python bench/collect.py --rows 1000000   # one size

Each catalog resamples faro's real one (ci_hsc, tract 0, i: 3 visits, 3,249 objects): whole
objects drawn with replacement (all their sources, so the visit structure and the per-visit
scatter are real), new object ids, and each object moved, with its sources, to a uniform
random place in a square field.  The 1M-row catalog fills a tract (``--field-deg``, 1.7° as
an LSST/HSC tract); smaller ones cover a proportionally smaller area at the same density, so
that the work per row (pairs per star) is the same and the linearity ratio means something.
AM1 and AM2 have pairs; the fields are smaller than AM3's 200', so AM3 has none (NaN).  Each
catalog is written as an uncompressed afw-style FITS table (the columns faro reads and the
bit-packed ``flags`` with the original TFLAG cards) in a temp folder.

Every run is a subprocess pinned to one CPU (BLAS/OpenMP threads 1) that runs the click
command in process: seconds are the command's own wall time (reading, KPMs, job JSON), MB
the subprocess' peak RSS (``ru_maxrss``, imports included); the median of ``--runs`` runs
(the largest RSS).  The reference, in the same subprocess: reading every column of the file
with astropy (``× read``: how many times the bare read the whole command costs).
Linearity: seconds per row relative to the smallest catalog's (1.0 =
linear); pairs: the AM1-3 star pairs found, whose count grows faster than the rows in the
smaller fields (an annulus of 20' does not fit in them), and the seconds per pair.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from astropy.io import fits

SOURCE = Path(__file__).resolve().parents[2] / "shared/datasets/lsst/faro"
CATALOG = SOURCE / "matchedCatalogTract_0_i.fits.gz"
COLUMNS = (
    "coord_ra",
    "coord_dec",
    "base_PsfFlux_snr",
    "base_PsfFlux_mag",
    "base_PsfFlux_magErr",
    "base_ClassificationExtendedness_value",
    "visit",
)
SINGLE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}

RUNNER = """
import json, os, resource, sys, time
os.sched_setaffinity(0, {int(sys.argv[3])})
from click.testing import CliRunner
import numpy as np
from astropy.io import fits
from specwatch.collectors.catalog import catalog_command
start = time.perf_counter()  # the reference: just reading every column of the file
with fits.open(sys.argv[1], memmap=False) as hdus:
    columns = [np.array(hdus[1].data[name]) for name in hdus[1].columns.names]
read_s = time.perf_counter() - start
del columns
args = [sys.argv[1], "--dataset", "bench", "--filter", "i", "--output", sys.argv[2]]
start = time.perf_counter()
result = CliRunner().invoke(catalog_command, args, catch_exceptions=False)
seconds = time.perf_counter() - start
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"exit": result.exit_code, "seconds": seconds, "rss_mb": rss_mb,
                  "read_s": read_s}))
"""


def resampled_catalog(rows: int, field_deg: float, seed: int, path: Path) -> int:
    """Write a matched catalog of about ``rows`` sources to ``path``; return its row count."""
    with fits.open(CATALOG) as hdus:
        header, data = hdus[1].header, hdus[1].data
        source = {name: np.array(data[name]) for name in COLUMNS}
        flags = np.array(data["flags"])
        objects = np.array(data["object"])
    ids, first, sizes = np.unique(objects, return_index=True, return_counts=True)
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, len(ids), size=int(rows / sizes.mean() * 1.05))
    drawn = drawn[np.cumsum(sizes[drawn]) <= rows]
    members = np.concatenate([np.arange(first[i], first[i] + sizes[i]) for i in drawn])
    new_object = np.repeat(np.arange(1, len(drawn) + 1), sizes[drawn])
    centre_ra = np.bincount(np.searchsorted(ids, objects), weights=source["coord_ra"]) / sizes
    centre_dec = np.bincount(np.searchsorted(ids, objects), weights=source["coord_dec"]) / sizes
    field = np.deg2rad(field_deg)
    place_dec = rng.uniform(-field / 2, field / 2, len(drawn))
    place_ra = rng.uniform(-field / 2, field / 2, len(drawn)) / np.cos(place_dec)
    owner = np.repeat(np.arange(len(drawn)), sizes[drawn])
    original = np.searchsorted(ids, objects[members])
    dec = source["coord_dec"][members] - centre_dec[original] + place_dec[owner]
    ra = (source["coord_ra"][members] - centre_ra[original]) * np.cos(centre_dec[original])
    ra = np.mod(np.pi + ra / np.cos(dec) + place_ra[owner], 2 * np.pi)
    columns = [
        fits.Column("flags", format=f"{flags.shape[1]}X", array=flags[members]),
        fits.Column("id", format="K", array=np.arange(1, len(members) + 1)),
        fits.Column("coord_ra", format="D", unit="rad", array=ra),
        fits.Column("coord_dec", format="D", unit="rad", array=dec),
    ]
    for name in COLUMNS[2:-1]:
        columns.append(fits.Column(name, format="D", array=source[name][members]))
    columns.append(fits.Column("object", format="K", array=new_object))
    columns.append(fits.Column("visit", format="J", array=source["visit"][members]))
    table = fits.BinTableHDU.from_columns(columns)
    table.header["FLAGCOL"] = 1
    for key in header:
        if key.startswith("TFLAG"):
            table.header[key] = header[key]
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path, overwrite=True)
    return len(members)


def run_once(path: Path, job: Path, cpu: int) -> dict[str, float]:
    """Run the command in a fresh single-core subprocess; its seconds, peak RSS MB, exit."""
    env = {**os.environ, **SINGLE_THREAD}
    command = [sys.executable, "-c", RUNNER, str(path), str(job), str(cpu)]
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--field-deg", type=float, default=1.7, help="Field side at 1M rows.")
    parser.add_argument("--runs", type=int, default=3, help="Runs per size (median kept).")
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    if not CATALOG.is_file():
        print(f"no {CATALOG}: nothing to resample", file=sys.stderr)
        return 2
    cpu = min(os.sched_getaffinity(0))
    first: tuple[int, float] | None = None
    print(
        f"{'rows':>9} {'seconds':>8} {'MB':>7} {'× read':>7} {'linearity':>9} {'pairs':>9} "
        f"{'µs/pair':>8}"
    )
    with tempfile.TemporaryDirectory(prefix="specwatch-bench-") as tmp:
        for target in args.rows:
            path = Path(tmp) / f"matched_{target}.fits"
            field_deg = args.field_deg * (target / 1e6) ** 0.5
            rows = resampled_catalog(target, field_deg, args.seed, path)
            job = Path(tmp) / f"job_{target}.json"
            runs = [run_once(path, job, cpu) for _ in range(args.runs)]
            result = sorted(runs, key=lambda run: run["seconds"])[len(runs) // 2]
            result["rss_mb"] = max(run["rss_mb"] for run in runs)
            read_s = statistics.median(run["read_s"] for run in runs)
            if result["exit"] != 0:
                print(f"{rows}: the command exited {result['exit']}", file=sys.stderr)
                return 1
            first = first or (rows, result["seconds"])
            linearity = (result["seconds"] / rows) / (first[1] / first[0])
            pairs = sum(
                int(m.get("notes", {}).get("n_pairs", 0))
                for m in json.loads(job.read_text())["measurements"]
                if m["metric"].startswith("validate_drp.AM")
            )
            per_pair_us = result["seconds"] / max(pairs, 1) * 1e6
            print(
                f"{rows:>9} {result['seconds']:>8.2f} {result['rss_mb']:>7.0f} "
                f"{result['seconds'] / read_s:>7.1f} "
                f"{linearity:>9.2f} {pairs:>9} {per_pair_us:>8.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
