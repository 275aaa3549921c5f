"""The LPM-17 KPM functions on small synthetic catalogs with answers worked out by hand."""

from __future__ import annotations

import itertools
import math
from typing import Any

import astropy.units as u
import numpy as np
import pytest
from numpy.typing import NDArray

from specwatch.metrics.kpm import lpm17, visits
from specwatch.metrics.kpm.astrometry import (
    adx,
    afx,
    amx,
    histogram,
    histogram_bins,
    pair_separations,
)
from specwatch.metrics.kpm.grouping import Groups, reduce_runs
from specwatch.metrics.kpm.pairs import annulus_pairs, haversine
from specwatch.metrics.kpm.photometry import pa2, pf1, photometric_repeatability
from specwatch.metrics.kpm.selection import MatchedCatalog, ObjectSelection, select_objects

MAS = np.deg2rad(1 / 3.6e6)
ARCMIN = np.deg2rad(1 / 60)


def catalog(**columns: Any) -> MatchedCatalog:
    """A catalog from lists; unspecified columns are those of bright, clean point sources."""
    rows = len(columns["object_id"])
    defaults: dict[str, Any] = {
        "visit": np.tile([1, 2, 3], rows)[:rows],
        "ra_rad": np.zeros(rows),
        "dec_rad": np.zeros(rows),
        "psf_mag": np.full(rows, 20.0),
        "psf_snr": np.full(rows, 500.0),
        "extendedness": np.zeros(rows),
        "flagged": np.zeros(rows, dtype=bool),
        "is_primary": np.ones(rows, dtype=bool),
    }
    arrays: dict[str, Any] = {**defaults, **columns}
    converted: dict[str, Any] = {
        key: None if value is None else np.asarray(value) for key, value in arrays.items()
    }
    return MatchedCatalog(**converted)


# Grouping -----------------------------------------------------------------------------------


def test_groups_follow_increasing_ids_and_keep_row_order() -> None:
    groups = Groups.build(np.array([7, 3, 7, 3, 9]))
    assert groups.ids.tolist() == [3, 7, 9]
    assert groups.sizes.tolist() == [2, 2, 1]
    assert groups.order.tolist() == [1, 3, 0, 2, 4]
    assert groups.index.tolist() == [1, 0, 1, 0, 2]
    values = np.array([1.0, 10.0, 3.0, 30.0, 5.0])
    assert groups.reduce(values, np.sum).tolist() == [40.0, 4.0, 5.0]
    first = groups.reduce(values, lambda matrix, axis: matrix[:, 0])
    assert first.tolist() == [10.0, 1.0, 5.0]
    empty = groups.reduce(values, np.sum, where=values < 5)
    assert math.isnan(empty[0]) and empty[1] == 4.0 and math.isnan(empty[2])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_reduce_runs_is_bit_identical_to_numpy_per_run(dtype: type[Any]) -> None:
    rng = np.random.default_rng(5)
    sizes = rng.integers(0, 12, 400).astype(np.intp)
    values = (20 + rng.normal(0, 0.05, int(sizes.sum()))).astype(dtype)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    for reducer in (np.median, np.nanstd, np.mean):
        found = reduce_runs(values, sizes, reducer)
        assert found.dtype == dtype
        for start, size, value in zip(starts, sizes, found, strict=True):
            if size:
                assert value == reducer(values[start : start + size])
            else:
                assert math.isnan(value)


# Selection (faro's filterMatches) -----------------------------------------------------------


