"""``specwatch collect catalog`` on faro's real matched catalog and on catalogs derived from it.

faro's own tests expect PA1 = 6.8097958 mmag (nMinPhotRepeat 10) and AM1 = 7.142131192256279
marcsec with its histogram from ``matchedCatalogTract_0_i.fits.gz`` (copied from lsst/faro at
aff3cf7e, /work/shared/datasets/lsst/SOURCE.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from astropy.io import fits
from click.testing import CliRunner

from specwatch.collectors.catalog import catalog_command, read_matched_catalogs
from specwatch.metrics.kpm.astrometry import amx, pair_separations
from specwatch.metrics.kpm.photometry import photometric_repeatability
from specwatch.metrics.kpm.selection import MatchedCatalog
from specwatch.metrics.kpm.suite import PhotometryConfig, SuiteConfig, measure_catalog

LSST = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "lsst"
FARO = LSST / "faro"
CATALOG = FARO / "matchedCatalogTract_0_i.fits.gz"
PA1_MMAG = 6.8097958
AM1_MARCSEC = 7.142131192256279
# faro's tests/data/AD1_design_expected_0_i.yaml and AF1_design_expected_0_i.yaml (not copied).
AD1_MARCSEC = 15.608887687111043
AF1_PERCENT = 6.211180124223603

pytestmark = pytest.mark.skipif(not CATALOG.is_file(), reason=f"{CATALOG} is not here")


class _AnyTagLoader(yaml.SafeLoader):
    """Reads lsst.verify's tagged YAML (``!<lsst.verify.Measurement>`` …) as plain mappings."""


_AnyTagLoader.add_multi_constructor(
    "", lambda loader, _suffix, node: loader.construct_mapping(node, deep=True)
)


def expected(name: str) -> dict[str, Any]:
    loader = _AnyTagLoader((FARO / f"{name}_expected_0_i.yaml").read_text())
    try:
        document: dict[str, Any] = loader.get_single_data()
    finally:
        loader.dispose()
    return document


@pytest.fixture(scope="module")
def real() -> MatchedCatalog:
    return read_matched_catalogs([CATALOG])


def test_pa1_and_am1_are_faros(real: MatchedCatalog) -> None:
    pa1 = photometric_repeatability(real, n_min_phot_repeat=10).pa1
    assert round(pa1.value_in("mmag"), 7) == PA1_MMAG == expected("PA1")["value"]
    am1 = amx(pair_separations(real, annulus_r_arcmin=5.0))
    assert am1.amx.value_in("marcsec") == AM1_MARCSEC == expected("AM1")["value"]
    blob = expected("AM1")["blobs"][0]["data"]
    assert am1.bins.to_value("marcsec").tolist() == blob["bins"]["value"]
    assert am1.counts.tolist() == blob["values"]["value"]
    assert sum(blob["values"]["value"]) == 2714


def test_every_kpm_of_the_real_catalog(real: MatchedCatalog) -> None:
    config = SuiteConfig(photometry=PhotometryConfig(n_min_phot_repeat=10))
    values = {m.metric: m for m in measure_catalog(real, config).measurements}
    assert values["AD1_design"].value.value_in("marcsec") == AD1_MARCSEC
    assert values["AF1_design"].value.value_in("%") == AF1_PERCENT
    assert values["PF1_design_gri"].value.value_in("%") == pytest.approx(100 * 8 / 72)
    assert values["PA2_design_gri"].value.measured
    for name in ("AM2", "AM3", "AD2_design", "AF3_design"):  # the field is 14' × 12'
        assert not values[name].value.measured
        assert "no pair" in values[name].notes["reason"]
    assert values["AM1"].notes == {"n_objects": 168, "n_pairs": 3491, "n_pairs_measured": 2775}


def write_catalog(
    path: Path, columns: dict[str, Any], flag_names: list[str], unit: str = "rad"
) -> None:
    """An afw-style table: the given columns, and boolean flag columns packed into ``flags``."""
    flags = np.stack([columns.pop(name) for name in flag_names], axis=1)
    hdu = fits.BinTableHDU.from_columns(
        [fits.Column("flags", format=f"{len(flag_names)}X", array=flags)]
        + [
            fits.Column(
                name,
                format=_format(values),
                array=values,
                unit=unit if name.startswith("coord_") else None,
            )
            for name, values in columns.items()
        ]
    )
    hdu.header["FLAGCOL"] = 1
    for number, name in enumerate(flag_names, start=1):
        hdu.header[f"TFLAG{number}"] = name
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)


def _format(values: Any) -> str:
    return "K" if np.asarray(values).dtype.kind in "iu" else "D"


