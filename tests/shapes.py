"""Analytic vessel shapes rasterised with exact partial volume, for geometry tests."""

from __future__ import annotations

import numpy as np

from pipeline.io import Volume, reorient
from pipeline.synth.vessels import Tube, render_tubes


def tube(points, radius, name="t") -> Tube:
    points = np.asarray(points, dtype=float)
    r = np.broadcast_to(np.asarray(radius, dtype=float), (len(points),)).copy()
    return Tube(name, name, points, r, np.zeros(len(points)))


def line(p0, p1, n=200):
    return np.linspace(p0, p1, n)


def rasterise(tubes, spacing=(0.5, 0.5, 0.5), margin=4.0, axcodes="RAS"):
    """(mask Volume, fraction Volume) of the tubes on a grid of ``spacing`` stored in ``axcodes``."""
    pts = np.concatenate([t.points for t in tubes])
    rmax = max(float(t.radius.max()) for t in tubes)
    lo = pts.min(0) - rmax - margin
    hi = pts.max(0) + rmax + margin
    sp = np.asarray(spacing, float)
    shape = tuple(int(x) for x in np.ceil((hi - lo) / sp) + 1)
    aff = np.diag([*sp, 1.0])
    aff[:3, 3] = lo
    sdf, frac = render_tubes(tubes, shape, aff)
    return tuple(reorient(Volume(arr, aff, {"warnings": []}), axcodes) for arr in ((sdf <= 0).astype(np.uint8), frac))