def test_selection_applies_each_of_faros_rules() -> None:
    # Objects 1..8, three sources each: 1 passes, every other fails one rule.
    objects = np.repeat(np.arange(1, 9), 3)
    mag = np.full(24, 20.0)
    mag[3 * 1] = np.nan  # object 2: a NaN magnitude
    snr = np.full(24, 500.0)
    snr[6:9] = [40.0, -5.0, np.nan]  # object 3: median of finite S/N is 17.5
    ext = np.zeros(24)
    ext[9] = 0.95  # object 4: extended in one visit
    ext[12] = np.nan  # object 5: extendedness unknown
    flagged = np.zeros(24, dtype=bool)
    flagged[15] = True  # object 6: a flagged pixel
    primary = np.ones(24, dtype=bool)
    primary[18] = False  # object 7: not primary in one visit
    objects[23] = 99  # object 8 keeps 2 sources (passes); 99 has 1 source
    cat = catalog(
        object_id=objects,
        psf_mag=mag,
        psf_snr=snr,
        extendedness=ext,
        flagged=flagged,
        is_primary=primary,
    )
    keep = select_objects(cat, ObjectSelection())
    assert cat.groups.ids[keep].tolist() == [1, 8]
    lenient = ObjectSelection(snr_min=10, do_flags=False, is_primary=False)
    assert cat.groups.ids[select_objects(cat, lenient)].tolist() == [1, 3, 6, 7, 8]
    extended = ObjectSelection(extended=True, extendedness_cut=-1.0)
    assert cat.groups.ids[select_objects(cat, extended)].tolist() == [1, 4, 8]


def test_selection_needs_the_flag_columns_it_applies() -> None:
    cat = catalog(object_id=[1, 1], flagged=None)
    with pytest.raises(ValueError, match="pixel flags"):
        select_objects(cat, ObjectSelection())
    with pytest.raises(ValueError, match="has 1 rows"):
        catalog(object_id=[1, 1], visit=[1])


# Photometry ---------------------------------------------------------------------------------


def photometric_catalog(spreads_mmag: list[float]) -> MatchedCatalog:
    """One star per spread s, 3 visits, magnitudes 20 - s, 20, 20 + s (mmag)."""
    offsets = np.array([[-s, 0.0, s] for s in spreads_mmag]) / 1000
    return catalog(
        object_id=np.repeat(np.arange(len(spreads_mmag)), 3),
        psf_mag=(20 + offsets).ravel(),
    )


def test_pa1_is_the_median_population_rms_of_the_stars() -> None:
    spreads = [3.0, 6.0, 9.0, 12.0, 30.0]  # rms = s * sqrt(2/3)
    result = photometric_repeatability(photometric_catalog(spreads), n_min_phot_repeat=2)
    assert result.pa1.quantity.unit == u.mmag
    assert result.pa1.value_in(u.mmag) == pytest.approx(9.0 * math.sqrt(2 / 3), rel=1e-9)
    assert result.star_rms.to_value(u.mmag) == pytest.approx(
        [s * math.sqrt(2 / 3) for s in spreads], rel=1e-9
    )
    assert result.star_count.tolist() == [3] * 5
    # Residuals ±s and 0: 2 of 15 beyond 15 mmag (the 30 mmag star), 2 beyond 10 mmag +.
    assert pf1(result).value_in(u.percent) == pytest.approx(100 * 2 / 15)
    assert pf1(result, 10 * u.mmag).value_in(u.percent) == pytest.approx(100 * 4 / 15)
    residuals = np.abs(result.residuals.to_value(u.mmag))
    assert pa2(result).value_in(u.mmag) == pytest.approx(np.percentile(residuals, 90))
    assert pa2(result, 20 * u.percent).value_in(u.mmag) == pytest.approx(
        np.percentile(residuals, 80)
    )


def test_pa1_needs_more_than_n_min_stars_with_three_measurements() -> None:
    cat = photometric_catalog([3.0, 6.0, 9.0])
    result = photometric_repeatability(cat, n_min_phot_repeat=3)  # 9 sources, 3 stars
    assert not result.pa1.measured
    assert result.pa1.reason and "3 objects with more than 2 measurements" in result.pa1.reason
    assert not pa2(result).measured and not pf1(result).measured
    assert math.isnan(pf1(result).value_in(u.percent))
    too_few_sources = photometric_repeatability(cat, n_min_phot_repeat=9)
    assert too_few_sources.pa1.reason and "9 sources of 3 objects" in too_few_sources.pa1.reason


