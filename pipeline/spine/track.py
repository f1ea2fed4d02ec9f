"""The one chain of per-slice candidates that is the vertebral canal, and the canal mask it spans.

A dynamic programme over the axial slices (caudal to cranial) links candidates whose centres move little from
slice to slice (the canal is a smooth tube: at most ``max_step_mm`` per mm of height plus a little), skipping up
to ``max_gap_mm`` of slices without one (an open ring at a disc), and keeps the chain of the largest total
score: length counts, so the long canal wins over a short bright vessel or a hole in one bone. Where the body's
midline is known, candidates far from it weigh less (the canal is in the midline; the jugular veins,
carotids, the aorta and IVC are not).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from .candidates import BONE_HU, Candidate


@dataclass(frozen=True)
class Chain:
    """The canal's chain of candidates, caudal to cranial, and the slices between them filled in.

    Attributes
    ----------
    members : list of Candidate
        The candidates kept, one per slice, increasing ``k``.
    slices : (M,) int ndarray
        Every slice from the first member to the last.
    centres : (M, 2) float ndarray
        The canal centre in each of ``slices`` (voxel x, y), interpolated across gaps.
    """

    members: list[Candidate]
    slices: np.ndarray
    centres: np.ndarray

    @property
    def coverage(self) -> float:
        """Share of the chain's slices that hold a member (1 = a canal seen on every slice)."""
        return len(self.members) / max(len(self.slices), 1)


def best_chain(cands: list[list[Candidate]], spacing: float, *, dz: float | None = None,
               midline: np.ndarray | None = None, depth: np.ndarray | None = None,
               max_step_mm: float = 4.0, max_gap_mm: float = 30.0,
               smooth_mm: float = 4.0) -> Chain | None:
    """The highest-scoring chain of ``cands`` (one list per slice), or None when there is no candidate.

    Parameters
    ----------
    cands : list (Z) of list of Candidate
    spacing : float
        In-plane voxel size of the coarse grid, mm.
    dz : float, optional
        Distance between its slices, mm (default ``spacing``).
    midline : (Z,) float ndarray, optional
        The body's left-right middle in each slice (voxel x); NaN where unknown.
    depth : (Z, 2) float ndarray, optional
        The body's posterior and anterior edge in each slice (voxel y): candidates in the front third weigh less
        (the canal lies behind the vertebral bodies; the aorta, IVC, carotids and trachea in front of them).
    max_step_mm, max_gap_mm : float
        Largest move of the centre between neighbouring slices, and longest run of slices without a candidate.
    """
    flat = [c for cs in cands for c in cs]
    if not flat:
        return None
    dz = spacing if dz is None else dz
    weight = np.array([_weight(c, midline, spacing) * _front(c, depth) for c in flat])
    gain = weight * dz  # score per mm of height
    ks = np.array([c.k for c in flat])
    order = np.argsort(ks, kind="stable")
    best = gain.copy()
    prev = np.full(len(flat), -1)
    max_gap = max(1, int(round(max_gap_mm / dz)))
    by_k: dict[int, list[int]] = {}
    for i in order:
        c = flat[i]
        for g in range(1, max_gap + 2):
            for j in by_k.get(c.k - g, []):
                p = flat[j]
                d = float(np.hypot(*(c.centre - p.centre))) * spacing
                if d > max_step_mm + 0.6 * g * dz:
                    continue
                ratio = max(c.area_mm2, p.area_mm2) / max(min(c.area_mm2, p.area_mm2), 1e-6)
                val = best[j] + gain[i] - 0.05 * (g - 1) * dz - 0.02 * d - 0.1 * dz * (ratio > 2.5)
                if val > best[i]:
                    best[i], prev[i] = val, j
        by_k.setdefault(c.k, []).append(i)
    i = int(np.argmax(best))
    members = []
    while i >= 0:
        members.append(flat[i])
        i = int(prev[i])
    members = members[::-1]
    ks_m = np.array([m.k for m in members])
    slices = np.arange(ks_m[0], ks_m[-1] + 1)
    cm = np.array([m.centre for m in members])
    centres = np.stack([np.interp(slices, ks_m, cm[:, 0]), np.interp(slices, ks_m, cm[:, 1])], axis=1)
    if len(slices) > 2:  # a smooth tube: the centre of each slice is noisy by a voxel
        centres = gaussian_filter1d(centres, smooth_mm / dz, axis=0, mode="nearest")
    return Chain(members, slices, centres)


def _weight(c: Candidate, midline: np.ndarray | None, spacing: float) -> float:
    if midline is None or not np.isfinite(midline[c.k]):
        return c.score
    off = abs(c.centre[0] - midline[c.k]) * spacing
    return c.score * float(np.clip(1.0 - (off - 12.0) / 25.0, 0.1, 1.0))


def _front(c: Candidate, depth: np.ndarray | None) -> float:
    if depth is None or not np.all(np.isfinite(depth[c.k])) or depth[c.k, 1] <= depth[c.k, 0]:
        return 1.0
    f = (c.centre[1] - depth[c.k, 0]) / (depth[c.k, 1] - depth[c.k, 0])  # 0 at the back, 1 at the front
    return float(np.clip(1.0 - (f - 0.6) / 0.3 * 0.7, 0.3, 1.0))


