"""Static index lists that let the numba bioheat kernels run long, branch-free, vectorised
loops.

Built once per simulation from arrays that do not change during it (tissue labels, hold
slots, probe couplings); :mod:`brachycryo.cryo_iceball.kernels_numba` explains why each list exists.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

#: longest segment (voxels): bounds the work of one parallel iteration
SEGMENT_MAX_VOXELS = 4096


@dataclass(frozen=True)
class KernelLayout:
    """Segments of the flattened grid, and the voxels that take the general per-voxel path.

    A segment is a range of flat (C-order) indices inside one ``k`` plane, of one tissue
    class, whose voxels all have the same neighbour offsets along ``k`` and ``j``: ``0``
    where the neighbour would lie outside the array (the voxel itself stands in, giving a
    zero flux), else ``-/+ nj*ni`` and ``-/+ ni``.  Rows ``j = 0`` and ``j = nj - 1`` are
    segments of their own.  Neighbours along ``i`` are ``-/+ 1``, which is wrong for the two
    end voxels of a row; those are special voxels.

    Special voxels are the voxels with a hold slot (probes, vessels, the outer layer), the
    voxels coupled to a probe surface, and the end voxels ``i = 0``, ``i = ni - 1`` of every
    row.  The held ones come first.
    """

    #: ``(n_segments + 1,)``: segment ``q`` is the flat range ``seg_start[q]:seg_start[q+1]``
    seg_start: np.ndarray
    #: ``(n_segments,)``: tissue class (row of the property table) of each segment
    seg_tissue: np.ndarray
    #: ``(n_segments, 4)``: flat offsets of the ``k-1, k+1, j-1, j+1`` neighbours
    seg_offsets: np.ndarray
    #: ``(n_special,)``: flat index of each special voxel, the ``n_held`` held ones first
    special_index: np.ndarray
    #: ``(n_special, 3)``: ``(k, j, i)`` of each special voxel
    special_kji: np.ndarray
    #: ``(n_held,)``: hold slot of each held voxel
    held_slot: np.ndarray
    #: ``(n_special,)``: scratch, the special voxels' new enthalpy during a step
    special_h: np.ndarray
    #: ``(n_held,)``: the temperature each held voxel was held at in the previous step (NaN:
    #: not held); a voxel held again at the same temperature needs no work
    held_last: np.ndarray

    @property
    def n_held(self) -> int:
        return len(self.held_slot)


def _segments(tissue: np.ndarray, max_voxels: int) -> tuple[np.ndarray, ...]:
    nk, nj, ni = tissue.shape
    plane = nj * ni
    flat = tissue.reshape(-1)
    n = flat.size
    cuts = [np.array([0, n]), np.flatnonzero(flat[1:] != flat[:-1]) + 1]
    planes = np.arange(nk) * plane
    # every plane starts a segment, and rows j = 0 and j = nj - 1 stand alone (their
    # j-1 / j+1 neighbour is the row itself); all cuts lie in [0, n]
    for row in (0, 1, nj - 1):
        cuts.append(planes + row * ni)
    start = np.unique(np.concatenate(cuts))
    # split long segments
    pieces = [np.arange(a, b, max_voxels) for a, b in itertools.pairwise(start)]
    seg_start = np.append(np.concatenate(pieces), n).astype(np.int64)
    first = seg_start[:-1]
    k, rem = np.divmod(first, plane)
    j = rem // ni
    offsets = np.stack(
        [
            np.where(k > 0, -plane, 0),
            np.where(k < nk - 1, plane, 0),
            np.where(j > 0, -ni, 0),
            np.where(j < nj - 1, ni, 0),
        ],
        axis=1,
    ).astype(np.int64)
    return seg_start, flat[first].astype(np.int64), offsets


def kernel_layout(
    tissue: np.ndarray,
    hold: np.ndarray,
    couple_slot: np.ndarray,
    dtype: np.dtype,
    *,
    max_segment_voxels: int = SEGMENT_MAX_VOXELS,
) -> KernelLayout:
    """Layout of a ``(nk, nj, ni)`` grid; ``hold``/``couple_slot`` are -1 where unused."""
    tissue = np.asarray(tissue)
    hold = np.asarray(hold)
    seg_start, seg_tissue, seg_offsets = _segments(tissue, max_segment_voxels)
    held = hold >= 0
    other = (np.asarray(couple_slot) >= 0) & ~held
    other[..., 0] |= ~held[..., 0]
    other[..., -1] |= ~held[..., -1]
    held_index = np.flatnonzero(held)
    special_index = np.concatenate([held_index, np.flatnonzero(other)]).astype(np.int64)
    special_kji = np.stack(np.unravel_index(special_index, tissue.shape), axis=1)
    return KernelLayout(
        seg_start=seg_start,
        seg_tissue=seg_tissue,
        seg_offsets=seg_offsets,
        special_index=special_index,
        special_kji=special_kji.astype(np.int64),
        held_slot=hold.reshape(-1)[held_index].astype(np.int64),
        special_h=np.zeros(len(special_index), dtype=dtype),
        held_last=np.full(len(held_index), np.nan, dtype=dtype),
    )
