"""Vessel calibre at every centreline point, in the plane orthogonal to the local tangent.

For each point the mask (or a probability map) is sampled on a fine square grid (a fifth of the smallest
voxel) in the orthogonal plane, in world mm, so any storage orientation and anisotropic voxels are handled.
A binary mask is sampled nearest-neighbour: the section of the voxelised vessel, whose area averaged along the
vessel equals voxel volume / length and so carries no bias; a probability map is interpolated linearly and
its partial-volume fractions are integrated. The region above 0.5 holding the point is kept:

* ``area_mm2``: its area (binary) or the integral of the fractions around it (probabilities);
* ``diameter_mm``: the area-equivalent diameter ``2 sqrt(A / pi)`` of the area averaged along the branch over
  ``max(window_mm, 3 voxels)`` of clean sections (removing the voxel aliasing of single sections); points whose
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
    t = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-9)
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
    delta = float(sp.min()) / 5.0
    field = np.asarray(field, dtype=np.float32)
    shape = np.array(field.shape)
    # A binary mask is sampled nearest-neighbour: the section of the voxelised vessel, whose area averaged
    # along the vessel is unbiased (voxel volume / length); linear interpolation would shave the corners.
    # A probability map is interpolated linearly and its fractions integrated.
    binary = bool(np.isin(field[field > 0][:10000], (1.0,)).all())
    order = 0 if binary else 1
    grow = max(1, int(round(sp.max() / delta)))
    for b in graph.branches:
        pts = b.points
        n = len(pts)
        vox = (inv[:3, :3] @ pts.T).T + inv[:3, 3]
        r_edt = ndimage.map_coordinates(distance_mm, vox.T, order=1, mode="nearest")
        closed = b.start == b.end and n > 3
        _, e1, e2 = _frames(pts, closed)
        area = np.zeros(n)
        insc = np.zeros(n)
        flags = np.zeros(n, dtype=np.int64)
        shift = np.zeros((n, 2))
        for k in range(n):
            R = float(np.clip(2.5 * r_edt[k] + 2 * sp.max(), 3.0, 20.0))
            g = np.arange(-R, R + delta / 2, delta)
            U, V = np.meshgrid(g, g, indexing="ij")
            xyz = pts[k] + U[..., None] * e1[k] + V[..., None] * e2[k]
            ijk = np.tensordot(xyz, inv[:3, :3].T, axes=1) + inv[:3, 3]
            outside = np.any((ijk < -0.5) | (ijk > shape - 0.5), axis=-1)
            vals = ndimage.map_coordinates(field, ijk.reshape(-1, 3).T, order=order, mode="constant",
                                           cval=0.0).reshape(U.shape)
            inside = vals > threshold
            lab, nlab = ndimage.label(inside)
            c = len(g) // 2
            target = lab[c, c]
            if target == 0 and nlab:
                d2 = np.where(lab > 0, U ** 2 + V ** 2, np.inf)
                i, j = np.unravel_index(np.argmin(d2), d2.shape)
                target = lab[i, j] if np.sqrt(d2[i, j]) <= max(r_edt[k], sp.max()) else 0
            if target == 0:
                flags[k] |= EMPTY
                continue
            region = lab == target
            dt = ndimage.distance_transform_edt(np.pad(region, 1), sampling=delta)[1:-1, 1:-1]
            region, merged = _own_lobe(region, dt, c, delta)
            if merged:
                flags[k] |= MERGED
                lab = np.where(region, target, np.where(lab == target, -1, lab))
            if binary:
                area[k] = region.sum() * delta * delta
            else:  # partial-volume fractions: integrate them around the region, not over other vessels
                near = ndimage.binary_dilation(region, iterations=grow) & ((lab == 0) | region)
                area[k] = vals[near].sum() * delta * delta
            # inscribed circle on the linearly interpolated section (the nearest-neighbour one is stair-cased)
            lin = ndimage.map_coordinates(field, ijk.reshape(-1, 3).T, order=1, mode="constant",
                                          cval=0.0).reshape(U.shape) > threshold
            lin &= ndimage.binary_dilation(region, iterations=grow)
            insc[k] = 2 * ndimage.distance_transform_edt(np.pad(lin, 1), sampling=delta).max()
            shift[k] = (U[region].mean(), V[region].mean())
            rim = np.zeros_like(region)
            rim[[0, -1], :] = rim[:, [0, -1]] = True
            if (region & rim).any() or (region & outside).any():
                flags[k] |= BORDER
        _flag_nodes(b, graph, r_edt, flags, sp)
        # re-centre clean points on their section's centroid (sub-voxel), smoothed along the branch
        ok = (flags & (JUNCTION | END | EMPTY | MERGED | BORDER)) == 0
        if ok.sum() >= 3:
            sh = np.where(ok[:, None], shift, 0.0)
            w = ndimage.gaussian_filter1d(ok.astype(float), 2.0, mode="nearest")
            sh = ndimage.gaussian_filter1d(sh, 2.0, axis=0, mode="nearest") / np.maximum(w, 1e-6)[:, None]
            sh[~ok] = 0.0
            b.points = pts + sh[:, :1] * e1 + sh[:, 1:] * e2
        b.data.update(area_mm2=area, inscribed_diameter_mm=insc, radius_edt_mm=r_edt, flags=flags,
                      diameter_mm=_smoothed_diameter(pts, area, flags, max(window_mm, 3 * float(sp.max())), closed))


def _own_lobe(region: np.ndarray, dt: np.ndarray, c: int, delta: float) -> tuple[np.ndarray, bool]:
    """Split a figure-8 section (two touching vessels) at its neck; keep the lobe holding the centre."""
    peak = dt.max()
    if region.sum() * delta * delta < 1.3 * np.pi * peak * peak:
        return region, False  # about as round as its inscribed circle: one vessel
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    peaks = peak_local_max(dt, min_distance=max(2, int(0.6 * peak / delta)), threshold_abs=0.5 * peak,
                           exclude_border=False)
    if len(peaks) < 2:
        return region, False
    markers = np.zeros(region.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    lobes = watershed(-dt, markers, mask=region)
    # a neck narrower than 70 % of the smaller lobe's radius marks two vessels, not one oval vessel
    top = [dt[tuple(p)] for p in peaks]
    boundary = (ndimage.grey_dilation(lobes, size=3) != lobes) & region
    if not boundary.any() or dt[boundary].max() > 0.7 * min(top[:2]):
        return region, False
    own = lobes[c, c]
    if own == 0:
        return region, False
    return lobes == own, True


def _flag_nodes(b, graph: CentrelineGraph, r_edt: np.ndarray, flags: np.ndarray, sp: np.ndarray) -> None:
    """Flag points whose section is disturbed by a junction or a free end of the branch."""
    for node in {b.start, b.end}:
        deg = graph.degree[node]
        if deg == 2 and b.start != b.end:
            continue
        d = np.linalg.norm(b.points - graph.nodes[node], axis=1)
        if deg >= 3 or (b.start == b.end and deg > 2):
            flags[d < graph.node_radius[node] + r_edt + 0.5 * sp.max()] |= JUNCTION
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
