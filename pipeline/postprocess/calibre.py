"""Vessel calibre at every centreline point, in the plane orthogonal to the local tangent.

For each point the mask (or a probability map) is sampled on a fine square grid in the orthogonal plane, in world
mm, so any storage orientation and anisotropic voxels are handled: a quarter of the smallest voxel for a mask, a
third for a probability map (a smooth field, whose integral is as accurate on the coarser grid: the same errors in
``bench/measure_accuracy.py``, for 44 % fewer samples).
A binary mask is sampled nearest-neighbour: the section of the voxelised vessel, whose area averaged along the
vessel equals voxel volume / length and so carries no bias; a probability map is interpolated linearly and
its partial-volume fractions are integrated. The region above 0.5 holding the point is kept:

* ``area_mm2``: its area (binary) or the integral of the fractions around it (probabilities);
* ``diameter_mm``: the area-equivalent diameter ``2 sqrt(A / pi)`` of the area averaged along the branch over
  ``max(window_mm, 5 voxels)`` of clean sections (removing the voxel aliasing of single sections); points whose
  own section is disturbed (junction, free end) take the value of the clean sections around them;
* ``inscribed_diameter_mm``: twice the largest in-plane distance to the region's edge (maximal inscribed circle).

Per-point quality flags (bit field, like kimimaro's): ``JUNCTION`` near a branching (the section cuts the
other vessel too), ``END`` near a free end, ``BORDER`` the section leaves the image or its sampling disc
(may under-estimate), ``EMPTY`` no vessel found at the point, ``MERGED`` the section is two touching vessels
(a figure-8 split at its neck; the lobe holding the point is measured).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage

from .centreline import CentrelineGraph

JUNCTION, END, BORDER, EMPTY, MERGED = 1, 2, 4, 8, 16
_IN_PLANE = np.zeros((3, 3, 3), bool)  # 4-connectivity within each section of a stack, none across
_IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)
_CHUNK_PIXELS = 2_000_000  # section pixels measured at once (memory: about 60 bytes each)
_POOL: tuple[int, ThreadPoolExecutor] | None = None  # (the process that started it, the pool)
FLAG_NAMES = {JUNCTION: "junction", END: "end", BORDER: "border", EMPTY: "empty", MERGED: "merged"}


def flag_names(code: int) -> list[str]:
    return [name for bit, name in FLAG_NAMES.items() if code & bit]


def _frames(points: np.ndarray, closed: bool):
    if len(points) < 2:
        t = np.tile([0.0, 0.0, 1.0], (len(points), 1))
    elif closed:
        t = np.roll(points, -1, 0) - np.roll(points, 1, 0)
    else:
        t = np.gradient(points, axis=0)
    norm = np.linalg.norm(t, axis=1, keepdims=True)
    t = np.where(norm > 1e-9, t / np.maximum(norm, 1e-9), [[0.0, 0.0, 1.0]])  # a one-point branch: any frame
    ref = np.where(np.abs(t[:, [0]]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]])
    e1 = np.cross(t, ref)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(t, e1)
    return t, e1, e2


def measure_calibre(graph: CentrelineGraph, field: np.ndarray, affine: np.ndarray, *, distance_mm: np.ndarray,
                    window_mm: float = 2.0, threshold: float = 0.5) -> None:
    """Add per-point calibre arrays to every branch's ``data`` (in place).

    Parameters
    ----------
    graph : CentrelineGraph
    field : (I, J, K) float ndarray
        Mask as 0/1 or plexus probability in [0, 1], on the grid of ``affine``.
    affine : (4, 4) ndarray
        Voxel index -> RAS mm.
    distance_mm : (I, J, K) float ndarray
        Distance to the background (mm), for the local search radius and the junction/end flags.
    window_mm : float
        Length of the along-branch average of the section area.

    Adds ``area_mm2``, ``diameter_mm``, ``inscribed_diameter_mm``, ``radius_edt_mm``, ``flags`` (N,) arrays,
    and moves clean points onto the centroid of their section (sub-voxel centreline).
    """
    if window_mm < 0:
        raise ValueError(f"window_mm: must be >= 0, got {window_mm}")
    sp = np.linalg.norm(affine[:3, :3], axis=0)
    inv = np.linalg.inv(affine)
    field = np.asarray(field, dtype=np.float32)
    shape = np.array(field.shape)
    # A binary mask is sampled nearest-neighbour: the section of the voxelised vessel, whose area averaged
    # along the vessel is unbiased (voxel volume / length); linear interpolation would shave the corners.
    # A probability map is interpolated linearly and its fractions integrated.
    binary = _is_binary(field)
    delta = float(sp.min()) / (4.0 if binary else 3.0)  # section pixel (mm): see the module docstring
    grow = max(1, int(np.ceil(2 * sp.max() / delta)))  # blurred partial-volume tails reach ~2 voxels out
    radii = []
    typical: dict[int, list[float]] = {}
    for b in graph.branches:  # radius of every branch, from the distance map, for the junction zones
        vox = (inv[:3, :3] @ b.points.T).T + inv[:3, 3]
        r = ndimage.map_coordinates(distance_mm, vox.T, order=1, mode="nearest")
        radii.append(r)
        for node in {b.start, b.end}:
            typical.setdefault(node, []).append(float(np.median(r)))
    for b, r_edt in zip(graph.branches, radii):
        pts = b.points
        n = len(pts)
        closed = b.start == b.end and n > 3
        _, e1, e2 = _frames(pts, closed)
        p_vox = inv[:3, :3] @ pts.T + inv[:3, 3:]      # (3, n) voxel coordinates and in-plane axes per voxel
        e1_vox, e2_vox = inv[:3, :3] @ e1.T, inv[:3, :3] @ e2.T
        area = np.zeros(n)
        insc = np.zeros(n)
        flags = np.zeros(n, dtype=np.int64)
        shift = np.zeros((n, 2))
        R = float(np.clip(2.0 * np.percentile(r_edt, 95) + 1.5 * sp.max(), 2.5, 20.0)) if n else 3.0
        _flag_nodes(b, graph, r_edt, flags, sp, typical)
        g = np.arange(-R, R + delta / 2, delta)
        U, V = np.meshgrid(g, g, indexing="ij")
        step = int(np.clip(_CHUNK_PIXELS // U.size, 1, 256))
        for k0 in range(0, n, step):  # the sections of up to `step` points sampled and measured at once
            k1 = min(n, k0 + step)
            # voxel coordinates of every section pixel, (3, m, H, W): point + U e1 + V e2, mapped to the grid
            ijk = p_vox[:, k0:k1, None, None] + U * e1_vox[:, k0:k1, None, None] + V * e2_vox[:, k0:k1, None, None]
            outside = np.any((ijk < -0.5) | (ijk > shape[:, None, None, None] - 0.5), axis=0)
            v_lin = _sample(field, ijk.reshape(3, -1), 1).reshape(outside.shape)
            v_nn = _sample(field, ijk.reshape(3, -1), 0).reshape(outside.shape) if binary else None
            area[k0:k1], insc[k0:k1], chunk_flags, shift[k0:k1] = _sections(
                v_nn if binary else v_lin, v_lin, binary=binary, U=U, V=V, delta=delta, grow=grow,
                reach=np.maximum(r_edt[k0:k1], sp.max()), skip_lobes=(flags[k0:k1] & (JUNCTION | END)) > 0,
                outside=outside, threshold=threshold)
            flags[k0:k1] |= chunk_flags
        # re-centre clean points on their section's centroid (sub-voxel), smoothed along the branch
        ok = (flags & (JUNCTION | END | EMPTY | MERGED | BORDER)) == 0
        if ok.sum() >= 3:
            sh = np.where(ok[:, None], shift, 0.0)
            w = ndimage.gaussian_filter1d(ok.astype(float), 2.0, mode="nearest")
            sh = ndimage.gaussian_filter1d(sh, 2.0, axis=0, mode="nearest") / np.maximum(w, 1e-6)[:, None]
            sh[~ok] = 0.0
            b.points = pts + sh[:, :1] * e1 + sh[:, 1:] * e2
        b.data.update(area_mm2=area, inscribed_diameter_mm=insc, radius_edt_mm=r_edt, flags=flags,
                      diameter_mm=_smoothed_diameter(pts, area, flags, max(window_mm, 5 * float(sp.max())), closed))


def _is_binary(field: np.ndarray, n: int = 10_000) -> bool:
    """Whether the first ``n`` positive values of ``field`` (slab by slab along the first axis) are all 1: a mask,
    not a probability map. Read in slabs of about a million voxels, without copying the field (a whole-spine field
    is tens of millions of voxels, and may be a strided view)."""
    seen = 0
    step = max(1, (1 << 20) // max(int(np.prod(field.shape[1:])), 1))
    for start in range(0, field.shape[0], step):
        block = field[start:start + step]
        pos = block[block > 0][: n - seen]
        if pos.size and not (pos == 1.0).all():
            return False
        seen += pos.size
        if seen >= n:
            break
    return True


def _sample(field: np.ndarray, coords: np.ndarray, order: int) -> np.ndarray:
    """``map_coordinates`` of ``coords`` (3, N) in two threads (it releases the GIL): the largest cost of calibre."""
    half = coords.shape[1] // 2
    if half < 10_000:
        return ndimage.map_coordinates(field, coords, order=order, mode="constant", cval=0.0)
    out = np.empty(coords.shape[1], dtype=field.dtype)
    list(_pool().map(lambda sl: ndimage.map_coordinates(field, coords[:, sl], output=out[sl], order=order,
                                                        mode="constant", cval=0.0),
                     (slice(0, half), slice(half, None))))
    return out


def _pool() -> ThreadPoolExecutor:
    """The two sampling threads, started once per process (a whole spine samples a few hundred stacks); a forked
    child (a DataLoader worker, say) starts its own: the parent's threads do not exist there."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(2, thread_name_prefix="plexus-calibre"))
    return _POOL[1]


