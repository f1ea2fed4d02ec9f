"""Signed-distance primitives in the straightened spine frame ``(u, v, w)`` and :class:`Fields`, which evaluates
each primitive only inside its own bounding box of the render grid and keeps the union per named field.

Distances are approximate away from the surface (ellipses, scaled capsules), exact enough at it for a one-voxel
partial-volume ramp.
"""

from __future__ import annotations

import numpy as np

from .anatomy import Spine
from .render import Grid

BIG = np.float32(1e3)


def ellipse2(u, v, a, b):
    """Approximate signed distance to an ellipse of half axes ``a`` (u) and ``b`` (v)."""
    return (np.sqrt((u / a) ** 2 + (v / b) ** 2) - 1.0) * np.minimum(a, b)


def extrude(d2, dw):
    """Signed distance of a 2-D shape (``d2``) extruded to ``|w| <= h`` (``dw = |w| - h``)."""
    return np.sqrt(np.maximum(d2, 0) ** 2 + np.maximum(dw, 0) ** 2) + np.minimum(np.maximum(d2, dw), 0)


def capsule(u, v, w, p0, p1, r, kw: float = 1.0):
    """Distance to the segment ``p0``-``p1`` (``(u, v, w)`` tuples) minus ``r``; ``w`` shrunk by ``kw`` (a
    capsule ``kw`` times taller than wide)."""
    a = np.array(p0, float) * [1, 1, 1 / kw]
    b = np.array(p1, float) * [1, 1, 1 / kw]
    ab = b - a
    L2 = max(float(ab @ ab), 1e-12)
    pu, pv, pw = u - a[0], v - a[1], w / kw - a[2]
    t = np.clip((pu * ab[0] + pv * ab[1] + pw * ab[2]) / L2, 0.0, 1.0)
    return np.sqrt((pu - t * ab[0]) ** 2 + (pv - t * ab[1]) ** 2 + (pw - t * ab[2]) ** 2) - r


def capsule2(u, v, p0, p1, r):
    """2-D distance to the segment ``p0``-``p1`` in ``(u, v)`` minus ``r``."""
    return capsule(u, v, 0.0 * u, (*p0, 0.0), (*p1, 0.0), r)


def ellipsoid(u, v, w, c, radii):
    """Approximate signed distance to an ellipsoid centred ``c`` with half axes ``radii``."""
    q = np.sqrt(((u - c[0]) / radii[0]) ** 2 + ((v - c[1]) / radii[1]) ** 2 + ((w - c[2]) / radii[2]) ** 2)
    return (q - 1.0) * min(radii)


class Fields:
    """Named union fields (float32 signed distance, +``BIG`` far away) on ``grid``, filled primitive by primitive.

    ``S2``, ``V2``, ``XC2`` are the straightened ``s``, ``v`` and the curve's ``x`` on the grid's (y, z) plane.
    """

    def __init__(self, spine: Spine, grid: Grid):
        self.spine, self.grid = spine, grid
        yy, zz = np.meshgrid(grid.axes[1], grid.axes[2], indexing="ij")
        self.S2, self.V2, self.XC2 = (a.astype(np.float32) for a in spine.local(yy, zz))
        self.f: dict[str, np.ndarray] = {}
        self.label: dict[str, np.ndarray] = {}

    def field(self, name: str) -> np.ndarray:
        if name not in self.f:
            self.f[name] = np.full(self.grid.shape, BIG, np.float32)
        return self.f[name]

    def box(self, u_rng, v_rng, s_rng):
        """Render-grid slices covering ``u``, ``v``, ``s`` ranges (None when empty)."""
        m = (self.S2 >= s_rng[0]) & (self.S2 <= s_rng[1]) & (self.V2 >= v_rng[0]) & (self.V2 <= v_rng[1])
        if not m.any():
            return None
        jj, kk = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
        xc = self.XC2[m]
        xa = self.grid.axes[0]
        i0 = np.searchsorted(xa, xc.min() - u_rng[1])
        i1 = np.searchsorted(xa, xc.max() - u_rng[0], side="right")
        if i1 <= i0:
            return None
        return slice(int(i0), int(i1)), slice(int(jj[0]), int(jj[-1]) + 1), slice(int(kk[0]), int(kk[-1]) + 1)

    def coords(self, box, s0: float = 0.0):
        """``(u, v, w = s - s0)`` in a box, broadcastable to its shape."""
        x = self.grid.axes[0][box[0]].astype(np.float32)
        sub = (box[1], box[2])
        return self.XC2[sub][None] - x[:, None, None], self.V2[sub][None], self.S2[sub][None] - np.float32(s0)

    def add(self, name: str, fn, u_rng, v_rng, s_rng, s0: float = 0.0, label: int | None = None) -> None:
        """Union ``fn(u, v, w)`` into field ``name`` inside the box of the ranges (``w`` relative to ``s0``);
        with ``label``, also record it as the nearest label where it wins."""
        box = self.box(u_rng, v_rng, s_rng)
        if box is None:
            return
        u, v, w = self.coords(box, s0)
        d = np.broadcast_to(fn(u, v, w), tuple(s.stop - s.start for s in box)).astype(np.float32)
        sub = self.field(name)[box]
        if label is not None:
            lab = self.label.setdefault(name, np.zeros(self.grid.shape, np.uint8))[box]
            lab[d < sub] = label
        np.minimum(sub, d, out=sub)