def test_pa1_ignores_faint_negative_snr_and_nan_objects() -> None:
    cat = photometric_catalog([3.0, 6.0, 9.0, 12.0])
    snr = np.full(12, 500.0)
    snr[9:12] = [-3.0, -1.0, 250.0]  # median -1: not bright
    mag = cat.psf_mag.copy()
    mag[0] = np.nan  # star 0 dropped by the finite-magnitude rule
    cat = catalog(object_id=cat.object_id, psf_mag=mag, psf_snr=snr)
    result = photometric_repeatability(cat, n_min_phot_repeat=1)
    assert result.pa1.value_in(u.mmag) == pytest.approx(7.5 * math.sqrt(2 / 3))
    nothing = photometric_repeatability(catalog(object_id=[1, 1], psf_mag=[np.nan] * 2))
    assert not nothing.pa1.measured and nothing.n_objects == 0


# Astrometry ---------------------------------------------------------------------------------


def astrometric_catalog(
    places: list[tuple[float, float]], shifts_mas: dict[int, list[float]]
) -> MatchedCatalog:
    """Objects at (ra, dec) arcmin; object k moves by ``shifts_mas[k]`` in RA per visit."""
    ra, dec = [], []
    for index, (ra_arcmin, dec_arcmin) in enumerate(places):
        for shift in shifts_mas.get(index, [0.0, 0.0, 0.0]):
            ra.append(ra_arcmin * ARCMIN + shift * MAS)
            dec.append(dec_arcmin * ARCMIN)
    return catalog(
        object_id=np.repeat(np.arange(len(places)), 3),
        ra_rad=np.array(ra),
        dec_rad=np.array(dec),
    )


def test_am1_is_the_rms_of_a_pairs_separation_over_visits() -> None:
    # A-B are 5' apart on the equator; B moves 0, +3.1, -3.1 mas: sample rms 3.1 mas.
    # C (2' west of A) and D (10' north) are in no annulus with anyone.
    cat = astrometric_catalog(
        [(0.0, 0.0), (5.0, 0.0), (-2.0, 0.0), (0.0, 10.0)], {1: [0.0, 3.1, -3.1]}
    )
    separations = pair_separations(cat)
    assert separations.n_objects == 4
    assert separations.n_pairs == 1
    assert separations.rms.to_value(u.marcsec) == pytest.approx([3.1], rel=1e-6)
    result = amx(separations)
    assert result.amx.value_in(u.marcsec) == pytest.approx(3.1, rel=1e-6)
    assert result.bins.shape == (201,) and result.counts.sum() == 1
    assert result.counts[20] == 1  # 3.1 mas is in [3.0, 3.15)
    # 5' is not in AM2's 19'-21' annulus; D-C (9') neither: no pairs, NaN with a reason.
    far = pair_separations(cat, annulus_r_arcmin=20.0)
    assert far.n_pairs == 0 and not amx(far).amx.measured
    assert "annulus" in str(amx(far).amx.reason)


def test_adx_afx_use_deviations_from_the_pairs_median_separation() -> None:
    # B moves 0, +30, -30 mas: residuals |d - median| are 0, 30, 30 mas; their median 30.
    # Deviations from it: -30, 0, 0 mas.
    cat = astrometric_catalog([(0.0, 0.0), (5.0, 0.0)], {1: [0.0, 30.0, -30.0]})
    separations = pair_separations(cat)
    assert np.sort(separations.deviations.to_value(u.marcsec)) == pytest.approx(
        [-30.0, 0.0, 0.0], abs=1e-6
    )
    assert adx(separations).value_in(u.marcsec) == pytest.approx(0.0, abs=1e-6)
    assert afx(separations).value_in(u.percent) == pytest.approx(100 / 3)
    assert afx(separations, 40 * u.marcsec).value_in(u.percent) == 0.0
    assert adx(separations, 80 * u.percent).value_in(u.marcsec) == pytest.approx(
        np.percentile([-30.0, 0.0, 0.0], 20), abs=1e-6
    )


