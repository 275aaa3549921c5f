"""Rows grouped by an id, and per-group reductions, vectorised (faro's ``GroupView``).

faro loops in Python over the groups of a matched catalog and calls numpy on each group.  Here
groups of the same size are stacked into one 2-D array and reduced along ``axis=1``, which gives
bit-for-bit the values of the per-group calls (numpy sums a contiguous row in the same order), in
one numpy call per distinct group size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

Reducer = Callable[..., Any]
"""A numpy reduction called as ``reducer(matrix, axis=1)`` (``np.median``, ``np.nanstd``, …)."""


def run_starts(sizes: NDArray[np.intp]) -> NDArray[np.intp]:
    """The first position of each run of ``sizes`` consecutive values."""
    starts = np.zeros(len(sizes), dtype=np.intp)
    np.cumsum(sizes[:-1], out=starts[1:])
    return starts


def run_positions(starts: NDArray[np.intp], sizes: NDArray[np.intp]) -> NDArray[np.intp]:
    """The positions ``start, start+1, …, start+size-1`` of every run, concatenated."""
    total = int(sizes.sum())
    if total == 0:
        return np.zeros(0, dtype=np.intp)
    run_of = np.repeat(np.arange(len(sizes), dtype=np.intp), sizes)
    first = run_starts(sizes)
    return starts[run_of] + (np.arange(total, dtype=np.intp) - first[run_of])


def reduce_runs(
    values: NDArray[Any], sizes: NDArray[np.intp], reducer: Reducer, *, empty: float = np.nan
) -> NDArray[Any]:
    """Reduce each run of consecutive ``values`` (run ``k`` holds ``sizes[k]`` values).

    Runs of size 0 get ``empty``.  The result keeps a floating ``values`` dtype (float32 stays
    float32, as in faro), otherwise it is float64.
    """
    dtype = values.dtype if values.dtype.kind == "f" else np.dtype(np.float64)
    out = np.full(len(sizes), empty, dtype=dtype)
    if len(sizes) == 0:
        return out
    starts = run_starts(sizes)
    # Sizes are small: as uint16 a stable argsort is a radix sort, O(n).
    narrow = sizes.astype(np.uint16) if sizes.max() < 1 << 16 else sizes
    by_size = np.argsort(narrow, kind="stable")
    sorted_sizes = sizes[by_size]
    edges = np.flatnonzero(np.diff(sorted_sizes)) + 1
    for chunk in np.split(by_size, edges):
        size = int(sizes[chunk[0]])
        if size == 0:
            continue
        matrix = values[starts[chunk, None] + np.arange(size, dtype=np.intp)]
        out[chunk] = reducer(matrix, axis=1)
    return out


@dataclass(frozen=True)
class Groups:
    """Rows grouped by id: groups in increasing id, rows of a group in their original order."""

    ids: NDArray[np.int64]
    """The id of each group, increasing."""
    order: NDArray[np.intp]
    """Row indices, group after group."""
    sizes: NDArray[np.intp]
    """The number of rows of each group."""
    index: NDArray[np.intp]
    """The group of each row (in the rows' original order)."""

    @classmethod
    def build(cls, ids: NDArray[np.integer[Any]]) -> Groups:
        """Group rows by ``ids`` (sorting is stable, so equal ids keep their row order)."""
        order = np.argsort(ids, kind="stable").astype(np.intp, copy=False)
        ordered = ids[order]
        if len(ordered):
            first = np.concatenate(([True], ordered[1:] != ordered[:-1]))
        else:
            first = np.zeros(0, dtype=bool)
        group_of_ordered = np.cumsum(first, dtype=np.intp) - 1
        index = np.empty(len(ids), dtype=np.intp)
        index[order] = group_of_ordered
        sizes = np.bincount(group_of_ordered, minlength=int(first.sum())).astype(np.intp)
        return cls(np.asarray(ordered[first], dtype=np.int64), order, sizes, index)

    @property
    def count(self) -> int:
        """The number of groups."""
        return len(self.ids)

    def counts(self, mask: NDArray[np.bool_]) -> NDArray[np.intp]:
        """The number of rows of each group where ``mask`` is true."""
        return np.bincount(self.index[mask], minlength=self.count).astype(np.intp)

    def all(self, mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """Whether ``mask`` holds on every row of each group."""
        none_false: NDArray[np.bool_] = self.counts(~mask) == 0
        return none_false

    def reduce(
        self,
        values: NDArray[Any],
        reducer: Reducer,
        *,
        where: NDArray[np.bool_] | None = None,
        empty: float = np.nan,
    ) -> NDArray[Any]:
        """``reducer`` over each group's ``values`` (only rows ``where`` is true), per group."""
        rows = self.order if where is None else self.order[where[self.order]]
        sizes = self.sizes if where is None else self.counts(where)
        return reduce_runs(values[rows], sizes, reducer, empty=empty)
