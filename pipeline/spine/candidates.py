"""Per axial slice, the places that could be the vertebral canal: CT holes in a bone ring, MR bright tubes.

Each candidate is a 2-D region of one axial slice of the coarse grid (:mod:`.grid`); :mod:`.track` then keeps
the one chain of them that runs along the body like a spinal canal.

CT: the canal is the soft-tissue hole (fat, CSF, cord: under ``soft_max_hu``) that the vertebra's ring of bone
(body, pedicles, laminae: over ``bone_hu``) closes around, with the vertebral body in front of it. Where the
ring is open (discs, interlaminar gaps) the bone is closed by growing radii until it is, up to ``close_mm``.

MR: no intensity means bone. The canal's contents (CSF and the cord or cauda equina) form a tube of 8-20 mm
that is brighter than the dark ring of cortex and ligament around it on T2 and on T1 (the cord); candidates are
the bright blobs of that size in each slice (a normalised Laplacian of Gaussian), segmented by a threshold
halfway between the blob and its ring.
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
        px = _walled_region(soft[:, :, k] & (enc[:, :, k] >= 0.5), x, y, sp)
        area = len(px) * sp * sp
        body = _body_in_front(dense[:, :, k], x, y, sp)
        if body < 0.3:  # a canal has its vertebral body right in front (anterior is +y in RAS)
            continue
        score = float(np.clip(0.5 * walled[x, y, k] / 0.8 + 0.5 * body, 0.0, 1.0))
        out[k].append(Candidate(int(k), _peak_centre(walled[:, :, k], x, y), px, area, score))
    return out


def _peak_centre(m: np.ndarray, x: int, y: int, r: int = 2) -> np.ndarray:
    """Sub-voxel centre of a peak of ``m`` at (x, y): the centroid of ``m`` above half the peak within ``r``."""
    x0, y0 = max(x - r, 0), max(y - r, 0)
    win = m[x0:x + r + 1, y0:y + r + 1]
    w = np.clip(win - 0.5 * m[x, y], 0.0, None)
    gx, gy = np.mgrid[x0:x0 + win.shape[0], y0:y0 + win.shape[1]]
    return np.array([(w * gx).sum(), (w * gy).sum()]) / max(float(w.sum()), 1e-9)


def _walled_region(inner: np.ndarray, x: int, y: int, sp: float, *, reach_mm: float = 12.0) -> np.ndarray:
    """(N, 2) voxels of ``inner`` connected to (x, y) within ``reach_mm``; a disc of 5 mm when there are few."""
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
        region = d <= 5.0
    return np.argwhere(region) + [x0, y0]


def _body_in_front(dense: np.ndarray, x: int, y: int, sp: float) -> float:
    """Share of dense voxels in a strip 6-30 mm in front of (x, y), +-8 mm wide: the vertebral body directly in
    front of the canal (behind the laminae there is the canal first, soft, then the body)."""
    x0, x1 = max(int(round(x - 8 / sp)), 0), int(round(x + 8 / sp)) + 1
    y0, y1 = max(int(round(y + 6 / sp)), 0), int(round(y + 30 / sp)) + 1
    strip = dense[x0:x1, y0:y1]
    return float(strip.mean()) if strip.size else 0.0


def mr_candidates(grid: CoarseGrid, *, radii_mm: tuple[float, ...] = (3.0, 4.5, 6.0, 8.0)) -> list[list[Candidate]]:
    """Canal candidates of an MR on the coarse grid, one list per axial slice (see the module docstring).

    Parameters
    ----------
    grid : CoarseGrid
        The MR (any units).
    radii_mm : tuple of float
        Blob radii looked for, mm (the cord is 3-5 mm in radius, the dural sac 6-10 mm).
    """
    sp = grid.spacing
    a = grid.array.astype(np.float32)
    above = a[a > np.percentile(a, 5)] if a.size else a
    lo, hi = np.percentile(above, [1, 99.5]) if above.size else (0.0, 1.0)  # an empty field: nothing is bright
    a = np.clip((a - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    body = a > 0.1
    out: list[list[Candidate]] = []
    for k in range(a.shape[2]):
        sl = a[:, :, k]
        found: list[Candidate] = []
        if body[:, :, k].sum() * sp * sp < 400.0:
            out.append(found)
            continue
        scales = [-(r / sp) ** 2 * ndimage.gaussian_laplace(sl, r / sp / np.sqrt(2)) for r in radii_mm]
        resp = np.max(scales, axis=0)
        peaks = (resp == ndimage.maximum_filter(resp, size=max(3, int(6 / sp) | 1))) & (resp > 0.08)
        for x, y in np.argwhere(peaks):
            cand = _grow_blob(sl, x, y, sp, k, float(resp[x, y]))
            if cand is not None:
                found.append(cand)
        out.append(found)
    return out


def _grow_blob(sl: np.ndarray, x: int, y: int, sp: float, k: int, resp: float) -> Candidate | None:
    """The bright region around (x, y): over halfway between the blob's centre and its ring at 9-14 mm, grown
    again around its own centroid (a peak on one side of the bright CSF around a darker cord moves to the middle)."""
    cx, cy = float(x), float(y)
    region = None
    for _ in range(3):
        got = _bright_region(sl, cx, cy, sp)
        if got is None:
            break
        region, contrast = got
        nx, ny = region.mean(axis=0)
        if np.hypot(nx - cx, ny - cy) * sp < 0.5:
            break
        cx, cy = nx, ny
    if region is None:
        return None
    area = len(region) * sp * sp
    if not AREA_MM2[0] <= area <= AREA_MM2[1]:
        return None
    box = np.ptp(region, axis=0) + 1
    compact = len(region) / float(np.prod(box))
    if compact < 0.35:
        return None
    score = float(np.clip(0.5 * min(resp / 0.4, 1.0) + 0.3 * compact + 0.2 * min(contrast / 0.4, 1.0), 0, 1))
    return Candidate(k, region.mean(axis=0), region, area, score)


def _bright_region(sl: np.ndarray, cx: float, cy: float, sp: float):
    """(N, 2) voxels of the bright blob around (cx, cy) and its contrast to the ring, or None."""
    x, y = int(round(cx)), int(round(cy))
    if not (0 <= x < sl.shape[0] and 0 <= y < sl.shape[1]):
        return None
    rr = int(np.ceil(14 / sp))
    x0, x1, y0, y1 = max(x - rr, 0), min(x + rr + 1, sl.shape[0]), max(y - rr, 0), min(y + rr + 1, sl.shape[1])
    win = sl[x0:x1, y0:y1]
    gx, gy = np.mgrid[x0:x1, y0:y1]
    d = np.hypot(gx - cx, gy - cy) * sp
    core = win[d <= 2.5] if (d <= 2.5).any() else win[x - x0:x - x0 + 1, y - y0:y - y0 + 1].ravel()
    centre = float(np.median(core))
    ring_px = win[(d > 9) & (d <= 14)]
    ring = float(np.percentile(ring_px, 30)) if ring_px.size else 0.0
    bright = (win > 0.5 * (centre + ring)) & (d <= 13)
    if centre - ring < 0.08:  # a cord darker than its CSF: the CSF around it is the blob
        hi = float(np.percentile(win[d <= 9], 90)) if (d <= 9).any() else centre
        if hi - ring < 0.08:
            return None
        bright = (win > 0.5 * (hi + ring)) & (d <= 13)
        centre = hi
    filled = ndimage.binary_fill_holes(bright)
    lab, _ = ndimage.label(filled)
    # the component at the centre, or the one that surrounds it (the CSF ring around a cord)
    own = lab[x - x0, y - y0]
    if own == 0:
        return None
    region = lab == own
    if region[d > 12.5].any():  # leaks beyond a canal's size
        return None
    return np.argwhere(region) + [x0, y0], centre - ring
