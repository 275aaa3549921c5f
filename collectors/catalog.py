"""``specwatch collect catalog``: LPM-17 KPMs of matched multi-visit catalogs, as faro computes.

``specwatch collect catalog MATCHED.fits… --dataset D --filter F`` reads faro's matched source
catalogs (lsst.afw.table FITS, optionally gzipped: the first binary table; flags bit-packed in
the ``flags`` column and named by the header's ``TFLAGn`` cards, or as columns of their own),
computes PA1, PA2/PF1, AM1-3 and AD/AF 1-3 (``specwatch.metrics.kpm``) and writes one job:
``validate_drp.<metric>`` measurements in the units of validate_drp's catalogue, meta
``dataset``, ``filter`` (and ``instrument``), and the blobs ``PA1`` (per-star RMS vs magnitude)
and ``AM1``-``AM3`` (faro's histogram ``bins``/``values`` and the per-pair RMS ``rms``).  No
metric definitions are sent: the server's catalogue has them.

Several files are concatenated.  Object ids are per file (afw's MultiMatch numbers objects from
1 in every catalog), so each file's objects are renumbered after the previous file's: an object
never spans two files.  Visit ids are global exposure ids and are kept, so objects of different
files (e.g. neighbouring tracts) pair up in the visits they share.

Large blob arrays (the per-star columns, the per-pair RMS) are thinned to ``--blob-points``
evenly spaced entries so that a job stays small; the KPMs and histograms use every value.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
from astropy.io import fits
from numpy.typing import NDArray

from specwatch.metrics.kpm import lpm17
from specwatch.metrics.kpm.astrometry import ANNULUS_ARCMIN
from specwatch.metrics.kpm.selection import MatchedCatalog, ObjectSelection
from specwatch.metrics.kpm.suite import (
    AstrometryConfig,
    CatalogKpms,
    PhotometryConfig,
    SuiteConfig,
    measure_catalog,
)

from .cli import one_line_errors
from .emit import JobOutput, NamedJob, emit_jobs, job_output_options
from .errors import BadInputError
from .job import JobBuilder, datum, json_number

PACKAGE = "validate_drp"
PIXEL_FLAGS = (
    "base_PixelFlags_flag_saturated",
    "base_PixelFlags_flag_cr",
    "base_PixelFlags_flag_bad",
    "base_PixelFlags_flag_edge",
)


@dataclass(frozen=True)
class CatalogColumns:
    """Column names of a matched catalog (faro's, by default); coordinates' unit."""

    object: str = "object"
    visit: str = "visit"
    ra: str = "coord_ra"
    dec: str = "coord_dec"
    mag: str = "base_PsfFlux_mag"
    mag_err: str = "base_PsfFlux_magErr"
    snr: str = "base_PsfFlux_snr"
    extendedness: str = "base_ClassificationExtendedness_value"
    flags: tuple[str, ...] = PIXEL_FLAGS
    primary: str = "detect_isPrimary"
    coord_unit: str = "auto"
    """``rad``, ``deg``, or ``auto``: the column's TUNIT when it says deg, else radians."""


def _open_table(path: Path) -> fits.HDUList:
    if not path.is_file():
        raise BadInputError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hdus = fits.open(path, memmap=True)
    except (OSError, ValueError, EOFError) as error:
        raise BadInputError(f"{path}: not a FITS file ({error})") from error
    return hdus


class _Table:
    """Columns of a FITS binary table, native byte order, flags decoded."""

    def __init__(self, path: Path, hdu: fits.BinTableHDU) -> None:
        self.path, self.header, self.data = path, hdu.header, hdu.data
        self.names = set(self.data.columns.names) if self.data is not None else set()
        self.rows = 0 if self.data is None else len(self.data)

    def column(self, name: str, option: str, dtype: type[Any] = np.float64) -> NDArray[Any]:
        if name not in self.names:
            raise BadInputError(f"{self.path}: no column {name!r} (see {option})")
        return np.array(self.data[name], dtype=dtype)

    def flag(self, name: str, option: str) -> NDArray[np.bool_]:
        """A flag column, or bit ``n - 1`` of the bit-packed flags if ``TFLAGn`` names it."""
        if name in self.names:
            return np.array(self.data[name]).astype(bool).reshape(self.rows)
        numbers = [int(key[5:]) for key in self.header if key.startswith("TFLAG")]
        bit = next((n - 1 for n in numbers if self.header[f"TFLAG{n}"] == name), None)
        flag_column = int(self.header.get("FLAGCOL", 0))
        if bit is None or flag_column < 1:
            raise BadInputError(f"{self.path}: no flag {name!r} (see {option})")
        if self.rows == 0:
            return np.zeros(0, dtype=bool)
        raw = self.data.view(np.ndarray)[self.data.columns.names[flag_column - 1]]
        packed = np.asarray(raw, dtype=np.uint8).reshape(self.rows, -1)
        is_set: NDArray[np.bool_] = (packed[:, bit // 8] & (0x80 >> (bit % 8))) != 0
        return is_set

    def radians(self, name: str, option: str, unit: str) -> NDArray[np.float64]:
        values = self.column(name, option)
        column_unit = str(self.data.columns[name].unit or "").strip().lower()
        degrees = unit == "deg" or (unit == "auto" and column_unit in ("deg", "degree", "degrees"))
        return np.deg2rad(values) if degrees else values


def _read_file(
    path: Path, columns: CatalogColumns, *, flags: bool, primary: bool
) -> dict[str, NDArray[Any]]:
    with _open_table(path) as hdus:
        tables = [hdu for hdu in hdus if isinstance(hdu, fits.BinTableHDU)]
        if not tables:
            raise BadInputError(f"{path}: no binary table (a matched catalog is HDU 1)")
        table = _Table(path, tables[0])
        arrays = {
            "object_id": table.column(columns.object, "--object-column", np.int64),
            "visit": table.column(columns.visit, "--visit-column", np.int64),
            "ra_rad": table.radians(columns.ra, "--ra-column", columns.coord_unit),
            "dec_rad": table.radians(columns.dec, "--dec-column", columns.coord_unit),
            "psf_mag": table.column(columns.mag, "--mag-column"),
            "psf_snr": table.column(columns.snr, "--snr-column"),
            "extendedness": table.column(columns.extendedness, "--extendedness-column"),
        }
        if columns.mag_err in table.names:
            arrays["psf_mag_err"] = table.column(columns.mag_err, "--mag-err-column")
        else:
            arrays["psf_mag_err"] = np.full(table.rows, np.nan)
        flagged = np.zeros(table.rows, dtype=bool)
        for name in columns.flags if flags else ():
            flagged |= table.flag(name, "--flag")
        arrays["flagged"] = flagged
        if primary:
            arrays["is_primary"] = table.flag(columns.primary, "--primary-column")
        return arrays


def read_matched_catalogs(
    paths: Sequence[Path],
    columns: CatalogColumns | None = None,
    *,
    flags: bool = True,
    primary: bool = True,
) -> MatchedCatalog:
    """Read and concatenate matched catalogs (object ids renumbered per file, see above).

    ``flags``/``primary``: read the pixel flags / ``detect_isPrimary`` (the astrometric
    selection needs them).  Raises ``BadInputError`` on a missing file, column or flag, or a
    file that is not a FITS table.
    """
    columns = columns or CatalogColumns()
    if not paths:
        raise BadInputError("no catalog given")
    parts = [_read_file(path, columns, flags=flags, primary=primary) for path in paths]
    offset = 0
    for part in parts:
        ids, dense = np.unique(part["object_id"], return_inverse=True)
        part["object_id"] = dense.astype(np.int64).reshape(-1) + offset
        offset += len(ids)
    merged = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    return MatchedCatalog(**merged)


def _thinned(count: int, limit: int) -> NDArray[np.intp]:
    """At most ``limit`` evenly spaced indices of ``range(count)``."""
    if count <= limit:
        return np.arange(count, dtype=np.intp)
    return np.unique(np.linspace(0, count - 1, max(limit, 2)).round().astype(np.intp))


def _blob_values(values: NDArray[Any]) -> list[Any]:
    if values.dtype.kind in "iub":
        return [int(value) for value in values]
    return [json_number(float(value)) for value in values]


def catalog_job(
    kpms: CatalogKpms,
    *,
    dataset: str,
    filter_name: str,
    instrument: str | None = None,
    blob_points: int = 10_000,
) -> dict[str, Any]:
    """The lsst.verify job of ``kpms``: measurements, blobs and meta (no definitions)."""
    meta: dict[str, Any] = {"dataset": dataset, "filter": filter_name}
    if instrument:
        meta["instrument"] = instrument
    builder = JobBuilder(meta=meta)
    blob_ids = {}
    for name, blob in kpms.blobs.items():
        data = {}
        for key, column in blob.items():
            values = column.values
            if name == "PA1" or key == "rms":
                values = values[_thinned(len(values), blob_points)]
            data[key] = datum(
                _blob_values(values),
                column.unit,
                label=column.label,
                description=column.description,
            )
        blob_ids[name] = builder.add_blob(name, data)
    for item in kpms.measurements:
        builder.add_measurement(
            f"{PACKAGE}.{item.metric}",
            item.value.value_in(item.unit),
            item.unit,
            blob_refs=[blob_ids[item.blob]] if item.blob else [],
            notes=item.notes,
        )
    return builder.document()


def _band_group(filter_name: str, given: str | None) -> lpm17.BandGroup:
    for group in lpm17.BAND_GROUPS:
        if given == group:
            return group
    found = lpm17.band_group(filter_name)
    if found is None:
        raise BadInputError(f"--filter {filter_name!r}: not a ugrizy band; give --band-group")
    return found


@click.command("catalog")
@click.argument("catalogs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--dataset", required=True, help="The dataset's name (meta.dataset).")
@click.option("--filter", "filter_name", required=True, help="The band, e.g. i or HSC-I.")
@click.option("--instrument", help="The instrument, e.g. HSC (meta.instrument).")
@click.option("--band-group", type=click.Choice(lpm17.BAND_GROUPS), help="Default: --filter's.")
@click.option(
    "--level",
    "levels",
    type=click.Choice(lpm17.LEVELS),
    multiple=True,
    default=("design",),
    show_default=True,
    help="LPM-17 level(s) of PA2/PF1 and ADx/AFx (design = faro's default thresholds).",
)
@click.option("--min-phot-repeat", default=50, show_default=True, help="faro nMinPhotRepeat.")
@click.option("--bright-snr-min", default=200.0, show_default=True, help="PA1 median S/N min.")
@click.option("--bright-snr-max", default=math.inf, show_default=True, help="PA1 S/N max.")
@click.option("--astrom-snr-min", default=50.0, show_default=True, help="AMx median S/N min.")
@click.option("--bright-mag-cut", default=17.0, show_default=True, help="AMx bright limit, mag.")
@click.option("--faint-mag-cut", default=21.5, show_default=True, help="AMx faint limit, mag.")
@click.option("--annulus-width", default=2.0, show_default=True, help="AMx annulus, arcmin.")
@click.option("--am1-annulus", default=ANNULUS_ARCMIN[1], show_default=True, help="arcmin.")
@click.option("--am2-annulus", default=ANNULUS_ARCMIN[2], show_default=True, help="arcmin.")
@click.option("--am3-annulus", default=ANNULUS_ARCMIN[3], show_default=True, help="arcmin.")
@click.option("--no-flag-cut", is_flag=True, help="AMx: keep objects with flagged pixels.")
@click.option("--no-primary-cut", is_flag=True, help="AMx: do not require detect_isPrimary.")
@click.option("--object-column", default="object", show_default=True)
@click.option("--visit-column", default="visit", show_default=True)
@click.option("--ra-column", default="coord_ra", show_default=True)
@click.option("--dec-column", default="coord_dec", show_default=True)
@click.option("--coord-unit", type=click.Choice(["auto", "rad", "deg"]), default="auto")
@click.option("--mag-column", default="base_PsfFlux_mag", show_default=True)
@click.option("--mag-err-column", default="base_PsfFlux_magErr", show_default=True)
@click.option("--snr-column", default="base_PsfFlux_snr", show_default=True)
@click.option(
    "--extendedness-column", default="base_ClassificationExtendedness_value", show_default=True
)
@click.option("--flag", "flags", multiple=True, default=PIXEL_FLAGS, show_default=True)
@click.option("--primary-column", default="detect_isPrimary", show_default=True)
@click.option("--blob-points", default=10_000, show_default=True, help="Largest blob array.")
@job_output_options
@one_line_errors
def catalog_command(catalogs: tuple[Path, ...], output: JobOutput, **options: Any) -> None:
    """LPM-17 KPMs (PA1, PA2, PF1, AM/AD/AF 1-3) of matched catalogs, as faro computes them."""
    columns = CatalogColumns(
        object=options["object_column"],
        visit=options["visit_column"],
        ra=options["ra_column"],
        dec=options["dec_column"],
        mag=options["mag_column"],
        mag_err=options["mag_err_column"],
        snr=options["snr_column"],
        extendedness=options["extendedness_column"],
        flags=tuple(options["flags"]),
        primary=options["primary_column"],
        coord_unit=options["coord_unit"],
    )
    selection = ObjectSelection(
        snr_min=options["astrom_snr_min"],
        do_flags=not options["no_flag_cut"],
        is_primary=not options["no_primary_cut"],
    )
    config = SuiteConfig(
        photometry=PhotometryConfig(
            snr_min=options["bright_snr_min"],
            snr_max=options["bright_snr_max"],
            n_min_phot_repeat=options["min_phot_repeat"],
        ),
        astrometry=AstrometryConfig(
            annuli_arcmin={
                1: options["am1_annulus"],
                2: options["am2_annulus"],
                3: options["am3_annulus"],
            },
            width_arcmin=options["annulus_width"],
            bright_mag_cut=options["bright_mag_cut"],
            faint_mag_cut=options["faint_mag_cut"],
            selection=selection,
        ),
        levels=tuple(dict.fromkeys(options["levels"])),
        band_group=_band_group(options["filter_name"], options["band_group"]),
    )
    catalog = read_matched_catalogs(
        list(catalogs), columns, flags=selection.do_flags, primary=selection.is_primary
    )
    document = catalog_job(
        measure_catalog(catalog, config),
        dataset=options["dataset"],
        filter_name=options["filter_name"],
        instrument=options["instrument"],
        blob_points=options["blob_points"],
    )
    name = f"{options['dataset']}_{options['filter_name']}_catalog"
    emit_jobs([NamedJob(name, document)], output)