def real_columns(rows: np.ndarray[Any, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The real catalog's columns (``rows`` of them) and flags, as plain arrays."""
    with fits.open(CATALOG) as hdus:
        data, header = hdus[1].data, hdus[1].header
        take = slice(None) if rows is None else rows
        names = [
            "object",
            "visit",
            "coord_ra",
            "coord_dec",
            "base_PsfFlux_mag",
            "base_PsfFlux_magErr",
            "base_PsfFlux_snr",
            "base_ClassificationExtendedness_value",
        ]
        columns = {name: np.array(data[name])[take] for name in names}
        flag_names = [
            "base_PixelFlags_flag_edge",
            "base_PixelFlags_flag_saturated",
            "base_PixelFlags_flag_cr",
            "base_PixelFlags_flag_bad",
            "detect_isPrimary",
        ]
        numbers = {header[key]: int(key[5:]) for key in header if key.startswith("TFLAG")}
        for name in flag_names:
            columns[name] = np.array(data["flags"])[take, numbers[name] - 1]
    return columns, flag_names


def test_another_catalog_of_the_same_kind(tmp_path: Path) -> None:
    # The real rows shuffled, objects and visits renamed (visits in another order), written
    # anew with 5 flags only and the coordinates in degrees.
    rng = np.random.default_rng(4)
    columns, flags = real_columns(rng.permutation(4689))
    _, objects = np.unique(columns["object"], return_inverse=True)
    columns["object"] = rng.permutation(10**6)[: objects.max() + 1][objects] + 10**9
    renamed = {903986: 7, 903988: 3, 904010: 5}
    columns["visit"] = np.array([renamed[int(visit)] for visit in columns["visit"]])
    columns["coord_ra"] = np.rad2deg(columns["coord_ra"])
    columns["coord_dec"] = np.rad2deg(columns["coord_dec"])
    path = tmp_path / "shuffled.fits"
    write_catalog(path, columns, flags, unit="deg")
    shuffled = read_matched_catalogs([path])
    pa1 = photometric_repeatability(shuffled, n_min_phot_repeat=10).pa1
    assert pa1.value_in("mmag") == pytest.approx(PA1_MMAG, rel=1e-7)
    am1 = amx(pair_separations(shuffled))
    # Degrees and back move positions by an ulp (1e-7 mas): AM1 by a relative 1e-8.
    assert am1.amx.value_in("marcsec") == pytest.approx(AM1_MARCSEC, rel=1e-6)
    assert am1.counts.sum() == 2714


def test_several_files_are_concatenated_with_objects_per_file(
    tmp_path: Path, real: MatchedCatalog
) -> None:
    # Half the objects in each file, both numbered from 1: the same KPMs as the whole.
    columns, flags = real_columns()
    odd = columns["object"] % 2 == 1
    paths = []
    for name, rows in (("odd", odd), ("even", ~odd)):
        part = {key: values[rows] for key, values in columns.items()}
        part["object"] = np.unique(part["object"], return_inverse=True)[1] + 1
        paths.append(tmp_path / f"{name}.fits")
        write_catalog(paths[-1], part, list(flags))
    halves = read_matched_catalogs(paths)
    assert halves.rows == real.rows and halves.groups.count == real.groups.count
    config = SuiteConfig(photometry=PhotometryConfig(n_min_phot_repeat=10))
    whole = {m.metric: m.value.value_in(m.unit) for m in measure_catalog(real, config).measurements}
    split = {
        m.metric: m.value.value_in(m.unit) for m in measure_catalog(halves, config).measurements
    }
    assert split == pytest.approx(whole, rel=1e-12, nan_ok=True)
    # The same file twice: every object twice, so twice the stars and 4 times the pairs;
    # the distributions keep their shape, so PA1 and AM1 do not move.
    twice = read_matched_catalogs([CATALOG, CATALOG])
    pa1 = photometric_repeatability(twice, n_min_phot_repeat=10)
    assert len(pa1.star_rms) == 48 and round(pa1.pa1.value_in("mmag"), 7) == PA1_MMAG
    am1 = amx(pair_separations(twice))
    assert am1.amx.value_in("marcsec") == AM1_MARCSEC and am1.counts.sum() == 4 * 2714


def run(args: list[str]) -> Any:
    return CliRunner().invoke(catalog_command, args, catch_exceptions=False)


def test_the_command_writes_the_job(tmp_path: Path) -> None:
    out = tmp_path / "job.json"
    args = [str(CATALOG), "--dataset", "ci_hsc", "--filter", "HSC-I", "--instrument", "HSC"]
    result = run(
        [
            *args,
            "--min-phot-repeat",
            "10",
            "--level",
            "design",
            "--level",
            "stretch",
            "-o",
            str(out),
        ]
    )
    assert result.exit_code == 0, result.output
    job = json.loads(out.read_text())
    assert job["meta"] == {"dataset": "ci_hsc", "filter": "HSC-I", "instrument": "HSC"}
    assert job["metrics"] == [] and job["specs"] == []
    found = {m["metric"]: m for m in job["measurements"]}
    assert set(found) == {
        "validate_drp.PA1",
        *(
            f"validate_drp.{k}_{level}_gri"
            for k in ("PA2", "PF1")
            for level in ("design", "stretch")
        ),
        *(f"validate_drp.AM{x}" for x in (1, 2, 3)),
        *(
            f"validate_drp.{k}{x}_{level}"
            for k in ("AD", "AF")
            for x in (1, 2, 3)
            for level in ("design", "stretch")
        ),
    }
    assert round(found["validate_drp.PA1"]["value"], 7) == PA1_MMAG
    assert found["validate_drp.PA1"]["unit"] == "mmag"
    assert found["validate_drp.AM1"]["value"] == AM1_MARCSEC
    assert found["validate_drp.AM1"]["unit"] == "marcsec"
    assert found["validate_drp.AD1_design"]["unit"] == "milliarcsecond"
    assert (
        found["validate_drp.AF1_design"]["unit"]
        == found["validate_drp.PF1_design_gri"]["unit"]
        == "%"
    )
    assert found["validate_drp.AM2"]["value"] is None
    assert "no pair" in found["validate_drp.AM2"]["notes"]["reason"]
    blobs = {b["identifier"]: b for b in job["blobs"]}
    am1_blob = blobs[found["validate_drp.AM1"]["blob_refs"][0]]
    assert am1_blob["name"] == "AM1"
    reference = expected("AM1")["blobs"][0]["data"]
    assert am1_blob["data"]["bins"]["value"] == reference["bins"]["value"]
    assert am1_blob["data"]["values"]["value"] == reference["values"]["value"]
    assert am1_blob["data"]["values"]["unit"] == "ct"
    assert len(am1_blob["data"]["rms"]["value"]) == 2775
    pa1_blob = blobs[found["validate_drp.PA1"]["blob_refs"][0]]["data"]
    assert len(pa1_blob["mag"]["value"]) == len(pa1_blob["rms"]["value"]) == 24
    assert np.median(pa1_blob["rms"]["value"]) == pytest.approx(PA1_MMAG)
    again = tmp_path / "again.json"
    assert run([*args, "--min-phot-repeat", "10", "-o", str(again)]).exit_code == 0
    # The same outputs, the same job to the byte: the server stores it once, however often sent.
    assert again.read_bytes() == run_bytes(args, tmp_path / "third.json")


def run_bytes(args: list[str], out: Path) -> bytes:
    assert run([*args, "--min-phot-repeat", "10", "-o", str(out)]).exit_code == 0
    return out.read_bytes()


def test_bad_input_fails_with_one_line(tmp_path: Path) -> None:
    base = ["--dataset", "d", "--filter", "i"]
    missing = run([str(tmp_path / "nope.fits"), *base])
    assert missing.exit_code == 2 and "no such file" in missing.output
    text = tmp_path / "text.fits"
    text.write_text("not a table\n")
    not_fits = run([str(text), *base])
    assert not_fits.exit_code == 2 and "not a FITS file" in not_fits.output
    no_column = run([str(CATALOG), *base, "--mag-column", "base_Nope_mag"])
    assert no_column.exit_code == 2 and "no column 'base_Nope_mag'" in no_column.output
    no_flag = run([str(CATALOG), *base, "--flag", "base_Nope_flag"])
    assert no_flag.exit_code == 2 and "no flag 'base_Nope_flag'" in no_flag.output
    band = run([str(CATALOG), "--dataset", "d", "--filter", "N921"])
    assert band.exit_code == 2 and "--band-group" in band.output
    empty = tmp_path / "empty.fits"
    fits.HDUList([fits.PrimaryHDU()]).writeto(empty)
    no_table = run([str(empty), *base])
    assert no_table.exit_code == 2 and "no binary table" in no_table.output


def test_a_catalog_without_rows_gives_nan_with_reasons(tmp_path: Path) -> None:
    columns, flags = real_columns(np.zeros(0, dtype=np.intp))
    path = tmp_path / "empty.fits"
    write_catalog(path, columns, flags)
    out = tmp_path / "job.json"
    result = run([str(path), "--dataset", "d", "--filter", "r", "-o", str(out)])
    assert result.exit_code == 0, result.output
    measurements = json.loads(out.read_text())["measurements"]
    assert all(m["value"] is None and m["notes"]["reason"] for m in measurements)
