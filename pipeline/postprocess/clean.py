"""Clean a binary plexus mask: drop specks, fill tiny holes, report what changed."""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np


@dataclass
class CleanReport:
    """What :func:`clean_mask` did (volumes in mm^3)."""

    n_components: int
    n_removed: int
    removed_volume_mm3: float
    filled_volume_mm3: float
    kept_volume_mm3: float

    def to_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def clean_mask(mask: np.ndarray, *, spacing, min_volume_mm3: float = 4.0,
               max_hole_mm3: float = 2.0) -> tuple[np.ndarray, CleanReport]:
    """Remove connected components smaller than ``min_volume_mm3`` and fill holes up to ``max_hole_mm3``.

    Parameters
    ----------
    mask : (I, J, K) bool ndarray
    spacing : (3,) float
        Voxel size, mm.
    min_volume_mm3 : float
        Components (26-connected) below this volume are removed.
    max_hole_mm3 : float
        Enclosed background pockets (6-connected, not touching the border) up to this volume are filled.

    Returns
    -------
    cleaned : (I, J, K) bool ndarray
    report : CleanReport
    """
    if min_volume_mm3 < 0 or max_hole_mm3 < 0:
        raise ValueError("min_volume_mm3 and max_hole_mm3 must be >= 0")
    vox = float(np.prod(spacing))
    mask = np.asarray(mask, dtype=bool)
    labels, n = cc3d.connected_components(mask, connectivity=26, return_N=True)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    small = np.nonzero(sizes[1:] * vox < min_volume_mm3)[0] + 1
    keep = np.ones(n + 1, dtype=bool)
    keep[0] = False
    keep[small] = False
    cleaned = keep[labels]
    removed = float(sizes[small].sum() * vox)
    filled = 0.0
    if max_hole_mm3 > 0 and cleaned.any():
        bg, nb = cc3d.connected_components(~cleaned, connectivity=6, return_N=True)
        bsizes = np.bincount(bg.ravel(), minlength=nb + 1)
        border = np.unique(np.concatenate([bg[[0, -1]].ravel(), bg[:, [0, -1]].ravel(), bg[:, :, [0, -1]].ravel()]))
        holes = np.nonzero(bsizes * vox <= max_hole_mm3)[0]
        holes = holes[(holes > 0) & ~np.isin(holes, border)]
        if holes.size:
            fill = np.isin(bg, holes)
            cleaned |= fill
            filled = float(fill.sum() * vox)
    report = CleanReport(int(n), int(small.size), removed, filled, float(cleaned.sum() * vox))
    return cleaned, report


def drop_far_from_bone(mask: np.ndarray, bone: np.ndarray, *, spacing, max_gap_mm: float = 15.0):
    """Drop the 26-connected parts of ``mask`` with no voxel within ``max_gap_mm`` of ``bone``.

    The internal vertebral venous plexus lies in the canal and its veins leave through the foramina: a part of a
    mask that never comes near a vertebra (the scanner table, skin, a rib's edge) is not plexus. Parts that
    come near are kept whole.

    Parameters
    ----------
    mask, bone : (I, J, K) bool ndarray
        On one grid.
    spacing : (3,) float
        Voxel size along each array axis, mm.

    Returns
    -------
    kept : (I, J, K) bool ndarray; n_dropped : int; dropped_mm3 : float
    """
    import cc3d
    import edt

    if max_gap_mm <= 0 or not mask.any() or not bone.any():
        return mask, 0, 0.0
    sp = np.asarray(spacing, dtype=float)
    # only bone within max_gap of the mask matters: crop to the mask's box grown by that much
    nz = [np.nonzero(mask.any(axis=tuple(j for j in range(3) if j != i)))[0] for i in range(3)]
    grow = np.ceil(max_gap_mm / sp).astype(int) + 1
    sl = tuple(slice(max(int(n.min()) - g, 0), min(int(n.max()) + g + 1, s))
               for n, g, s in zip(nz, grow, mask.shape))
    near = edt.edt(~bone[sl], anisotropy=tuple(sp), black_border=False, parallel=2) <= max_gap_mm
    labels, n = cc3d.connected_components(mask[sl], connectivity=26, return_N=True)
    keep_ids = np.unique(labels[near & (labels > 0)])
    keep = np.isin(labels, keep_ids)
    dropped = mask[sl] & ~keep
    out = mask.copy()
    out[sl] = keep
    n_dropped = int(n - len(keep_ids))
    return out, n_dropped, float(dropped.sum() * np.prod(sp))
