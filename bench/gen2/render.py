"""Tubes (swept spheres along polylines) on an axis-aligned RAS grid: exact signed distance at voxel centres, and
the volume fraction of each voxel inside the union of tubes by supersampling the voxels that the surface crosses.

A voxel whose centre is deeper inside than its half diagonal is wholly inside (fraction 1), one farther outside is
wholly outside (0); only the shell between is supersampled, against a k-d tree of the centrelines resampled every
0.15 mm (a union of spheres that matches the swept tube to about 0.01 mm).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree


@dataclass
class Tube:
    """A vessel: ``points`` (n, 3) RAS mm, ``radius`` (n,) mm, a ``kind`` and whether it is ``plexus``."""

    name: str
    kind: str
    points: np.ndarray
    radius: np.ndarray
    plexus: bool


@dataclass
class Grid:
    """Voxel centres ``axes[d]`` (1-D, ascending, mm) of an axis-aligned RAS grid."""

    axes: tuple

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(len(a) for a in self.axes)

    @property
    def spacing(self) -> np.ndarray:
        return np.array([a[1] - a[0] if len(a) > 1 else 1.0 for a in self.axes])


def _box(grid: Grid, lo: np.ndarray, hi: np.ndarray):
    out = []
    for d, a in enumerate(grid.axes):
        i0, i1 = np.searchsorted(a, lo[d]), np.searchsorted(a, hi[d], side="right")
        if i1 <= i0:
            return None
        out.append(slice(int(i0), int(i1)))
    return tuple(out)


def tube_sdf(grid: Grid, tubes: list[Tube], margin: float):
    """Signed distance (mm, negative inside) to the union of ``tubes`` wherever it is below ``margin`` (else
    ``margin``), and the index of the nearest tube (-1 where none is within ``margin``)."""
    sdf = np.full(grid.shape, margin, dtype=np.float32)
    owner = np.full(grid.shape, -1, dtype=np.int16)
    for t_idx, t in enumerate(tubes):
        p, r = np.asarray(t.points, float), np.asarray(t.radius, float)
        for a, b, ra, rb in zip(p[:-1], p[1:], r[:-1], r[1:]):
            ext = max(ra, rb) + margin
            box = _box(grid, np.minimum(a, b) - ext, np.maximum(a, b) + ext)
            if box is None:
                continue
            ax = [grid.axes[d][box[d]] for d in range(3)]
            ab = b - a
            L2 = max(float(ab @ ab), 1e-12)
            px, py, pz = ax[0][:, None, None] - a[0], ax[1][None, :, None] - a[1], ax[2][None, None, :] - a[2]
            t_ = np.clip((px * ab[0] + py * ab[1] + pz * ab[2]) / L2, 0.0, 1.0)
            d = np.sqrt((px - t_ * ab[0]) ** 2 + (py - t_ * ab[1]) ** 2 + (pz - t_ * ab[2]) ** 2) - (ra + t_ * (rb - ra))
            sub, own = sdf[box], owner[box]
            better = d < sub
            sub[better] = d[better]
            own[better] = t_idx
    return sdf, owner


def _dense(tubes: list[Tube], step: float = 0.15):
    pts, rad = [], []
    for t in tubes:
        p, r = np.asarray(t.points, float), np.asarray(t.radius, float)
        seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
        arc = np.concatenate([[0.0], np.cumsum(seg)])
        a = np.linspace(0.0, arc[-1], max(int(np.ceil(arc[-1] / step)) + 1, 2))
        pts.append(np.stack([np.interp(a, arc, p[:, d]) for d in range(3)], 1))
        rad.append(np.interp(a, arc, r))
    return np.concatenate(pts), np.concatenate(rad)


def tube_fraction(grid: Grid, tubes: list[Tube], *, sub_mm: float = 0.3, exact: bool = True):
    """Fraction (float32) of each voxel inside the union of ``tubes``, their signed distance and nearest tube.

    ``exact=False`` takes the fraction from the distance at the centre (a linear ramp over one voxel), for big
    vessels where sub-voxel accuracy does not matter.
    """
    sp = grid.spacing
    half = 0.5 * float(np.linalg.norm(sp))
    sdf, owner = tube_sdf(grid, tubes, margin=half + 1.0)
    if not tubes:
        return np.zeros(grid.shape, np.float32), sdf, owner
    if not exact:
        return np.clip(0.5 - sdf / float(sp.mean()), 0.0, 1.0).astype(np.float32), sdf, owner
    frac = (sdf <= -half).astype(np.float32)
    shell = np.argwhere(np.abs(sdf) < half)
    if len(shell):
        n = np.maximum(np.ceil(sp / sub_mm).astype(int), 1)
        offs = np.stack(np.meshgrid(*[((np.arange(k) + 0.5) / k - 0.5) * sp[d] for d, k in enumerate(n)],
                                    indexing="ij"), -1).reshape(-1, 3)
        dense, drad = _dense(tubes)
        tree = cKDTree(dense)
        centres = np.stack([grid.axes[d][shell[:, d]] for d in range(3)], 1)
        kk = min(8, len(dense))
        for c0 in range(0, len(shell), 20000):
            c = centres[c0:c0 + 20000]
            q = (c[:, None, :] + offs[None]).reshape(-1, 3)
            dist, idx = tree.query(q, k=kk, workers=1)
            dist, idx = dist.reshape(len(q), -1), idx.reshape(len(q), -1)
            inside = np.any(dist < drad[idx], axis=1).reshape(len(c), len(offs))
            frac[tuple(shell[c0:c0 + 20000].T)] = inside.mean(1)
    return frac, sdf, owner