def _label(stack: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected regions of every section of ``stack`` (m, H, W), numbered over the whole stack."""
    return ndimage.label(stack, structure=_IN_PLANE)


def _edt_sq(stack: np.ndarray) -> np.ndarray:
    """Squared distance (pixels) of every pixel of a stack of sections (m, H, W) to the nearest False pixel.

    The sections are laid one under the other as a single 2-D image, so one exact 2-D transform does them all
    (much faster than one call per section); the caller keeps the sections apart with border rows (False rows
    at each section's top and bottom, or enough True rows that no distance of interest crosses them). Integer
    squared distances are exact in float32."""
    import edt

    m, h, w = stack.shape
    return edt.edtsq(np.ascontiguousarray(stack).reshape(m * h, w), black_border=False, parallel=1).reshape(m, h, w)


def _box(stack: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """The rows and columns of a stack of sections (m, H, W) that hold any True pixel, grown by ``margin``."""
    rows, cols = np.flatnonzero(stack.any((0, 2))), np.flatnonzero(stack.any((0, 1)))
    if rows.size == 0:
        return None
    return (slice(max(rows[0] - margin, 0), rows[-1] + margin + 1),
            slice(max(cols[0] - margin, 0), cols[-1] + margin + 1))


def _sections(vals: np.ndarray, lin_vals: np.ndarray, *, binary: bool, U: np.ndarray, V: np.ndarray, delta: float,
              grow: int, reach: np.ndarray, skip_lobes: np.ndarray, outside: np.ndarray, threshold: float):
    """Measure a stack of ``m`` sections at once (see :func:`measure_calibre`).

    Parameters
    ----------
    vals, lin_vals : (m, H, W) float ndarray
        Each section sampled as measured (nearest-neighbour for a mask) and linearly interpolated.
    U, V : (H, W) float ndarray
        In-plane coordinates of the section grid (mm); the point is at the centre pixel.
    reach : (m,) float ndarray
        How far (mm) from the point a region may lie when the point itself is outside the vessel.
    skip_lobes : (m,) bool ndarray
        Sections not checked for two touching vessels (junctions, free ends).
    outside : (m, H, W) bool ndarray
        Pixels outside the image.

    Returns
    -------
    area : (m,) mm2; inscribed : (m,) mm; flags : (m,) int (EMPTY, MERGED, BORDER); shift : (m, 2) mm
    """
    m = len(vals)
    c = U.shape[0] // 2
    lab, _ = _label(vals > threshold)
    # the region holding the point, or the nearest one within reach
    target = lab[:, c, c].copy()
    miss = np.nonzero((target == 0) & lab.reshape(m, -1).any(1))[0]
    if miss.size:
        d2 = np.where(lab[miss] > 0, U ** 2 + V ** 2, np.inf).reshape(miss.size, -1)
        j = d2.argmin(1)
        near_enough = np.sqrt(d2[np.arange(miss.size), j]) <= reach[miss]
        target[miss] = np.where(near_enough, lab[miss].reshape(miss.size, -1)[np.arange(miss.size), j], 0)
    empty = target == 0
    region = (lab == target[:, None, None]) & ~empty[:, None, None]
    # inscribed circle and lobes on the linearly interpolated section (no staircase): for a mask, the component
    # of the interpolated section that overlaps the region most
    lin = region
    if binary:
        llab, nl = _label(lin_vals > threshold)
        if nl:
            over = np.bincount(llab[region], minlength=nl + 1)
            over[0] = 0  # background (a section without any component keeps best = 0: no overlap)
            where = np.flatnonzero(llab)
            slice_of = np.zeros(nl + 1, dtype=np.int64)
            slice_of[llab.ravel()[where]] = where // lab[0].size
            ids = np.arange(1, nl + 1)
            order = np.lexsort((ids, -over[1:], slice_of[1:]))  # per section: most overlap, then lowest label
            sections, first = np.unique(slice_of[1:][order], return_index=True)
            best = np.zeros(m, dtype=np.int64)
            best[sections] = ids[order[first]]
            has = over[best] > 0
            lin = np.where(has[:, None, None], llab == best[:, None, None], region)
    dt = np.zeros(lin.shape)
    box = _box(lin, 0)  # every pixel beyond the rows and columns holding the regions is background
    if box is not None:
        dt[:, box[0], box[1]] = np.sqrt(_edt_sq(np.pad(lin[:, box[0], box[1]], ((0, 0), (1, 1), (1, 1))))
                                        [:, 1:-1, 1:-1].astype(np.float64)) * delta
    peak = dt.max(axis=(1, 2))
    inscribed = 2 * peak
    flags = np.where(empty, EMPTY, 0)
    # two touching vessels (a figure-8 section): only sections much larger than their inscribed circle are split
    lobed = ~empty & ~skip_lobes & (peak > 0) & ((dt > 0).sum((1, 2)) * delta * delta >= 1.7 * np.pi * peak ** 2)
    for k in np.nonzero(lobed)[0]:
        own = _own_lobe(lin[k] | region[k], dt[k], c, delta)
        if own is not None:
            flags[k] |= MERGED
            lab[k] = np.where(region[k] & ~own, -1, lab[k])
            region[k] &= own
    count = region.sum((1, 2))
    if binary:
        area = count * delta * delta
    else:  # partial-volume fractions: integrate them around the region, not over other vessels
        near = np.zeros_like(region)
        box = _box(region, grow + 1)  # pixels farther than `grow` from every region play no part
        if box is not None:
            gap = grow + 1  # rows between sections: no other section's region comes within `grow`
            sq = _edt_sq(np.pad(~region[:, box[0], box[1]], ((0, 0), (gap, gap), (0, 0)), constant_values=True))
            near[:, box[0], box[1]] = sq[:, gap:-gap] <= grow * grow
        area = np.where(empty, 0.0, (vals * (near & ((lab == 0) | region))).sum((1, 2), dtype=np.float64) * delta * delta)
    flat = region.reshape(m, -1).astype(np.float64)
    shift = np.stack([flat @ U.ravel(), flat @ V.ravel()], axis=1) / np.maximum(count, 1)[:, None]
    edge = region[:, [0, -1], :].any((1, 2)) | region[:, :, [0, -1]].any((1, 2)) | (region & outside).any((1, 2))
    flags |= np.where(edge, BORDER, 0)
    return area, np.where(empty, 0.0, inscribed), flags, shift


def _own_lobe(region: np.ndarray, dt: np.ndarray, c: int, delta: float) -> np.ndarray | None:
    """Split a figure-8 section (two touching vessels) at its neck: the lobe holding the centre, or None.

    ``dt`` is the in-plane distance to the edge (mm). A section about as round as its inscribed circle (area < 1.7 pi r^2) is
    one vessel; otherwise two distance maxima separated by a neck narrower than 70 % of the smaller one's
    radius mark two vessels (an oval vessel has a ridge, not a neck).
    """
    peak = dt.max()
    if peak <= 0 or (dt > 0).sum() * delta * delta < 1.7 * np.pi * peak * peak:
        return None
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    peaks = peak_local_max(dt, min_distance=max(2, int(0.6 * peak / delta)), threshold_abs=0.5 * peak,
                           exclude_border=False)
    if len(peaks) < 2:
        return None
    markers = np.zeros(region.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    lobes = watershed(-dt, markers, mask=region)
    top = sorted((dt[tuple(p)] for p in peaks), reverse=True)
    boundary = (ndimage.grey_dilation(lobes, size=3) != lobes) & region
    if not boundary.any() or dt[boundary].max() > 0.7 * min(top[:2]):
        return None
    own = lobes[c, c]
    if own == 0:
        return None
    return lobes == own


def _flag_nodes(b, graph: CentrelineGraph, r_edt: np.ndarray, flags: np.ndarray, sp: np.ndarray,
                typical: dict[int, list[float]]) -> None:
    """Flag points whose section is disturbed by a junction or a free end of the branch.

    Near a junction the section of this branch cuts the other vessels while its distance to the junction is
    below their radius: points closer than the largest other radius + one voxel are flagged ``JUNCTION``.
    """
    for node in {b.start, b.end}:
        deg = graph.degree[node]
        d = np.linalg.norm(b.points - graph.nodes[node], axis=1)
        if deg >= 3:
            others = list(typical.get(node, []))
            mine = float(np.median(r_edt)) if len(r_edt) else 0.0
            if mine in others:
                others.remove(mine)
            r_other = max(others) if others else graph.node_radius[node]
            flags[d < r_other + sp.max()] |= JUNCTION
        elif deg == 1:
            flags[d < r_edt + sp.max()] |= END


def _smoothed_diameter(pts, area, flags, window_mm, closed) -> np.ndarray:
    """Area-equivalent diameter from the section area averaged along the branch over clean points.

    Points whose own section is disturbed (junction, free end, empty) take the average of the clean sections
    within the window, or, where there is none, the value interpolated along the branch between the nearest
    clean sections on either side; a branch without any clean section keeps its raw areas.
    """
    good = (flags & (JUNCTION | END | EMPTY)) == 0
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))]) if len(pts) > 1 \
        else np.zeros(len(pts))
    if not good.any():
        a = area
    else:
        w = good.astype(float)
        cs_a = np.concatenate([[0.0], np.cumsum(area * w)])
        cs_w = np.concatenate([[0.0], np.cumsum(w)])
        lo = np.searchsorted(s, s - window_mm / 2, side="left")
        hi = np.searchsorted(s, s + window_mm / 2, side="right")
        num, den = cs_a[hi] - cs_a[lo], cs_w[hi] - cs_w[lo]
        a = np.where(den > 0, num / np.maximum(den, 1e-9), np.nan)
        gap = np.isnan(a)
        if gap.any():
            a[gap] = np.interp(s[gap], s[~gap], a[~gap])
    return 2 * np.sqrt(np.maximum(a, 0) / np.pi)