def body_depth(body: np.ndarray) -> np.ndarray:
    """(Z, 2) the posterior and anterior edge (voxel y; RAS: +y anterior) of the body in each axial slice of a
    (X, Y, Z) bool mask, from the 2nd and 98th percentiles of its rows; NaN in a slice without body."""
    out = np.full((body.shape[2], 2), np.nan)
    rows = body.sum(axis=0)  # (Y, Z)
    for k in range(body.shape[2]):
        c = np.cumsum(rows[:, k])
        if c[-1] > 0:
            out[k] = np.searchsorted(c, [0.02 * c[-1], 0.98 * c[-1]])
    return out


def body_midline(body: np.ndarray) -> np.ndarray:
    """(Z,) the left-right middle (voxel x) of the body in each axial slice of a (X, Y, Z) bool mask: the mean x
    of its voxels, NaN in a slice without body. The canal lies in the midline of the trunk and neck."""
    count = body.sum(axis=(0, 1)).astype(float)
    xs = np.arange(body.shape[0], dtype=float)
    sx = (body.sum(axis=1) * xs[:, None]).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, sx / count, np.nan)


def star_mask(grid_array: np.ndarray, chain: Chain, spacing: float, *, wall, max_mm: float = 14.0,
              directions: int = 32, default_mm: float = 5.0) -> np.ndarray:
    """(X, Y, Z) bool: in each slice of ``chain``, the star-shaped region around its centre out to the wall.

    Rays leave the centre in ``directions`` directions and stop at the first voxel ``wall(values)`` calls wall
    (CT: cortical bone, or bone at least 3 mm thick: a contrast-filled vein of the plexus at the canal's rim is
    crossed, the vertebra behind it is not); a ray that meets no wall within ``max_mm`` (an open ring: a disc, a
    foramen) takes the median length of the others, and a slice with fewer than three walls a circle of
    ``default_mm``. Every epidural vein lies inside this outline.
    """
    shape = grid_array.shape
    mask = np.zeros(shape, bool)
    angles = np.linspace(0.0, 2 * np.pi, directions, endpoint=False)
    steps = np.arange(0.5, max_mm / spacing + 0.5, 0.5)
    dirs = np.stack([np.cos(angles), np.sin(angles)], 1)
    gx, gy = np.mgrid[0:shape[0], 0:shape[1]]
    for k, c in zip(chain.slices, chain.centres, strict=True):
        pts = c[None, None, :] + dirs[:, None, :] * steps[None, :, None]  # (D, S, 2)
        ij = np.rint(pts).astype(int)
        ok = np.all((ij >= 0) & (ij < shape[:2]), axis=2)
        vals = np.full(ij.shape[:2], np.nan, np.float32)
        vals[ok] = grid_array[ij[ok][:, 0], ij[ok][:, 1], k]
        hit = wall(vals, spacing)
        radius = np.where(hit.any(axis=1), steps[np.argmax(hit, axis=1)], np.nan)
        if np.isfinite(radius).sum() < 3:
            radius[:] = default_mm / spacing
        radius = np.where(np.isfinite(radius), radius, np.nanmedian(radius))
        ang = np.arctan2(gy - c[1], gx - c[0]) % (2 * np.pi)
        r = np.interp(ang, np.r_[angles, 2 * np.pi], np.r_[radius, radius[0]], period=2 * np.pi)
        mask[:, :, k] = np.hypot(gx - c[0], gy - c[1]) <= r
    return mask


def ct_wall(vals: np.ndarray, spacing: float, *, cortex_hu: float = 350.0, bone_hu: float = BONE_HU,
            thick_mm: float = 3.0) -> np.ndarray:
    """(D, S) bool along rays sampled every half voxel: cortical bone, or bone over ``thick_mm`` thick."""
    bone = np.nan_to_num(vals, nan=0.0) > bone_hu
    n = max(1, int(round(thick_mm / (0.5 * spacing))))
    run = np.ones_like(bone)
    for j in range(n):
        run[:, :bone.shape[1] - j] &= bone[:, j:]
        run[:, bone.shape[1] - j:] = False if j else run[:, bone.shape[1] - j:]
    return (np.nan_to_num(vals, nan=0.0) > cortex_hu) | run


def disc_mask(shape: tuple[int, int, int], chain: Chain, spacing: float, radius_mm: float) -> np.ndarray:
    """(X, Y, Z) bool: a disc of ``radius_mm`` around the chain's centre in each of its slices (MR: no intensity
    means cortex on every sequence, so the canal's outline is an adult canal's half-width around its centre)."""
    mask = np.zeros(shape, bool)
    gx, gy = np.mgrid[0:shape[0], 0:shape[1]]
    for k, c in zip(chain.slices, chain.centres, strict=True):
        mask[:, :, k] = np.hypot(gx - c[0], gy - c[1]) * spacing <= radius_mm
    return mask
