"""Sky positions: faro's haversine distance, mean positions, and pairs within an annulus.

faro compares every object with every later one (O(N²) in Python).  :func:`annulus_pairs`
finds the same pairs with a grid: points are projected orthographically on the plane tangent
to their mean direction, where a planar distance never exceeds the 3-D chord (so a cell pair
farther apart than the annulus' outer chord cannot hold a pair), and every candidate is then
accepted or rejected with faro's own haversine test on the same positions.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .grouping import run_starts

FloatArray = NDArray[np.float64]
IndexArray = NDArray[np.intp]
_MAX_CELLS = 1 << 22
_BATCH_CELL_PAIRS = 1 << 18
_BATCH_CANDIDATES = 1 << 19
_SAFETY = 1e-9  # relative slack of the cell bounds (the exact test comes after)
_EDGE = 1e-8  # chord² this close (relative) to an edge is tested with the haversine


def haversine(
    ra_from: FloatArray | float, dec_from: FloatArray | float, ra: FloatArray, dec: FloatArray
) -> FloatArray:
    """Angular distance (radians) from ``(ra_from, dec_from)``: faro's ``sphDist``, exactly."""
    return haversine_cos(ra_from, dec_from, np.cos(dec_from), ra, dec, np.cos(dec))


def haversine_cos(
    ra_from: FloatArray | float,
    dec_from: FloatArray | float,
    cos_from: FloatArray | float,
    ra: FloatArray,
    dec: FloatArray,
    cos_dec: FloatArray,
) -> FloatArray:
    """:func:`haversine` given ``cos`` of both declinations (the same operations, in place)."""
    term = np.asarray(np.subtract(dec, dec_from), dtype=np.float64)
    term /= 2
    np.sin(term, out=term)
    np.square(term, out=term)
    across = np.asarray(np.subtract(ra, ra_from), dtype=np.float64)
    across /= 2
    np.sin(across, out=across)
    np.square(across, out=across)
    scale = np.asarray(np.multiply(cos_from, cos_dec), dtype=np.float64)
    scale *= across
    term += scale
    np.sqrt(term, out=term)
    np.arcsin(term, out=term)
    term *= 2
    return term


def unit_vectors(ra: FloatArray, dec: FloatArray) -> FloatArray:
    """Unit vectors (N × 3) of positions in radians."""
    cos_dec = np.cos(dec)
    return np.stack([cos_dec * np.cos(ra), cos_dec * np.sin(ra), np.sin(dec)], axis=1)


def direction(vectors: FloatArray) -> tuple[FloatArray, FloatArray]:
    """RA in ``[0, 2π)`` and Dec (radians) of vectors (N × 3, any length)."""
    x, y, z = vectors[:, 0], vectors[:, 1], vectors[:, 2]
    ra = np.mod(np.arctan2(y, x), 2 * np.pi)
    return ra, np.arctan2(z, np.hypot(x, y))


def _tangent_plane(vectors: FloatArray) -> tuple[FloatArray, FloatArray, float]:
    """Orthographic (x, y) on the plane tangent to the mean direction; and the depth spread."""
    centre = vectors.sum(axis=0)
    norm = float(np.linalg.norm(centre))
    centre = centre / norm if norm > 1e-12 else np.array([0.0, 0.0, 1.0])
    helper = np.eye(3)[int(np.argmin(np.abs(centre)))]
    east = np.cross(centre, helper)
    east /= np.linalg.norm(east)
    north = np.cross(centre, east)
    depth = vectors @ centre
    return vectors @ east, vectors @ north, float(depth.max() - depth.min())


def _cell_size(count: int, area: float, outer: float, inner: float, extent: float) -> float:
    """The grid step minimising (offsets × occupied cells + candidate pairs), estimated.

    At least ``outer / 256`` (a bounded offset list) and ``extent / sqrt(_MAX_CELLS)``.
    """
    floor = extent / math.sqrt(_MAX_CELLS)
    best, best_cost = max(outer, floor), math.inf
    density = count / max(area, outer * outer * 1e-6)
    for k in range(9):
        step = outer / 2.0**k
        if step < floor:
            break
        slack = math.sqrt(2.0) * step
        ring = math.pi * ((outer + slack) ** 2 - max(inner - slack, 0.0) ** 2)
        cost = ring / step**2 * min(count, area / step**2 + 1) + count * density * ring
        if cost < best_cost:
            best, best_cost = step, cost
    return best


