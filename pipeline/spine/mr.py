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

An axial slice through the spine is mirror-symmetric about the canal (the vertebral body in front, the pedicles,
laminae and paraspinal muscles on both sides, in every sequence), and nothing else in the trunk or neck is: the
aorta and the IVC lie beside the midline, fat lobules and a lamina's marrow beside the canal, and a textured
field is symmetric about no line. :func:`mirror_symmetry` gives, for every voxel, the correlation of the window
around it with its mirror image about the sagittal line through it; blobs are looked at in the order of their
response times :func:`symmetry_weight`, and their score is weighted by it, so a low-contrast canal (a T1 at 3 mm,
its dark sac beside dark muscle) wins over brighter blobs off the axis, and a field without a spine scores low.
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
SYM_HALF_MM = (30.0, 25.0)         # the window mirrored about a sagittal line: +-30 mm left-right, +-25 mm AP
SYM_GAP_MM = 10.0                  # ... without the band of +-10 mm around the line (the blob itself: any round
                                   # blob is symmetric about its own axis; the canal's surroundings are)
SYM_FULL = 0.5                     # a mirror correlation from which a blob counts as fully symmetric
SYM_FLOOR = 0.2                    # the weight of a blob symmetric about no line through it


def normalise(a: np.ndarray) -> np.ndarray:
    """``a`` scaled to 0..1 between the 1st and 98th percentiles of the voxels over its 5th percentile (the air
    of the background left out), clipped."""
    a = np.asarray(a, dtype=np.float32)
    above = a[a > np.percentile(a, 5)] if a.size else a
    lo, hi = np.percentile(above, [1, 98]) if above.size else (0.0, 1.0)  # an empty field: nothing is bright
    return np.clip((a - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def polarity_image(a: np.ndarray, polarity: str) -> np.ndarray:
    """The normalised scan (``'bright'``) or the inverse of the mean of it and its :func:`equalise` d ranks
    (``'dark'``: the air around the body becomes one bright region far wider than a canal, and no candidate).

    A linear scale is set by the brightest tissue (fat, CSF on T2): the dark end, where a T1's CSF, cortex, muscle
    and marrow all lie, is squeezed into a tenth of it, and a dark sac beside dark muscle has almost no contrast.
    In ranks the sac, among the darkest few per cent of the body, stands apart from muscle and marrow; the linear
    half keeps it apart where much of the body is dark (fat-suppressed T1: fat, muscle and CSF all low).
    """
    if polarity == "bright":
        return a
    if polarity != "dark":
        raise ValueError(f"polarity: expected 'bright' or 'dark', got {polarity!r}")
    return (1.0 - 0.5 * (a + equalise(a))).astype(np.float32)


def equalise(a: np.ndarray, levels: int = 200) -> np.ndarray:
    """``a`` mapped to its rank among the voxels over its 5th percentile (the body), 0..1, by ``levels`` quantiles
    (linear between them; ties share one rank, the air below the body is 0)."""
    a = np.asarray(a, dtype=np.float32)
    above = a[a > np.percentile(a, 5)] if a.size else a
    if above.size == 0:
        return np.zeros_like(a)
    q, first = np.unique(np.percentile(above, np.linspace(0, 100, levels + 1)), return_index=True)
    return np.interp(a, q, first / levels).astype(np.float32)


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
                  normalised: np.ndarray | None = None, symmetry: np.ndarray | None = None,
                  midline: np.ndarray | None = None,
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
    symmetry : ndarray, optional
        :func:`mirror_symmetry` of the normalised scan, when already computed (it is the same for both polarities).
    midline : (Z,) float ndarray, optional
        The body's left-right middle in each slice (voxel x; :func:`pipeline.spine.track.body_midline`): blobs
        over ``max_off_mm`` from it are not looked at (the canal runs in the midline; the kidneys, the bowel and
        the muscles of the flank hold most of an abdomen's blobs).
    min_relative, max_tries, max_per_slice : float, int, int
        Blobs are looked at from the strongest down (their response times :func:`symmetry_weight`), if at least
        ``min_relative`` of the strongest blob of their slice, ``max_tries`` of them per slice, ``max_per_slice``
        kept (an abdomen at 3 mm holds a hundred).
    """
    sp = grid.spacing
    a = normalise(grid.array) if normalised is None else normalised
    weight = symmetry_weight(mirror_symmetry(a, sp) if symmetry is None else symmetry)
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
    r = resp[tuple(at.T)] * weight[tuple(at.T)]
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
        cand = _grow_blob(a[:, :, k], x, y, sp, int(k), float(resp[x, y, k]), weight[:, :, k])
        if cand is not None:
            kept[k] += 1
            taken[cand.pixels[:, 0], cand.pixels[:, 1], k] = True
            out[k].append(cand)
    return out


def _grow_blob(sl: np.ndarray, x: int, y: int, sp: float, k: int, resp: float,
               weight: np.ndarray | None = None) -> Candidate | None:
    """The bright region around (x, y): over halfway between the blob's centre and its ring at 9-14 mm, grown
    again around its own centroid (a peak on one side of the bright CSF around a darker cord moves to the middle);
    its score is weighted by ``weight`` (:func:`symmetry_weight` of the slice) at its centroid."""
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
    centre = region.mean(axis=0)
    if weight is not None:
        cx, cy = np.clip(np.rint(centre).astype(int), 0, np.array(weight.shape) - 1)
        score *= float(weight[cx, cy])
    return Candidate(k, centre, region, area, score)


def mirror_symmetry(a: np.ndarray, sp: float, half_mm: tuple[float, float] = SYM_HALF_MM,
                    gap_mm: float = SYM_GAP_MM) -> np.ndarray:
    """(X, Y, Z) float32, -1..1: how mirror-symmetric each axial slice is about the sagittal line through each voxel.

    The Pearson correlation between the voxels of a window (``half_mm``: half its left-right and antero-posterior
    size; the band of ``gap_mm`` either side of the line left out: a round blob is symmetric about its own axis,
    whatever lies around it) on one side of the line and their mirror images on the other, best over the lines through the voxel and
    half a voxel either side, then over the lines within a voxel (a blob's centroid is a voxel off its axis). Pairs
    beyond the field are left out (a sagittal scan may be only 40 mm wide); 0 where fewer than a third are in view.
    """
    a = np.asarray(a, dtype=np.float32)
    d0 = max(1, int(round(gap_mm / sp)))
    nd = max(d0 + 2, int(round(half_mm[0] / sp)))
    wy = 2 * int(round(half_mm[1] / sp)) + 1
    best = np.full(a.shape, -1.0, np.float32)
    for half in (0, 1):  # the line through voxel centres x0, or between x0 and x0 + 1
        corr = _mirror_correlation(a, d0, nd, wy, half)
        best = np.maximum(best, corr)
        if half:
            best[1:] = np.maximum(best[1:], corr[:-1])
    return ndimage.maximum_filter1d(best, 3, axis=0)


def _mirror_correlation(a: np.ndarray, d0: int, nd: int, wy: int, half: int) -> np.ndarray:
    """The correlation of :func:`mirror_symmetry` about the lines at x0 + ``half`` / 2: pairs (x0 - d + half, x0 + d)
    for d = ``d0``..``nd``, summed over ``wy`` rows."""
    X = a.shape[0]
    sums = np.zeros((6,) + a.shape, np.float32)  # n, l, r, ll, rr, lr
    for d in range(d0, nd + 1):
        s, e = d - half, X - 1 - d  # the lines x0 in [s, e] have both voxels of the pair in the field
        if e < s:
            break
        left, right = a[s - d + half:e - d + half + 1], a[s + d:e + d + 1]
        for i, v in enumerate((1.0, left, right, left * left, right * right, left * right)):
            sums[i, s:e + 1] += v
    sums = ndimage.uniform_filter1d(sums, wy, axis=2, mode="constant") * wy
    n, sl, sr, sll, srr, slr = sums
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = slr / n - sl * sr / n ** 2
        var = (sll / n - (sl / n) ** 2) * (srr / n - (sr / n) ** 2)
        corr = np.where((n >= (nd - d0 + 1) * wy / 3) & (var > 1e-8), cov / np.sqrt(np.maximum(var, 1e-12)), 0.0)
    return np.clip(np.nan_to_num(corr), -1.0, 1.0).astype(np.float32)


def symmetry_weight(sym: np.ndarray, full: float = SYM_FULL, floor: float = SYM_FLOOR) -> np.ndarray:
    """A blob's weight from :func:`mirror_symmetry` at its centre: 1 from a correlation of ``full`` up, down to
    ``floor`` for a window symmetric about no line through it (a fat lobule, a vessel beside the midline)."""
    return np.clip(np.asarray(sym, np.float32) / full, floor, 1.0)


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