def test_astrometry_skips_nan_positions_and_needs_pairs() -> None:
    cat = astrometric_catalog([(0.0, 0.0), (5.0, 0.0)], {1: [0.0, 3.0, -3.0]})
    ra = cat.ra_rad.copy()
    ra[5] = np.nan  # B's third visit: its mean position is NaN, so B pairs with nobody
    broken = catalog(object_id=cat.object_id, ra_rad=ra, dec_rad=cat.dec_rad)
    separations = pair_separations(broken)
    assert separations.n_pairs == 0 and not amx(separations).amx.measured
    lonely = pair_separations(catalog(object_id=[1, 1]))
    assert lonely.reason and "1 objects pass" in lonely.reason
    assert not adx(lonely).measured and not afx(lonely).measured


def reference_separations(
    cat: MatchedCatalog, inner: float, outer: float
) -> tuple[list[float], list[float]]:
    """faro's loops, written out plainly: per-pair rms and outlier residuals (radians)."""
    groups = cat.groups
    rms: list[float] = []
    residuals: list[float] = []
    members = [groups.order[groups.index[groups.order] == g] for g in range(groups.count)]
    mean = []
    for rows in members:
        vector = np.stack(
            [
                np.cos(cat.dec_rad[rows]) * np.cos(cat.ra_rad[rows]),
                np.cos(cat.dec_rad[rows]) * np.sin(cat.ra_rad[rows]),
                np.sin(cat.dec_rad[rows]),
            ]
        ).sum(axis=1)
        mean.append(
            (
                np.arctan2(vector[1], vector[0]) % (2 * np.pi),
                np.arctan2(vector[2], np.hypot(vector[0], vector[1])),
            )
        )
    for a, b in itertools.combinations(range(groups.count), 2):
        distance = float(
            haversine(mean[a][0], mean[a][1], np.array(mean[b][0]), np.array(mean[b][1]))
        )
        if not inner <= distance < outer:
            continue
        found = []
        for row in sorted(members[a], key=lambda r: cat.visit[r]):
            partners = [r for r in members[b] if cat.visit[r] == cat.visit[row]]
            if partners:
                other = partners[0]
                points = [cat.ra_rad[row], cat.dec_rad[row], cat.ra_rad[other], cat.dec_rad[other]]
                if np.all(np.isfinite(points)):
                    found.append(
                        float(
                            haversine(
                                points[0], points[1], np.array(points[2]), np.array(points[3])
                            )
                        )
                    )
        if len(found) > 1:
            rms.append(float(np.std(found, ddof=1)))
        if len(found) >= 3:
            real = np.array([d for d in found if d > 0])
            residuals.extend(np.abs(real - np.median(real)).tolist())
    return rms, residuals