def _offsets(step: float, outer: float, inner: float) -> NDArray[np.int64]:
    """Cell offsets (half plane, without (0, 0)) whose cells can hold a pair in the annulus."""
    reach = math.ceil(outer / step) + 1
    grid = np.arange(-reach, reach + 1)
    dx, dy = (a.ravel() for a in np.meshgrid(grid, grid))
    half = (dy > 0) | ((dy == 0) & (dx > 0))
    near = step * np.hypot(np.maximum(np.abs(dx) - 1, 0), np.maximum(np.abs(dy) - 1, 0))
    far = step * np.hypot(np.abs(dx) + 1, np.abs(dy) + 1)
    keep = half & (near < outer) & (far >= inner)
    return np.stack([dx[keep], dy[keep]], axis=1).astype(np.int64)


def _expand(
    start_a: IndexArray, size_a: IndexArray, start_b: IndexArray, size_b: IndexArray
) -> tuple[IndexArray, IndexArray]:
    """Every (a, b) of cell pairs: a in run ``start_a``…, b in run ``start_b``…."""
    products = size_a * size_b
    pair_of = np.repeat(np.arange(len(products), dtype=np.intp), products)
    rank = np.arange(len(pair_of), dtype=np.intp) - run_starts(products)[pair_of]
    width = size_b[pair_of]
    return start_a[pair_of] + rank // width, start_b[pair_of] + rank % width


def _candidates(
    starts: IndexArray, sizes: IndexArray, cell_a: IndexArray, cell_b: IndexArray
) -> Iterator[tuple[IndexArray, IndexArray]]:
    """The point pairs of the cell pairs, in chunks of about ``_BATCH_CANDIDATES``."""
    if len(cell_a) == 0:
        return
    total = np.cumsum(sizes[cell_a] * sizes[cell_b])
    cuts = np.searchsorted(total, np.arange(_BATCH_CANDIDATES, total[-1], _BATCH_CANDIDATES))
    for part in np.split(np.arange(len(cell_a)), np.unique(cuts)):
        if len(part):
            a, b = cell_a[part], cell_b[part]
            yield _expand(starts[a], sizes[a], starts[b], sizes[b])


