"""The spine of a gen2 case: which vertebrae, their sizes, and the curved canal axis they sit on.

Geometry lives in a *straightened* frame: ``s`` is arc length (mm) along the canal centre curve, increasing
cranially; ``u`` the patient's left and ``v`` anterior (mm from the curve). The curve lies in the sagittal plane
(lordosis / kyphosis as a linearly varying tangent angle, a global tilt, a sacral bend) plus a small lateral
sine (scoliosis) that shifts ``u`` without tilting the frame. :meth:`Spine.world` maps ``(u, v, s)`` to RAS mm
and :meth:`Spine.local` maps world ``(y, z)`` back to ``(s, v)`` (the curve is planar, so ``s`` and ``v`` do not
depend on ``x``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from pipeline.core.levels import NAME_TO_VERSE

from .ranges import Gen2Ranges, uniform

LEVELS = [f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)] + ["S1"]
REGIONS = ("cervical", "thoracic", "lumbar")
KEYS = ("bw", "bd", "bh", "dh", "cw", "ca", "tref", "pr", "lt", "sl", "sdrop", "tl")
# body half width / half depth / height, disc height below, canal half width / half depth / trefoil, pedicle
# radius, lamina half thickness, spinous length / tip drop, transverse process length (mm; tref unitless)
_ANCHORS = {
    "C2": (8.5, 7.5, 15.0, 4.5, 12.5, 8.0, 0.06, 2.8, 2.5, 22.0, 4.0, 9.0),
    "C5": (8.5, 7.5, 12.0, 5.5, 12.5, 7.0, 0.06, 2.6, 2.3, 16.0, 5.0, 9.0),
    "C7": (10.0, 8.0, 13.5, 5.0, 11.5, 7.0, 0.04, 3.0, 2.6, 32.0, 8.0, 13.0),
    "T1": (12.0, 9.0, 15.0, 4.0, 9.5, 7.5, 0.02, 3.5, 3.0, 32.0, 14.0, 16.0),
    "T6": (14.0, 12.0, 18.5, 4.5, 8.0, 8.0, 0.0, 3.6, 3.4, 34.0, 24.0, 16.0),
    "T12": (19.0, 15.0, 23.0, 7.0, 10.0, 8.5, 0.0, 4.2, 3.8, 28.0, 10.0, 8.0),
    "L1": (20.0, 15.5, 25.0, 9.0, 11.0, 8.5, 0.02, 4.5, 4.0, 26.0, 6.0, 16.0),
    "L3": (23.0, 17.0, 26.0, 10.5, 11.5, 8.5, 0.06, 4.8, 4.2, 27.0, 5.0, 24.0),
    "L5": (25.0, 17.0, 25.0, 11.0, 13.0, 8.5, 0.1, 6.0, 4.5, 20.0, 3.0, 20.0),
    "S1": (26.0, 17.0, 28.0, 0.0, 13.5, 6.5, 0.08, 7.0, 5.0, 12.0, 4.0, 0.0),
}


def nominal(name: str) -> dict[str, float]:
    """Nominal dimensions of a level (linear between the anchor levels)."""
    if name not in LEVELS or name == "C1":
        raise ValueError(f"name: no gen2 vertebra {name!r} (C2..S1)")
    idx = LEVELS.index(name)
    ranks = [LEVELS.index(a) for a in _ANCHORS]
    table = np.array(list(_ANCHORS.values()))
    return {k: float(np.interp(idx, ranks, table[:, j])) for j, k in enumerate(KEYS)}


def draw_levels(region: str, rng: np.random.Generator) -> list[str]:
    """Cranial-to-caudal level names of a region's span."""
    if region not in REGIONS:
        raise ValueError(f"region: expected one of {REGIONS}, got {region!r}")
    if region == "cervical":
        return LEVELS[LEVELS.index("C2") + int(rng.integers(0, 2)):LEVELS.index("C7") + 1 + int(rng.integers(0, 2))]
    if region == "thoracic":
        n = int(rng.integers(6, 9))
        first = LEVELS.index("T1") + int(rng.integers(0, 13 - n))
        return LEVELS[first:first + n]
    return LEVELS[LEVELS.index("L1") - int(rng.random() < 0.3):]


@dataclass
class Vertebra:
    """One vertebra: ``name``, VerSe id, body centre at arc position ``s`` (mm), and its dimensions."""

    name: str
    verse_id: int
    s: float
    dims: dict[str, float]

    @property
    def kind(self) -> str:
        return self.name[0]


