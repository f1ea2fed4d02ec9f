"""MR canal candidates of either polarity, and the choice between the bright and the dark chain.

No MR intensity means bone, and the canal's contents do not have one look: CSF is bright on T2 and dark on T1
and contrast-enhanced fat-suppressed T1, the cord is brighter than its CSF on T1 and darker on T2, and enhanced
veins beside the sac may be the brightest voxels of the scan (or flow voids, darker than anything). What every
sequence shows is a tube of 8-20 mm whose contents differ from the ring of cortex, ligament and fat around it.
Candidates are looked for in both polarities (:func:`mr_candidates`): the bright blobs of the slice and those of
its inverse (the air around the body becomes one region far wider than a canal, never a candidate), within 35 mm
of the body's midline, the strongest first. A blob is cut at half its contrast to its ring, or there once its
thin necks (a spinous process, a root) are opened; it may be wide (a lumbar canal with its lateral recesses),
never deep. Each polarity gives one chain (:func:`pipeline.spine.track.best_chain`); :func:`pick_chain` keeps
the one that runs like the canal.

The intensities are scaled between low percentiles and the 98th, and clipped: a few very bright voxels (enhanced
veins at 1.4-2x the 99th percentile, fat, a surface coil's hot spot) do not squash the sac into the background.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .candidates import AREA_MM2, Candidate
from .grid import CoarseGrid
from .track import Chain

RADII_MM = (3.0, 4.5, 6.0, 8.0)   # the cord is 3-5 mm in radius, the dural sac 6-10 mm
WIDE_MM = 26.0                     # half the widest canal, lateral recesses included
OPEN = np.ones((3, 3), bool)
# the cuts tried in turn: the share of the way from the ring to the blob, and whether thin necks are opened
LEVELS = ((0.5, False), (0.5, True))
EDGE_MM = 9.0                      # a canal centre lies at least this far inside the field (its ring in view)


def normalise(a: np.ndarray) -> np.ndarray:
    """``a`` scaled to 0..1 between the 1st and 98th percentiles of the voxels over its 5th percentile (the air
    of the background left out), clipped."""
    a = np.asarray(a, dtype=np.float32)
    above = a[a > np.percentile(a, 5)] if a.size else a
    lo, hi = np.percentile(above, [1, 98]) if above.size else (0.0, 1.0)  # an empty field: nothing is bright
    return np.clip((a - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def polarity_image(a: np.ndarray, polarity: str) -> np.ndarray:
    """The normalised scan (``'bright'``) or its inverse (``'dark'``: the air around the body becomes one bright
    region far wider than a canal, and no candidate)."""
    if polarity == "bright":
        return a
    if polarity != "dark":
        raise ValueError(f"polarity: expected 'bright' or 'dark', got {polarity!r}")
    return (1.0 - a).astype(np.float32)


def blob_response(a: np.ndarray, sp: float, radii_mm=RADII_MM) -> np.ndarray:
    """(X, Y, Z) the largest scale-normalised in-plane Laplacian of Gaussian (bright blobs positive) over
    ``radii_mm``, every slice at once."""
    best = None
    for r in radii_mm:
        s = r / sp / np.sqrt(2)
        lap = ndimage.gaussian_filter1d(ndimage.gaussian_filter1d(a, s, axis=0, order=2), s, axis=1) \
            + ndimage.gaussian_filter1d(ndimage.gaussian_filter1d(a, s, axis=1, order=2), s, axis=0)
        resp = -(r / sp) ** 2 * lap
        best = resp if best is None else np.maximum(best, resp)
    return best


def mr_candidates(grid: CoarseGrid, polarity: str = "bright", *, radii_mm: tuple[float, ...] = RADII_MM,
                  normalised: np.ndarray | None = None, midline: np.ndarray | None = None,
                  max_off_mm: float = 35.0, min_relative: float = 0.1, max_tries: int = 32,
                  max_per_slice: int = 12) -> list[list[Candidate]]:
    """Canal candidates of an MR on the coarse grid, one list per axial slice (see the module docstring).

    Parameters
    ----------
    grid : CoarseGrid
        The MR (any units).
    polarity : {'bright', 'dark'}
        Look for tubes brighter (T2 CSF, T1 cord) or darker (T1 CSF) than their ring.
    radii_mm : tuple of float
        Blob radii looked for, mm.
    normalised : ndarray, optional
        :func:`normalise` of ``grid.array``, when already computed.
    midline : (Z,) float ndarray, optional
        The body's left-right middle in each slice (voxel x; :func:`pipeline.spine.track.body_midline`): blobs
        over ``max_off_mm`` from it are not looked at (the canal runs in the midline; the kidneys, the bowel and
        the muscles of the flank hold most of an abdomen's blobs).
    min_relative, max_tries, max_per_slice : float, int, int
        Blobs are looked at from the strongest down, if at least ``min_relative`` of the strongest blob of their
        slice, ``max_tries`` of them per slice, ``max_per_slice`` kept (an abdomen at 3 mm holds a hundred).
    """
    sp = grid.spacing
    a = normalise(grid.array) if normalised is None else normalised
    body = a > 0.1
    a = polarity_image(a, polarity)
    resp = blob_response(a, sp, radii_mm)
    size = max(3, int(6 / sp) | 1)
    peaks = (resp == ndimage.maximum_filter(resp, size=(size, size, 1))) & (resp > 0.08)
    enough = body.sum(axis=(0, 1)) * sp * sp >= 400.0
    edge = int(np.ceil(EDGE_MM / sp))  # a canal has its ring of tissue around it, inside the field
    out: list[list[Candidate]] = [[] for _ in range(a.shape[2])]
    at = np.argwhere(peaks)
    if midline is not None:
        mid = np.nan_to_num(np.asarray(midline, float), nan=a.shape[0] / 2)
        at = at[np.abs(at[:, 0] - mid[at[:, 2]]) * sp <= max_off_mm]
    r = resp[tuple(at.T)]
    top = np.zeros(a.shape[2], np.float32)
    np.maximum.at(top, at[:, 2], r)
    keep = r >= min_relative * top[at[:, 2]]  # the canal is among the strongest blobs of its slice
    at = at[keep][np.argsort(-r[keep], kind="stable")]
    tried, kept = np.zeros(a.shape[2], int), np.zeros(a.shape[2], int)
    taken = np.zeros(a.shape, bool)  # voxels of the blobs kept: a second peak in one blob is not grown again
    for x, y, k in at:
        if not enough[k] or min(x, y, a.shape[0] - 1 - x, a.shape[1] - 1 - y) < edge or kept[k] >= max_per_slice \
                or tried[k] >= max_tries or taken[x, y, k]:
            continue
        tried[k] += 1
        cand = _grow_blob(a[:, :, k], x, y, sp, int(k), float(resp[x, y, k]))
        if cand is not None:
            kept[k] += 1
            taken[cand.pixels[:, 0], cand.pixels[:, 1], k] = True
            out[k].append(cand)
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
    rr, rx = int(np.ceil(14 / sp)), int(np.ceil(WIDE_MM / sp))
    x0, x1, y0, y1 = max(x - rx, 0), min(x + rx + 1, sl.shape[0]), max(y - rr, 0), min(y + rr + 1, sl.shape[1])
    win = sl[x0:x1, y0:y1]
    gx, gy = np.mgrid[x0:x1, y0:y1]
    d = np.hypot(gx - cx, gy - cy) * sp
    # a canal may be wide (a lumbar canal with its lateral recesses: up to 50 mm), never deep
    e = np.hypot((gx - cx) * sp * 12.5 / (WIDE_MM - 1.5), (gy - cy) * sp)
    core = win[d <= 2.5] if (d <= 2.5).any() else win[x - x0:x - x0 + 1, y - y0:y - y0 + 1].ravel()
    centre = float(np.median(core))
    ring_px = win[(d > 9) & (d <= 14)]
    ring = float(np.percentile(ring_px, 30)) if ring_px.size else 0.0
    top = centre
    if centre - ring < 0.08:  # a cord darker than its CSF: the CSF around it is the blob
        top = float(np.percentile(win[d <= 9], 90)) if (d <= 9).any() else centre
        if top - ring < 0.08:
            return None
    # a blob joined to a neighbour of its brightness is cut off at a higher level, or at its thin necks (a
    # spinous process, a root)
    for share, opened in LEVELS:
        over = (win > ring + share * (top - ring)) & (e <= 13)
        filled = _fill_holes(ndimage.binary_opening(over, OPEN) if opened else over)
        lab, _ = ndimage.label(filled)
        # the component at the centre, or the one that surrounds it (the CSF ring around a cord)
        own = lab[x - x0, y - y0]
        region = lab == own
        if own and not region[e > 12.5].any():  # within a canal's size
            break
    else:
        return None
    return np.argwhere(region) + [x0, y0], top - ring


def _fill_holes(m: np.ndarray) -> np.ndarray:
    """``m`` with its holes filled (the background parts that do not touch the window's edge): one labelling,
    where scipy's binary_fill_holes dilates for as long as the window is wide."""
    lab, n = ndimage.label(~m)
    if n == 0:
        return m
    edge = np.unique(np.r_[lab[0], lab[-1], lab[:, 0], lab[:, -1]])
    return m | ~np.isin(lab, edge)


def chain_score(chain: Chain, dz: float) -> float:
    """A chain's total: its members' scores per mm of height (longer and clearer chains score more)."""
    return float(sum(m.score for m in chain.members) * dz)


def pick_chain(chains: dict[str, Chain | None], dz: float, spacing: float, depth: np.ndarray | None = None, *,
               ratio: float = 0.5, min_ap_mm: float = 15.0, min_coverage: float = 0.5,
               front: float = 0.6) -> tuple[str, Chain | None]:
    """The bright or the dark chain: the higher total (:func:`chain_score`), unless it lies in the front of the
    body (beyond ``front`` of the body's depth from its back, median over its slices: :func:`front_share`) and
    the other one runs behind it (at least ``min_ap_mm`` further posterior) on most of its slices
    (``min_coverage``), scoring at least ``ratio`` of it. The vertebral body, at least 20 mm deep, lies in front
    of the canal, and the tubes that mimic the canal (the aorta, the IVC, the trachea) in front of the body."""
    got = {p: c for p, c in chains.items() if c is not None}
    if not got:
        return "", None
    ranked = sorted(got, key=lambda p: -chain_score(got[p], dz))
    best = ranked[0]
    for other in ranked[1:]:
        a, b = got[best], got[other]
        common, ia, ib = np.intersect1d(a.slices, b.slices, return_indices=True)
        if len(common) < 3 or front_share(a, depth) < front:
            continue
        behind = float(np.median(a.centres[ia, 1] - b.centres[ib, 1])) * spacing  # +y is anterior
        if behind >= min_ap_mm and b.coverage >= min_coverage and chain_score(b, dz) >= ratio * chain_score(a, dz):
            best = other
    return best, got[best]


def front_share(chain: Chain, depth: np.ndarray | None) -> float:
    """Where the chain runs between the back (0) and the front (1) of the body (``depth``: (Z, 2) posterior and
    anterior edge, voxel y, of :func:`pipeline.spine.track.body_depth`), median over its slices; 0 unknown."""
    if depth is None:
        return 0.0
    d = depth[chain.slices]
    ok = np.all(np.isfinite(d), axis=1) & (d[:, 1] > d[:, 0])
    if not ok.any():
        return 0.0
    return float(np.median((chain.centres[ok, 1] - d[ok, 0]) / (d[ok, 1] - d[ok, 0])))
