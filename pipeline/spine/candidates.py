"""Per axial slice, the places that could be the vertebral canal: CT holes in a bone ring (MR: :mod:`.mr`).

Each candidate is a 2-D region of one axial slice of the coarse grid (:mod:`.grid`); :mod:`.track` then keeps
the one chain of them that runs along the body like a spinal canal.

CT: the canal is the soft-tissue hole (fat, CSF, cord: under ``soft_max_hu``) that the vertebra's ring of bone
(body, pedicles, laminae: over ``bone_hu``) closes around, with the vertebral body in front of it. Where the
ring is open (discs, interlaminar gaps) the bone is closed by growing radii until it is, up to ``close_mm``.

MR (:mod:`.mr`): no intensity means bone; candidates are the blobs of a canal's size, bright or dark.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .grid import CoarseGrid

BONE_HU = 180.0        # vertebral bone (cancellous bone of an adult is 150-300 HU, cortex far more)
DENSE_HU = 120.0       # the vertebral body's cancellous bone, above a disc (80-100 HU) and the canal
SOFT_MAX_HU = 150.0    # what fills the canal: fat, CSF, cord, the enhanced veins of the plexus (partly)
AREA_MM2 = (25.0, 750.0)   # the canal's cross-section: sacral canal to a wide lumbar one, plus obliquity


@dataclass(frozen=True)
class Candidate:
    """One possible canal cross-section in axial slice ``k`` of the coarse grid.

    Attributes
    ----------
    k : int
        Slice index (axis 2 of the coarse grid).
    centre : (2,) float ndarray
        Its centroid, voxel indices (x, y) in the slice.
    pixels : (N, 2) int ndarray
        Its voxels (x, y).
    area_mm2 : float
    score : float
        How canal-like it is, 0..1 (larger is better).
    """

    k: int
    centre: np.ndarray
    pixels: np.ndarray
    area_mm2: float
    score: float


def bone_mask(grid: CoarseGrid, *, bone_hu: float = BONE_HU) -> np.ndarray:
    """(X, Y, Z) bool: voxels over ``bone_hu`` (CT)."""
    return grid.array > bone_hu


def enclosure(bone: np.ndarray, spacing: float, *, reach_mm: float = 16.0, directions: int = 16) -> np.ndarray:
    """(X, Y, Z) float32: the share of in-plane directions in which bone lies within ``reach_mm`` of each voxel.

    The canal's contents are walled in by the body in front, the pedicles at the sides and the laminae behind: at
    its centre most rays meet bone within a canal's radius even where the ring is open (a disc, an interlaminar
    gap, 3 mm voxels that miss a thin lamina), which a hole-filling never sees.
    """
    steps = max(1, int(np.ceil(reach_mm / spacing)))
    hits = np.zeros(bone.shape, np.float32)
    for a in np.linspace(0.0, 2 * np.pi, directions, endpoint=False):
        ray = np.zeros(bone.shape, bool)
        seen = set()
        for t in range(1, steps + 1):
            dx, dy = int(round(t * np.cos(a))), int(round(t * np.sin(a)))
            if (dx, dy) in seen:
                continue
            seen.add((dx, dy))
            ray |= _shifted(bone, dx, dy)
        hits += ray
    return hits / directions


def _shifted(a: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``out[x, y] = a[x + dx, y + dy]`` (False beyond the edge)."""
    out = np.zeros_like(a)
    X, Y = a.shape[:2]
    if abs(dx) >= X or abs(dy) >= Y:
        return out
    out[max(-dx, 0):X - max(dx, 0), max(-dy, 0):Y - max(dy, 0)] = a[max(dx, 0):X + min(dx, 0), max(dy, 0):Y + min(dy, 0)]
    return out


