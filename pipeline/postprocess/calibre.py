"""Vessel calibre at every centreline point, in the plane orthogonal to the local tangent.

For each point the mask (or a probability map) is sampled on a fine square grid (a fifth of the smallest
voxel) in the orthogonal plane, in world mm, so any storage orientation and anisotropic voxels are handled.
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

import numpy as np
from scipy import ndimage

from .centreline import CentrelineGraph

JUNCTION, END, BORDER, EMPTY, MERGED = 1, 2, 4, 8, 16
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
    delta = float(sp.min()) / 4.0
    field = np.asarray(field, dtype=np.float32)
    shape = np.array(field.shape)
    # A binary mask is sampled nearest-neighbour: the section of the voxelised vessel, whose area averaged
    # along the vessel is unbiased (voxel volume / length); linear interpolation would shave the corners.
    # A probability map is interpolated linearly and its fractions integrated.
    binary = bool(np.isin(field[field > 0][:10000], (1.0,)).all())
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
        area = np.zeros(n)
        insc = np.zeros(n)
        flags = np.zeros(n, dtype=np.int64)
        shift = np.zeros((n, 2))
        R = float(np.clip(2.0 * np.percentile(r_edt, 95) + 1.5 * sp.max(), 2.5, 20.0)) if n else 3.0
        _flag_nodes(b, graph, r_edt, flags, sp, typical)
        g = np.arange(-R, R + delta / 2, delta)
        U, V = np.meshgrid(g, g, indexing="ij")
        c = len(g) // 2
        for k0 in range(0, n, 128):  # sample the sections of up to 128 points at once
            k1 = min(n, k0 + 128)
            xyz = pts[k0:k1, None, None, :] + U[None, ..., None] * e1[k0:k1, None, None, :] + \
                V[None, ..., None] * e2[k0:k1, None, None, :]
            ijk = np.tensordot(xyz, inv[:3, :3].T, axes=1) + inv[:3, 3]
            outside = np.any((ijk < -0.5) | (ijk > shape - 0.5), axis=-1)
            flat = ijk.reshape(-1, 3).T
            v_nn = ndimage.map_coordinates(field, flat, order=0, mode="constant", cval=0.0).reshape(outside.shape) \
                if binary else None
            v_lin = ndimage.map_coordinates(field, flat, order=1, mode="constant", cval=0.0).reshape(outside.shape)
            for k in range(k0, k1):
                vals = v_nn[k - k0] if binary else v_lin[k - k0]
                lab, nlab = ndimage.label(vals > threshold)
                target = _pick(lab, nlab, c, U, V, max(r_edt[k], sp.max()))
                if target == 0:
                    flags[k] |= EMPTY
                    continue
                region = lab == target
                # inscribed circle and lobes on the linearly interpolated section (no staircase)
                lin = v_lin[k - k0] > threshold
                if binary:
                    llab, nl = ndimage.label(lin)
                    over = np.bincount(llab[region], minlength=nl + 1)
                    over[0] = 0
                    lin = llab == int(np.argmax(over)) if over.max() > 0 else region
                else:
                    lin = region
                dt = ndimage.distance_transform_edt(np.pad(lin, 1), sampling=delta)[1:-1, 1:-1]
                insc[k] = 2 * dt.max()
                own = None if flags[k] & (JUNCTION | END) else _own_lobe(lin | region, dt, c, delta)
                if own is not None:
                    flags[k] |= MERGED
                    lab = np.where(region & ~own, -1, lab)
                    region &= own
                if binary:
                    area[k] = region.sum() * delta * delta
                else:  # partial-volume fractions: integrate them around the region, not over other vessels
                    near = ndimage.distance_transform_edt(~region, sampling=delta) <= grow * delta
                    area[k] = vals[near & ((lab == 0) | region)].sum() * delta * delta
                shift[k] = (U[region].mean(), V[region].mean())
                if region[[0, -1], :].any() or region[:, [0, -1]].any() or (region & outside[k - k0]).any():
                    flags[k] |= BORDER
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


def _pick(lab: np.ndarray, nlab: int, c: int, U: np.ndarray, V: np.ndarray, reach: float) -> int:
    """Label of the section region holding the centre pixel, or the nearest one within ``reach`` mm."""
    target = int(lab[c, c])
    if target == 0 and nlab:
        d2 = np.where(lab > 0, U ** 2 + V ** 2, np.inf)
        i, j = np.unravel_index(np.argmin(d2), d2.shape)
        target = int(lab[i, j]) if np.sqrt(d2[i, j]) <= reach else 0
    return target


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