def _cell_pair_batches(
    cell_ids: NDArray[np.int64],
    shape: tuple[int, int],
    offsets: NDArray[np.int64],
) -> Iterator[tuple[IndexArray, IndexArray]]:
    """Batches of (cell index A, cell index B) for the offsets, A ≠ B, each pair once."""
    nx, ny = shape
    lookup = np.full(nx * ny, -1, dtype=np.intp)
    lookup[cell_ids] = np.arange(len(cell_ids), dtype=np.intp)
    cx, cy = cell_ids % nx, cell_ids // nx
    per_batch = max(1, _BATCH_CELL_PAIRS // max(len(cell_ids), 1))
    for first in range(0, len(offsets), per_batch):
        batch = offsets[first : first + per_batch]
        tx = cx[:, None] + batch[None, :, 0]
        ty = cy[:, None] + batch[None, :, 1]
        inside = (tx >= 0) & (tx < nx) & (ty >= 0) & (ty < ny)
        cell_a = np.nonzero(inside)[0]
        cell_b = lookup[(ty * nx + tx)[inside]]
        found = cell_b >= 0
        yield cell_a[found].astype(np.intp), cell_b[found]


def annulus_pairs(
    ra: FloatArray, dec: FloatArray, inner_rad: float, outer_rad: float
) -> Iterator[tuple[IndexArray, IndexArray]]:
    """Chunks of index pairs ``(i, j)``, ``i < j``, with ``inner ≤ haversine < outer``.

    Each unordered pair is yielded once; the distance is faro's :func:`haversine` from ``i``.
    Positions must be finite (radians).
    """
    count = len(ra)
    if count < 2 or not outer_rad > inner_rad:
        return
    vectors = unit_vectors(ra, dec)
    x, y, depth = _tangent_plane(vectors)
    outer = 2 * math.sin(min(outer_rad, math.pi) / 2) * (1 + _SAFETY) + 1e-15
    inner_chord = 2 * math.sin(max(inner_rad, 0.0) / 2) * (1 - _SAFETY)
    inner = math.sqrt(max(inner_chord**2 - depth**2, 0.0))
    x0, y0 = float(x.min()), float(y.min())
    spans = (float(x.max()) - x0, float(y.max()) - y0)
    step = _cell_size(count, spans[0] * spans[1], outer, inner, max(spans) + outer)
    shape = (int(spans[0] // step) + 1, int(spans[1] // step) + 1)
    cell = ((y - y0) // step).astype(np.int64) * shape[0] + ((x - x0) // step).astype(np.int64)
    order = np.argsort(cell, kind="stable").astype(np.intp)
    cell_ids, starts, sizes = np.unique(cell[order], return_index=True, return_counts=True)
    starts, sizes = starts.astype(np.intp), sizes.astype(np.intp)
    ordered = vectors[order]
    vx, vy, vz = (np.ascontiguousarray(ordered[:, axis]) for axis in range(3))
    # Decide on the exact 3-D chord (2 sin(d/2)); only pairs within a relative 1e-8 of an edge,
    # where rounding could matter, are decided by faro's haversine itself.
    lo2, hi2 = (2 * math.sin(max(inner_rad, 0.0) / 2)) ** 2, (2 * math.sin(outer_rad / 2)) ** 2
    if outer_rad >= math.pi:
        hi2 = math.inf

    def accept(a: IndexArray, b: IndexArray) -> tuple[IndexArray, IndexArray]:
        chord2 = np.square(vx[a] - vx[b])
        chord2 += np.square(vy[a] - vy[b])
        chord2 += np.square(vz[a] - vz[b])
        sure = (chord2 >= lo2 * (1 + _EDGE)) & (chord2 < hi2 * (1 - _EDGE))
        edge = ~sure & (chord2 >= lo2 * (1 - _EDGE)) & (chord2 < hi2 * (1 + _EDGE))
        if edge.any():
            i, j = order[a[edge]], order[b[edge]]
            i, j = np.minimum(i, j), np.maximum(i, j)
            distance = haversine(ra[i], dec[i], ra[j], dec[j])
            sure[np.flatnonzero(edge)] = (inner_rad <= distance) & (distance < outer_rad)
        i, j = order[a[sure]], order[b[sure]]
        return np.minimum(i, j), np.maximum(i, j)

    # Pairs inside one cell: every a < b of the cell's run.
    crowded = np.flatnonzero(sizes >= 2)
    for a, b in _candidates(starts, sizes, crowded, crowded):
        within = a < b
        yield accept(a[within], b[within])
    offsets = _offsets(step, outer, inner)
    for cell_a, cell_b in _cell_pair_batches(cell_ids, shape, offsets):
        for a, b in _candidates(starts, sizes, cell_a, cell_b):
            yield accept(a, b)


def mean_positions(
    ra: FloatArray, dec: FloatArray, runs: IndexArray, sizes: IndexArray
) -> tuple[FloatArray, FloatArray]:
    """Mean position of each run of rows (``lsst.geom.averageSpherePoint``): radians."""
    vectors = unit_vectors(ra[runs], dec[runs])
    group = np.repeat(np.arange(len(sizes), dtype=np.intp), sizes)
    total = np.zeros((len(sizes), 3))
    for axis in range(3):
        total[:, axis] = np.bincount(group, weights=vectors[:, axis], minlength=len(sizes))
    mean: Any = total / np.maximum(sizes, 1)[:, None]
    return direction(mean)