@dataclass
class Spine:
    """The canal centre curve sampled every ``ds`` mm (arrays over ``s``) and the vertebrae on it."""

    region: str
    s: np.ndarray
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    ty: np.ndarray
    tz: np.ndarray
    verts: list[Vertebra]
    draws: dict

    def _at(self, a: np.ndarray, s) -> np.ndarray:
        return np.interp(s, self.s, a)

    def world(self, u, v, s) -> np.ndarray:
        """Straightened ``(u, v, s)`` (mm) -> RAS points (N, 3); +u is the patient's left, i.e. -x."""
        u, v, s = (np.asarray(a, dtype=np.float64) for a in np.broadcast_arrays(u, v, s))
        ty, tz = self._at(self.ty, s), self._at(self.tz, s)
        return np.stack([self._at(self.x, s) - u, self._at(self.y, s) + v * tz, self._at(self.z, s) - v * ty], -1)

    def local(self, y: np.ndarray, z: np.ndarray):
        """World ``y``, ``z`` (any equal shapes) -> ``(s, v, xc)``: arc position, anterior offset, curve x."""
        pts = np.stack([y.ravel(), z.ravel()], 1)
        _, i = cKDTree(np.stack([self.y, self.z], 1)).query(pts)
        s = self.s[i]
        for _ in range(3):  # Newton steps onto the foot point
            dy, dz = pts[:, 0] - self._at(self.y, s), pts[:, 1] - self._at(self.z, s)
            s = np.clip(s + dy * self._at(self.ty, s) + dz * self._at(self.tz, s), self.s[0], self.s[-1])
        dy, dz = pts[:, 0] - self._at(self.y, s), pts[:, 1] - self._at(self.z, s)
        v = dy * self._at(self.tz, s) - dz * self._at(self.ty, s)
        return s.reshape(y.shape), v.reshape(y.shape), self._at(self.x, s).reshape(y.shape)

    def param(self, key: str, s) -> np.ndarray:
        """A vertebra dimension interpolated along ``s`` between body centres (constant beyond the ends)."""
        ss = np.array([v.s for v in self.verts])[::-1]
        vals = np.array([v.dims[key] for v in self.verts])[::-1]
        return np.interp(s, ss, vals)


def build_spine(region: str, levels: list[str], rng: np.random.Generator, R: Gen2Ranges, ds: float = 0.5) -> Spine:
    """Place ``levels`` (cranial to caudal) on a drawn sagittal curve; the lowest body centre is at ``s = 0``."""
    scale = uniform(rng, R.size_scale)
    verts: list[Vertebra] = []
    s_here = 0.0
    for k, name in enumerate(reversed(levels)):
        d = nominal(name)
        jit = float(np.clip(1.0 + R.level_jitter * rng.standard_normal(), 0.9, 1.1))
        dims = {key: (val if key == "tref" else val * scale * (jit if key in ("bw", "bd", "bh", "dh") else 1.0))
                for key, val in d.items()}
        if k > 0:
            s_here += verts[-1].dims["bh"] / 2 + dims["dh"] + dims["bh"] / 2
        verts.append(Vertebra(name, NAME_TO_VERSE[name], s_here, dims))
    verts.reverse()
    top, bottom = verts[0], verts[-1]
    s_lo = bottom.s - bottom.dims["bh"] / 2 - (4.0 if bottom.name != "S1" else 10.0)
    s_hi = top.s + top.dims["bh"] / 2 + max(top.dims["dh"], 4.0) + 4.0
    s = np.arange(s_lo - 60.0, s_hi + 60.0 + ds, ds)  # the curve runs on beyond the field of view
    curve = np.deg2rad(uniform(rng, R.curve_deg[region]))
    kappa = curve / max(s_hi - s_lo, 1.0) * (1.0 if region == "thoracic" else -1.0)  # kyphosis / lordosis
    tilt = np.deg2rad(uniform(rng, R.tilt_deg))
    mid = 0.5 * (s_lo + s_hi)
    phi = tilt + kappa * (np.clip(s, s_lo, s_hi) - mid)
    bend = 0.0
    if levels[-1] == "S1":
        bend = np.deg2rad(uniform(rng, R.sacral_bend_deg))
        s_ls = verts[-1].s + verts[-1].dims["bh"] / 2 + verts[-2].dims["dh"] / 2  # mid L5/S1 disc
        phi = phi + bend * np.clip((s_ls - s) / 20.0, 0.0, 1.0)
    amp, lam = uniform(rng, R.scoliosis_mm), uniform(rng, R.scoliosis_wavelength_mm)
    psi = float(rng.uniform(0, 2 * np.pi))
    y = np.cumsum(np.sin(phi)) * ds
    z = np.cumsum(np.cos(phi)) * ds
    i0 = int(np.argmin(np.abs(s)))
    y, z = y - y[i0], z - z[i0]
    x = amp * np.sin(2 * np.pi * s / lam + psi)
    draws = {"size_scale": scale, "curve_deg": float(np.rad2deg(curve)), "tilt_deg": float(np.rad2deg(tilt)),
             "sacral_bend_deg": float(np.rad2deg(bend)), "scoliosis_mm": amp, "scoliosis_wavelength_mm": lam}
    return Spine(region, s, x, y, z, np.sin(phi), np.cos(phi), verts, draws)


def canal_radius(theta: np.ndarray, cw, ca, tref) -> np.ndarray:
    """Canal wall distance from the centre at angle ``theta`` (0 anterior, +pi/2 left): an ellipse of half
    axes ``cw`` (lateral) and ``ca`` (AP) made triangular (base anterior) by ``tref``."""
    st, ct = np.sin(theta), np.cos(theta)
    return (1.0 - tref * np.cos(3 * theta)) / np.sqrt((st / cw) ** 2 + (ct / ca) ** 2)


def fov_range(spine: Spine) -> tuple[float, float]:
    """Arc positions of the top and bottom of the field of view (mid disc above the first body, into S1)."""
    top, bottom = spine.verts[0], spine.verts[-1]
    lo = bottom.s - bottom.dims["bh"] / 2 - (bottom.dims["dh"] / 2 if bottom.name != "S1" else -2.0)
    return lo, top.s + top.dims["bh"] / 2 + max(top.dims["dh"], 4.0) / 2
