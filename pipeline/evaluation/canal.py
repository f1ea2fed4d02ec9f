"""Stage 1 against reference labels: how far the canal centre found lies from a reference's centre, per slice."""

from __future__ import annotations

import numpy as np

from ..core.volume import Volume


def canal_centre_errors(centreline: np.ndarray, ref: Volume, *, reach_mm: float = 3.0) -> np.ndarray:
    """Per axial slice of ``ref`` (RAS z), the in-slice distance (mm) from the canal centre found to the centroid of
    the reference labels there; ``inf`` where the centreline has no point within ``reach_mm`` of that height.

    Parameters
    ----------
    centreline : (M, 3) float ndarray
        The canal centre found, RAS mm (``CanalResult.centreline``).
    ref : Volume
        Reference labels (> 0: the canal or its contents, e.g. the cord), any grid.
    reach_mm : float
        Largest height difference between a reference slice and the nearest centreline point, mm.

    Returns
    -------
    (S,) float ndarray
        One distance per reference slice holding at least 3 voxels, caudal to cranial; a missed slice is ``inf``
        (never dropped).
    """
    idx = np.argwhere(ref.array > 0)
    if len(idx) == 0:
        raise ValueError("ref: no reference voxels")
    world = idx @ ref.affine[:3, :3].T + ref.affine[:3, 3]
    zs = np.unique(np.round(world[:, 2], 2))
    step = max(float(np.median(np.diff(zs))) if len(zs) > 1 else 1.0, 1.0)
    c = np.asarray(centreline, dtype=float).reshape(-1, 3)
    errs = []
    for z in np.arange(world[:, 2].min(), world[:, 2].max() + 1e-6, step):
        sel = np.abs(world[:, 2] - z) <= step / 2
        if sel.sum() < 3:
            continue
        if not len(c) or np.abs(c[:, 2] - z).min() > reach_mm:
            errs.append(np.inf)
            continue
        near = c[int(np.argmin(np.abs(c[:, 2] - z)))]
        errs.append(float(np.hypot(*(near[:2] - world[sel, :2].mean(0)))))
    return np.array(errs)
