"""Vessels of the phantom as tubes (polyline + radius) and their partial-volume rendering.

The plexus (Groen et al., Spine 2004; Stringer et al., Clin Anat 2012; Batson 1940):
four longitudinal channels in the epidural fat (two anterior behind the bodies, medial at mid-body and
lateral at the discs; two posterior inside the laminae), a venous ring around the dural sac at every
vertebra, a basivertebral vein from the back of each body and intervertebral veins out of every foramen.
Diameters (mm): anterior 2.2-3.6 base (cervical/lumbar larger than thoracic), posterior 1.5-2.4,
rings ~55 % of the channels they join (>= 1.2), basivertebral 1.4-2.2, intervertebral 1.3-2.2; a level is
engorged (x1.4-1.9, as in caval obstruction) with probability ``p_engorged``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import CubicSpline

from .anatomy import SpineAxis, Vertebra, canal_edge_v

CHANNELS = ("anterior_left", "anterior_right", "posterior_left", "posterior_right")


@dataclass
class Tube:
    """A vessel: world points (N, 3) RAS mm, radius (N,) mm, and what it is."""

    name: str
    kind: str                      # a channel name, 'ring', 'basivertebral', 'intervertebral' or a distractor
    points: np.ndarray
    radius: np.ndarray
    s: np.ndarray                  # axis position of every point (for levels)
    plexus: bool = True
    meta: dict = field(default_factory=dict)


def _levels_interp(s, verts: list[Vertebra], values) -> np.ndarray:
    return np.interp(s, [v.s_centre for v in verts], values)


def canal_profile(s, verts: list[Vertebra]):
    """Canal AP and width (mm) along ``s``, interpolated between levels."""
    return (_levels_interp(s, verts, [v.canal_ap for v in verts]),
            _levels_interp(s, verts, [v.canal_width for v in verts]))


def body_phase(s, verts: list[Vertebra]) -> np.ndarray:
    """-1 at mid-body, +1 at mid-disc (smooth), for the medial/lateral swing of the anterior channels."""
    knots_s, knots_v = [], []
    for k, v in enumerate(verts):
        knots_s.append(v.s_centre)
        knots_v.append(-1.0)
        if k < len(verts) - 1:
            knots_s.append(v.s_centre + v.height / 2 + v.disc_below / 2)
            knots_v.append(1.0)
    return np.interp(s, knots_s, knots_v)


def draw_diameters(verts: list[Vertebra], rng: np.random.Generator, p_engorged: float = 0.15) -> dict:
    """Per-level diameter (mm) of each longitudinal channel."""
    out = {c: [] for c in CHANNELS}
    for v in verts:
        region = v.name[0]
        base_a = {"C": 3.2, "T": 2.4, "L": 3.2, "S": 3.0}[region] * rng.uniform(0.85, 1.15)
        base_p = {"C": 2.0, "T": 1.8, "L": 2.0, "S": 1.8}[region] * rng.uniform(0.9, 1.15)
        engorged = rng.random() < p_engorged
        for c in CHANNELS:
            d = (base_a if c.startswith("anterior") else base_p) * rng.uniform(0.9, 1.1)
            if engorged:
                d *= rng.uniform(1.4, 1.9) if c.startswith("anterior") else rng.uniform(1.2, 1.5)
            out[c].append(d)
    return out


def channel_geometry(s, verts, diam: dict):
    """(u, v, r) of every channel along ``s`` (dict of arrays)."""
    ap, cw = canal_profile(s, verts)
    phase = body_phase(s, verts)
    geo = {}
    for c in CHANNELS:
        r = _levels_interp(s, verts, diam[c]) / 2
        side = 1.0 if c.endswith("left") else -1.0
        if c.startswith("anterior"):
            u = side * cw * (0.27 + 0.05 * phase)
            v = canal_edge_v(u, ap, cw) - r - 0.2
        else:
            u = side * cw * 0.25
            v = -(canal_edge_v(u, ap, cw) - r - 0.2)
        geo[c] = (u, v, r)
    return geo


def dura_geometry(s, verts, diam):
    """Dural sac ellipse (centre v, half-width u, half-depth v) along ``s``, clear of every vessel."""
    ap, cw = canal_profile(s, verts)
    g = channel_geometry(s, verts, diam)
    front = np.minimum(g["anterior_left"][1] - g["anterior_left"][2], g["anterior_right"][1] - g["anterior_right"][2]) - 0.6
    back = np.maximum(g["posterior_left"][1] + g["posterior_left"][2], g["posterior_right"][1] + g["posterior_right"][2]) + 0.6
    r_ring = ring_radius(g)
    du = cw / 2 - 2 * r_ring - 1.2
    return (front + back) / 2, du, np.maximum((front - back) / 2, 1.0)


def ring_radius(g) -> np.ndarray:
    mean_r = np.mean([g[c][2] for c in CHANNELS], axis=0)
    return np.maximum(0.55 * mean_r, 0.6)


def build_plexus(axis: SpineAxis, verts: list[Vertebra], diam: dict, rng: np.random.Generator,
                 step: float = 0.5) -> list[Tube]:
    """Every plexus vessel as a :class:`Tube`."""
    tubes = []
    s0 = verts[0].s_centre - verts[0].height / 2 - 25   # the channels run on beyond the field of view,
    s1 = verts[-1].s_centre + verts[-1].height / 2 + 25  # as in a real scan
    s = np.arange(s0, s1 + step, step)
    geo = channel_geometry(s, verts, diam)
    for c in CHANNELS:
        u, v, r = geo[c]
        tubes.append(Tube(c, c, axis.to_world(u, v, s), r, s))
    for k, vert in enumerate(verts):
        sc = np.array([vert.s_centre])
        g = {c: tuple(x[0] for x in geo_c) for c, geo_c in channel_geometry(sc, verts, diam).items()}
        ap, cw = (x[0] for x in canal_profile(sc, verts))
        rr = float(ring_radius({c: (None, None, np.array([g[c][2]])) for c in CHANNELS})[0])
        edge0 = canal_edge_v(0.0, ap, cw)
        ul = cw / 2 - rr - 0.3
        (ua, va, _), (up, vp, _) = g["anterior_left"], g["posterior_left"]
        ctrl = np.array([(0, edge0 - rr - 0.2), (ua, va), (ul, (va + vp) / 2), (up, vp), (0, -(edge0 - rr - 0.2)),
                         (-up, vp), (-ul, (va + vp) / 2), (-ua, va), (0, edge0 - rr - 0.2)])
        t = np.arange(len(ctrl))
        spl = CubicSpline(t, ctrl, bc_type="periodic")
        tt = np.linspace(0, len(ctrl) - 1, 160)
        uv = spl(tt)
        ring_s = np.full(len(tt), vert.s_centre)
        tubes.append(Tube(f"{vert.name} ring", "ring", axis.to_world(uv[:, 0], uv[:, 1], ring_s),
                          np.full(len(tt), rr), ring_s))
        if vert.name == "C1":  # the atlas has no body, hence no basivertebral vein
            continue
        # basivertebral vein: from the retrocorporeal anastomosis into the back of the body
        depth = min(vert.depth * 0.45, 14.0)
        n = 30
        vv = np.linspace(edge0 - rr - 0.2, edge0 + depth, n)
        rb = np.linspace(rng.uniform(0.7, 1.1), 0.55, n)
        sb = np.full(n, vert.s_centre)
        tubes.append(Tube(f"{vert.name} basivertebral", "basivertebral", axis.to_world(np.zeros(n), vv, sb), rb, sb))
        if k < len(verts) - 1 and vert.disc_below > 0:
            sd = vert.s_centre + vert.height / 2 + vert.disc_below / 2
            gd = {c: tuple(x[0] for x in geo_c) for c, geo_c in channel_geometry(np.array([sd]), verts, diam).items()}
            for side, c in ((1.0, "anterior_left"), (-1.0, "anterior_right")):
                ua_d, va_d, _ = gd[c]
                cw_d = canal_profile(np.array([sd]), verts)[1][0]
                ctrl = np.array([(ua_d, va_d, sd), (side * (cw_d / 2 + 3), 0.3 * va_d, sd),
                                 (side * (cw_d / 2 + 16), -2.0, sd + 2.0)])
                tt = np.linspace(0, 1, 40)
                pts = CubicSpline([0, 0.45, 1], ctrl)(tt)
                rv = np.full(len(tt), rng.uniform(0.65, 1.1))
                tubes.append(Tube(f"{vert.name}-{verts[k + 1].name} intervertebral {c.split('_')[1]}", "intervertebral",
                                  axis.to_world(pts[:, 0], pts[:, 1], pts[:, 2]), rv, pts[:, 2]))
    return tubes


_SUB = (np.stack(np.meshgrid(*[np.array([-1, 0, 1]) / 3.0] * 3, indexing="ij"), -1).reshape(-1, 3)).astype(np.float32)


def _segment_distance(X, Y, Z, p0, seg, L2, r0, r1):
    t = np.clip(((X - p0[0]) * seg[0] + (Y - p0[1]) * seg[1] + (Z - p0[2]) * seg[2]) / L2, 0, 1)
    dx, dy, dz = X - (p0[0] + t * seg[0]), Y - (p0[1] + t * seg[1]), Z - (p0[2] + t * seg[2])
    return np.sqrt(dx * dx + dy * dy + dz * dz) - (r0 + t * (r1 - r0))


def render_tubes(tubes: list[Tube], shape, affine: np.ndarray, band: float = 2.0):
    """Signed distance (mm) to the union of ``tubes`` and the fraction of every voxel inside them.

    The fraction is exact to 1/27: voxels cut by a tube wall are supersampled 3 x 3 x 3.

    Returns
    -------
    sdf : (I, J, K) float32 ndarray
        Distance from each voxel centre to the nearest tube wall (negative inside); ``+inf`` farther than
        ``band`` mm outside. ``sdf <= 0`` is the partial-volume-aware mask (centre inside a vessel).
    fraction : (I, J, K) float32 ndarray
        Fraction of each voxel inside the tubes, in [0, 1].
    """
    shape = tuple(int(x) for x in shape)
    sdf = np.full(shape, np.inf, dtype=np.float32)
    frac = np.zeros(shape, dtype=np.float32)
    affine, to_grid = _grid_frame(np.asarray(affine, dtype=np.float64))
    inv = np.linalg.inv(affine)
    sp = np.abs(np.diag(affine)[:3]).astype(np.float32)
    half_diag = 0.5 * float(np.linalg.norm(sp))
    for tube in tubes:
        P, R = to_grid(tube.points).astype(np.float32), tube.radius.astype(np.float32)
        for a in range(len(P) - 1):
            p0, p1, r0, r1 = P[a], P[a + 1], float(R[a]), float(R[a + 1])
            reach = max(r0, r1) + band
            lo = np.minimum(p0, p1) - reach
            hi = np.maximum(p0, p1) + reach
            ilo = inv[:3, :3] @ lo + inv[:3, 3]
            ihi = inv[:3, :3] @ hi + inv[:3, 3]
            i0 = np.maximum(np.floor(np.minimum(ilo, ihi)).astype(int), 0)
            i1 = np.minimum(np.ceil(np.maximum(ilo, ihi)).astype(int) + 1, shape)
            if np.any(i1 <= i0):
                continue
            grids = [np.float32(affine[d, d]) * np.arange(i0[d], i1[d], dtype=np.float32) + np.float32(affine[d, 3])
                     for d in range(3)]
            X, Y, Z = np.meshgrid(*grids, indexing="ij", sparse=True)
            seg = p1 - p0
            L2 = float(seg @ seg) or 1e-9
            d = _segment_distance(X, Y, Z, p0, seg, L2, r0, r1)
            sl = tuple(slice(i0[k], i1[k]) for k in range(3))
            np.minimum(sdf[sl], d, out=sdf[sl])
            f = (d <= -half_diag).astype(np.float32)
            cut = np.abs(d) < half_diag
            if cut.any():
                idx = np.nonzero(cut)
                c = np.stack([grids[k][idx[k]] for k in range(3)], 1)[:, None, :] + _SUB[None] * sp
                ds = _segment_distance(c[..., 0], c[..., 1], c[..., 2], p0, seg, L2, r0, r1)
                f[idx] = (ds <= 0).mean(axis=1)
            np.maximum(frac[sl], f, out=frac[sl])
    return sdf, frac


def _grid_frame(affine: np.ndarray):
    """An axis-aligned affine ``diag(spacing)`` for the grid of ``affine`` and the rigid map of world points into
    its frame (any storage order, flips or obliquity; distances are kept). A sheared grid is refused."""
    sp = np.linalg.norm(affine[:3, :3], axis=0)
    D = affine[:3, :3] / sp
    if not np.allclose(D.T @ D, np.eye(3), atol=1e-4):
        raise ValueError("affine: render_tubes needs a grid without shear")
    local = np.diag([*sp, 1.0])
    origin = affine[:3, 3].copy()
    return local, lambda pts: (np.asarray(pts, dtype=np.float64) - origin) @ D