def ct_candidates(grid: CoarseGrid, *, bone_hu: float = BONE_HU, soft_max_hu: float = SOFT_MAX_HU,
                  min_walled: float = 0.35, smooth_mm: float = 6.0) -> list[list[Candidate]]:
    """Canal candidates of a CT on the coarse grid, one list per axial slice.

    The canal is soft tissue walled in by bone (:func:`enclosure`) along a stretch of the spine, not in one slice:
    the share of walled directions is averaged along the height (a Gaussian of ``smooth_mm``), so a disc level
    between two vertebral rings stays walled and a chance hole in one bone does not. Candidates are its local
    maxima over ``min_walled`` in each slice; each holds the soft, walled voxels around it (within 12 mm).

    Parameters
    ----------
    grid : CoarseGrid
        The CT in HU.
    bone_hu, soft_max_hu : float
        Bone and canal-content thresholds, HU.
    min_walled : float
        Share of directions, 0..1.
    smooth_mm : float
        Gaussian along the height, mm.

    Returns
    -------
    list (Z) of list of Candidate
    """
    if not 0 < min_walled <= 1:
        raise ValueError(f"min_walled: expected a share in (0, 1], got {min_walled}")
    sp = grid.spacing
    bone = bone_mask(grid, bone_hu=bone_hu)
    enc = enclosure(bone, sp)
    soft = (grid.array < soft_max_hu) & (grid.array > -250.0)
    walled = ndimage.gaussian_filter(enc * soft, (0.7, 0.7, smooth_mm / grid.dz))
    dense = ndimage.gaussian_filter1d((grid.array > DENSE_HU).astype(np.float32), smooth_mm / grid.dz, axis=2)
    peaks = (walled == ndimage.maximum_filter(walled, size=(max(3, int(15 / sp) | 1),) * 2 + (1,))) \
        & (walled >= min_walled) & soft
    out: list[list[Candidate]] = [[] for _ in range(grid.array.shape[2])]
    for x, y, k in np.argwhere(peaks):
        b = bone[:, :, k]
        if b.sum() * sp * sp < 100.0:  # under 1 cm^2 of bone: no vertebra in this slice
            continue
        px, walled_in = _walled_region(soft[:, :, k] & (enc[:, :, k] >= 0.5), x, y, sp)
        area = len(px) * sp * sp
        body = _body_in_front(dense[:, :, k], x, y, sp)
        if body < 0.3:  # a canal has its vertebral body right in front (anterior is +y in RAS)
            continue
        score = float(np.clip(0.5 * walled[x, y, k] / 0.8 + 0.5 * body, 0.0, 1.0))
        # the centre of the soft hole itself: the peak of ``walled`` is smoothed along the height, so where the canal
        # slopes (the lumbosacral turn, a lordosis at 3 mm slices) it leans towards the neighbouring slices' canal
        centre = px.mean(axis=0).astype(float) if walled_in else _peak_centre(walled[:, :, k], x, y)
        out[k].append(Candidate(int(k), centre, px, area, score))
    return out


def _peak_centre(m: np.ndarray, x: int, y: int, r: int = 2) -> np.ndarray:
    """Sub-voxel centre of a peak of ``m`` at (x, y): the centroid of ``m`` above half the peak within ``r``."""
    x0, y0 = max(x - r, 0), max(y - r, 0)
    win = m[x0:x + r + 1, y0:y + r + 1]
    w = np.clip(win - 0.5 * m[x, y], 0.0, None)
    gx, gy = np.mgrid[x0:x0 + win.shape[0], y0:y0 + win.shape[1]]
    return np.array([(w * gx).sum(), (w * gy).sum()]) / max(float(w.sum()), 1e-9)


def _walled_region(inner: np.ndarray, x: int, y: int, sp: float, *,
                   reach_mm: float = 12.0) -> tuple[np.ndarray, bool]:
    """(N, 2) voxels of ``inner`` connected to (x, y) within ``reach_mm``, and True; a disc of 5 mm and False when
    there are few."""
    r = int(np.ceil(reach_mm / sp))
    x0, y0 = max(x - r, 0), max(y - r, 0)
    win = inner[x0:x + r + 1, y0:y + r + 1].copy()
    gx, gy = np.mgrid[x0:x0 + win.shape[0], y0:y0 + win.shape[1]]
    d = np.hypot(gx - x, gy - y) * sp
    win &= d <= reach_mm
    lab, _ = ndimage.label(win)
    own = lab[x - x0, y - y0]
    region = (lab == own) if own else np.zeros_like(win)
    if region.sum() * sp * sp < 40.0:
        return np.argwhere(d <= 5.0) + [x0, y0], False
    return np.argwhere(region) + [x0, y0], True


def _body_in_front(dense: np.ndarray, x: int, y: int, sp: float) -> float:
    """Share of dense voxels in a strip 6-30 mm in front of (x, y), +-8 mm wide: the vertebral body directly in
    front of the canal (behind the laminae there is the canal first, soft, then the body)."""
    x0, x1 = max(int(round(x - 8 / sp)), 0), int(round(x + 8 / sp)) + 1
    y0, y1 = max(int(round(y + 6 / sp)), 0), int(round(y + 30 / sp)) + 1
    strip = dense[x0:x1, y0:y1]
    return float(strip.mean()) if strip.size else 0.0