@pytest.mark.parametrize(
    ("duplicates", "small_tables"), [(False, False), (True, False), (True, True)]
)
def test_pair_separations_match_faros_loops_on_a_random_field(
    duplicates: bool, small_tables: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No duplicated visit: the dense object × visit table; else the per-source look-up
    # (a lookup table, or with small_tables a binary search).
    if small_tables:
        monkeypatch.setattr(visits, "_DENSE_CELLS", 0)
    rng = np.random.default_rng(11)
    n = 60
    centres = rng.uniform(-6, 6, (n, 2)) * ARCMIN
    visit = np.tile([1, 2, 3, 4], n)
    if duplicates:
        moved = rng.random(4 * n) < 0.2
        visit[moved] = rng.integers(1, 5, int(moved.sum()))
    ra = np.repeat(centres[:, 0], 4) + rng.normal(0, 20, 4 * n) * MAS
    dec = np.repeat(centres[:, 1], 4) + rng.normal(0, 20, 4 * n) * MAS
    ra[::37] = np.nan
    cat = catalog(object_id=np.repeat(np.arange(n), 4), visit=visit, ra_rad=ra, dec_rad=dec)
    inner, outer = np.deg2rad(np.array([4.0, 6.0]) / 60)
    expected_rms, expected_residuals = reference_separations(cat, inner, outer)
    found = pair_separations(cat)
    assert found.n_pairs > 50
    assert sorted(found.rms.to_value(u.radian)) == pytest.approx(sorted(expected_rms), rel=1e-12)
    deviations = (np.array(expected_residuals) - np.median(expected_residuals)) * u.radian
    assert sorted(found.deviations.to_value(u.marcsec)) == pytest.approx(
        sorted(deviations.to_value(u.marcsec)), rel=1e-12, abs=1e-12
    )


def brute_force_pairs(
    ra: NDArray[np.float64], dec: NDArray[np.float64], inner: float, outer: float
) -> set[tuple[int, int]]:
    found = set()
    for i in range(len(ra)):
        distance = haversine(ra[i], dec[i], ra[i + 1 :], dec[i + 1 :])
        for j in np.flatnonzero((inner <= distance) & (distance < outer)):
            found.add((i, i + 1 + int(j)))
    return found


@pytest.mark.parametrize(
    ("centre_dec_deg", "spread_deg", "inner_arcmin", "outer_arcmin"),
    [
        (0.0, 0.3, 4.0, 6.0),
        (-89.9, 0.3, 4.0, 6.0),
        (30.0, 4.0, 199.0, 201.0),
        (10.0, 0.05, 0.0, 1.0),
        (0.0, 180.0, 600.0, 720.0),  # the whole sky, an annulus of 10°-12°
    ],
)
def test_annulus_pairs_finds_exactly_the_brute_force_pairs(
    centre_dec_deg: float, spread_deg: float, inner_arcmin: float, outer_arcmin: float
) -> None:
    rng = np.random.default_rng(3)
    dec = np.deg2rad(centre_dec_deg + rng.uniform(-spread_deg, spread_deg, 700))
    dec = np.clip(dec, -np.pi / 2, np.pi / 2)
    ra = np.mod(np.deg2rad(359.9 + rng.uniform(-spread_deg, spread_deg, 700)), 2 * np.pi)
    inner, outer = inner_arcmin * ARCMIN, outer_arcmin * ARCMIN
    found: set[tuple[int, int]] = set()
    for i, j in annulus_pairs(ra, dec, inner, outer):
        assert np.all(i < j)
        found.update(zip(i.tolist(), j.tolist(), strict=True))
    expected = brute_force_pairs(ra, dec, inner, outer)
    assert expected and found == expected


def test_histogram_equals_numpys() -> None:
    edges = histogram_bins()
    assert len(edges) == 201 and edges[3] == 3 * 0.15 and edges[-1] == 30.0
    rng = np.random.default_rng(2)
    values = np.concatenate([rng.uniform(-1, 31, 5000), edges, np.nextafter(edges, 0)])
    assert histogram(values, edges).tolist() == np.histogram(values, edges)[0].tolist()
    uneven = np.array([0.0, 1.0, 1.5, 10.0, 100.0])
    assert histogram(values, uneven).tolist() == np.histogram(values, uneven)[0].tolist()


def test_lpm17_band_groups_and_thresholds() -> None:
    assert [lpm17.band_group(name) for name in ("i", "HSC-R2", "g", "z", "y", "HSC-U", "N921")] == [
        "gri",
        "gri",
        "gri",
        "uzy",
        "uzy",
        "uzy",
        None,
    ]
    assert lpm17.pa2_threshold("design", "uzy") == 22.5 * u.mmag
    assert lpm17.ad_threshold(3, "design") == 30 * u.marcsec
    assert lpm17.pf1_threshold("stretch") == lpm17.af_threshold("stretch") == 5 * u.percent
