"""The sources of selected objects by object and visit; the per-visit distances of object pairs.

faro's ``matchVisitComputeDistance``: for each source of the first object, in visit order, the
distance to the *first* source of the second object in the same visit, when all four
coordinates are finite.  When no object has two sources in one visit (the usual matched
catalog) a dense object × visit table gives both sides at once; otherwise each source of the
first object looks its visit up among the second object's sources.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .grouping import Groups, run_positions, run_starts
from .pairs import haversine_cos, mean_positions

FloatArray = NDArray[np.float64]
IndexArray = NDArray[np.intp]
_DENSE_CELLS = 1 << 23


def _first_row_lookup(
    keys: NDArray[np.int64], size: int
) -> Callable[[NDArray[np.int64]], IndexArray]:
    """A map from key to the first position holding it (``-1`` if none); ``keys`` sorted."""
    first = np.concatenate(([True], keys[1:] != keys[:-1])) if len(keys) else keys.astype(bool)
    positions = np.flatnonzero(first)
    if size <= _DENSE_CELLS:
        table = np.full(size, -1, dtype=np.intp)
        table[keys[first]] = positions
        return lambda query: table[query]
    unique = keys[first]

    def search(query: NDArray[np.int64]) -> IndexArray:
        where = np.minimum(np.searchsorted(unique, query), len(unique) - 1)
        return np.where(unique[where] == query, positions[where], -1)

    return search


@dataclass(frozen=True)
class VisitSources:
    """Sources of the selected objects: by object (faro's order), then visit, then row.

    ``ra``/``dec`` in radians; ``starts``/``sizes`` index each object's run of sources.
    """

    ra: FloatArray
    dec: FloatArray
    cos_dec: FloatArray
    finite: NDArray[np.bool_]
    visit_index: IndexArray
    starts: IndexArray
    sizes: IndexArray
    n_visits: int
    table: IndexArray | None
    """Dense object × visit source positions, -1 if absent or not finite; None if not used."""
    lookup: Callable[[NDArray[np.int64]], IndexArray]

    @classmethod
    def build(
        cls,
        groups: Groups,
        objects: IndexArray,
        visit: NDArray[np.int64],
        ra: FloatArray,
        dec: FloatArray,
    ) -> VisitSources:
        """The sources of ``objects`` (increasing group indices of ``groups``)."""
        rows = groups.order[np.isin(groups.index[groups.order], objects)]
        compact = np.searchsorted(objects, groups.index[rows])
        visit_ids, visit_index = np.unique(visit[rows], return_inverse=True)
        by_object = np.lexsort((visit_index, compact))
        rows, compact = rows[by_object], compact[by_object]
        visit_index = visit_index.reshape(-1)[by_object].astype(np.intp)
        sizes = np.bincount(compact, minlength=len(objects)).astype(np.intp)
        source_ra, source_dec = ra[rows], dec[rows]
        finite = np.isfinite(source_ra) & np.isfinite(source_dec)
        n_visits = len(visit_ids)
        keys = compact.astype(np.int64) * n_visits + visit_index
        unique = len(keys) < 2 or bool(np.all(keys[1:] != keys[:-1]))
        cells = len(objects) * n_visits
        table: IndexArray | None = None
        if unique and cells <= min(_DENSE_CELLS, 4 * len(rows)):
            flat = np.full(cells, -1, dtype=np.intp)
            flat[keys[finite]] = np.flatnonzero(finite)
            table = flat.reshape(len(objects), n_visits)
        return cls(
            source_ra,
            source_dec,
            np.cos(source_dec),
            finite,
            visit_index,
            run_starts(sizes),
            sizes,
            n_visits,
            table,
            _first_row_lookup(keys, cells),
        )

    def mean_positions(self) -> tuple[FloatArray, FloatArray]:
        """Each object's mean position (``lsst.geom.averageSpherePoint``), radians."""
        return mean_positions(self.ra, self.dec, np.arange(len(self.ra)), self.sizes)

    def _matched(
        self, first: IndexArray, second: IndexArray
    ) -> tuple[IndexArray, IndexArray, IndexArray]:
        """Source positions of each pair's shared visits (pair by pair), and counts per pair."""
        if self.table is not None:
            own_table, other_table = self.table[first], self.table[second]
            shared = (own_table >= 0) & (other_table >= 0)
            per_pair = shared.sum(axis=1).astype(np.intp)
            return own_table[shared], other_table[shared], per_pair
        own = run_positions(self.starts[first], self.sizes[first])
        pair_of = np.repeat(np.arange(len(first), dtype=np.intp), self.sizes[first])
        query = second[pair_of].astype(np.int64) * self.n_visits + self.visit_index[own]
        other = self.lookup(query)
        shared = other >= 0
        own, other, pair_of = own[shared], other[shared], pair_of[shared]
        both = self.finite[own] & self.finite[other]
        per_pair = np.bincount(pair_of[both], minlength=len(first)).astype(np.intp)
        return own[both], other[both], per_pair

    def distances(self, first: IndexArray, second: IndexArray) -> tuple[FloatArray, IndexArray]:
        """Per-visit distances (radians) of each pair, pair after pair; their count per pair."""
        own, other, per_pair = self._matched(first, second)
        distance = haversine_cos(
            self.ra[own],
            self.dec[own],
            self.cos_dec[own],
            self.ra[other],
            self.dec[other],
            self.cos_dec[other],
        )
        return distance, per_pair
