"""Spine anatomy of the phantom: per-level dimensions, the curved spine axis and its local frames.

Everything is laid out in *straightened* coordinates ``(u, v, s)`` around the canal centre line:
``s`` (mm) runs along the spine from cranial to caudal, ``u`` (mm) towards the patient's left and ``v`` (mm)
anterior, in the plane orthogonal to the axis. :class:`SpineAxis` maps them to the RAS world frame and back.

Dimensions (means, mm) follow published morphometry, rounded: vertebral bodies and canals from
Panjabi et al. (Spine 1991 cervical & thoracic, 1992 lumbar) and Zhou et al. (Eur Spine J 2000); discs from
Pfirrmann/Frobin (lumbar ~10 mm, cervical ~5 mm); every case draws each dimension within +-10 %.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.levels import NAME_TO_VERSE, ORDER

# name: body height H, body width W, body depth D, disc below, canal AP, canal width  (mm)
# C1 (atlas) has no body and no disc below: H is the height of its ring, which the dens of C2 fills (see phantom).
MORPHOMETRY = {
    "C1": (12, 16, 10, 0.0, 20, 28), "C2": (15, 16, 15, 5.0, 16, 25), "C3": (14, 16, 15, 5.0, 14, 24),
    "C4": (14, 17, 15, 5.0, 14, 24), "C5": (14, 18, 16, 5.5, 14, 25), "C6": (14, 19, 16, 5.5, 14, 25),
    "C7": (15, 21, 16, 5.0, 14, 24), "T1": (16, 25, 17, 4.0, 14, 20), "T2": (17, 26, 18, 4.0, 14, 17),
    "T3": (17, 27, 20, 4.0, 14, 16), "T4": (18, 28, 22, 4.0, 14, 16), "T5": (18, 29, 23, 4.5, 14, 16),
    "T6": (19, 30, 24, 4.5, 14, 16), "T7": (19, 31, 25, 5.0, 14, 16), "T8": (20, 32, 26, 5.0, 15, 16),
    "T9": (21, 33, 27, 5.5, 15, 17), "T10": (22, 35, 28, 6.0, 15, 17), "T11": (23, 37, 29, 6.5, 16, 19),
    "T12": (24, 39, 30, 7.5, 17, 21), "L1": (25, 42, 32, 9.0, 17, 22), "L2": (26, 44, 33, 10.0, 16, 22),
    "L3": (26, 46, 34, 10.5, 16, 23), "L4": (27, 48, 35, 11.0, 16, 24), "L5": (27, 50, 35, 11.0, 17, 26),
    "L6": (27, 50, 35, 10.0, 17, 26), "S1": (30, 50, 32, 0.0, 15, 28),
}


def level_span(top: str, bottom: str, lumbar_count: int = 5) -> list[str]:
    """Level names from ``top`` to ``bottom`` inclusive, cranial to caudal (no T13; L6 when asked)."""
    names = [n for n in ORDER if n != "T13" and (n != "L6" or lumbar_count == 6)]
    if top not in names or bottom not in names:
        raise ValueError(f"levels: unknown level in ({top!r}, {bottom!r}); use names like 'T11', 'S1'")
    i, j = names.index(top), names.index(bottom)
    if j - i < 1:
        raise ValueError(f"levels: {top!r} must lie cranial to {bottom!r} and span at least two vertebrae")
    return names[i:j + 1]


@dataclass
class Vertebra:
    """One vertebra in straightened coordinates (mm)."""

    name: str
    verse_id: int
    s_centre: float      # body centre along the axis
    height: float
    width: float
    depth: float
    disc_below: float
    canal_ap: float
    canal_width: float


def make_vertebrae(names: list[str], rng: np.random.Generator, start: float = 0.0) -> list[Vertebra]:
    """Draw per-case vertebra dimensions (+-10 %) and stack bodies and discs along ``s``."""
    scale = rng.uniform(0.9, 1.1)  # body size of this patient
    out, s = [], start
    for k, n in enumerate(names):
        H, W, D, disc, ap, cw = MORPHOMETRY[n]
        H, W, D = (x * scale * rng.uniform(0.95, 1.05) for x in (H, W, D))
        disc = disc * rng.uniform(0.85, 1.15) if k < len(names) - 1 else 0.0
        ap, cw = ap * rng.uniform(0.92, 1.08), cw * rng.uniform(0.92, 1.08)
        s += H / 2
        out.append(Vertebra(n, NAME_TO_VERSE[n], s, H, W, D, disc, ap, cw))
        s += H / 2 + disc
    return out


class SpineAxis:
    """The canal centre line as a smooth curve ``p(s)`` in RAS mm with frames ``L(s)``, ``A(s)``.

    Parameters
    ----------
    s_max : float
        Length of the axis, mm.
    rng : numpy Generator
        Draws lordosis/kyphosis, scoliosis, tilt and axial rotation.
    origin : (3,) float
        World position of ``s = 0``.
    """

    def __init__(self, s_max: float, rng: np.random.Generator, origin=(0.0, 0.0, 0.0), ds: float = 0.25,
                 curvature: float = 1.0):
        self.s = np.arange(-20.0, s_max + 20.0 + ds, ds)
        self._ds = ds
        lam, lam2 = rng.uniform(250, 450), rng.uniform(300, 600)
        ph, ph2 = rng.uniform(0, 2 * np.pi, size=2)
        alpha = rng.uniform(-0.08, 0.08) + curvature * rng.uniform(0.08, 0.25) * np.sin(2 * np.pi * self.s / lam + ph)
        beta = rng.uniform(-0.05, 0.05) + curvature * rng.uniform(0.0, 0.06) * np.sin(2 * np.pi * self.s / lam2 + ph2)
        t = np.stack([np.sin(beta), np.sin(alpha), -np.ones_like(alpha)], axis=1)  # towards caudal
        t /= np.linalg.norm(t, axis=1, keepdims=True)
        p = np.cumsum(t, axis=0) * ds
        p -= p[np.searchsorted(self.s, 0.0)]
        self.p = p + np.asarray(origin, dtype=np.float64)
        self.t = t
        sup = -t
        ant = np.array([0.0, 1.0, 0.0])[None, :] - (sup @ np.array([0.0, 1.0, 0.0]))[:, None] * sup
        ant /= np.linalg.norm(ant, axis=1, keepdims=True)
        left = np.cross(sup, ant)                      # sup=z, ant=y -> -x = patient left
        gamma = rng.uniform(-0.09, 0.09)              # axial rotation of the patient (+-5 degrees)
        self.A = np.cos(gamma) * ant + np.sin(gamma) * left
        self.L = np.cos(gamma) * left - np.sin(gamma) * ant

    def _interp(self, arr: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Linear interpolation of a per-sample table ``arr`` (n, 3) at ``s`` (uniform grid: one gather)."""
        s = np.asarray(s)
        x = np.clip((s - self.s[0]) / self._ds, 0, len(self.s) - 1.001)
        i = x.astype(np.int64)
        w = (x - i).astype(arr.dtype)[..., None]
        return arr[i] * (1 - w) + arr[i + 1] * w

    def to_world(self, u, v, s) -> np.ndarray:
        """Straightened ``(u, v, s)`` (any broadcastable shapes, mm) -> RAS points ``(..., 3)``."""
        u, v, s = np.broadcast_arrays(np.asarray(u, float), np.asarray(v, float), np.asarray(s, float))
        return self._interp(self.p, s) + u[..., None] * self._interp(self.L, s) + v[..., None] * self._interp(self.A, s)

    def to_straight(self, xyz: np.ndarray, s0: np.ndarray | None = None, iterations: int = 3):
        """RAS points ``(N, 3)`` -> ``(u, v, s)`` arrays of shape (N,), float32.

        ``s`` solves ``(x - p(s)) . t(s) = 0`` by fixed-point steps from the nearest point in ``z``.
        """
        xyz = np.asarray(xyz, dtype=np.float32)
        pz = self.p[:, 2]
        order = np.argsort(pz)
        s = np.interp(xyz[:, 2], pz[order], self.s[order]).astype(np.float32) if s0 is None else s0
        p32, t32 = self.p.astype(np.float32), self.t.astype(np.float32)
        for _ in range(iterations):
            d = xyz - self._interp(p32, s)
            s = s + np.einsum("ij,ij->i", d, self._interp(t32, s))
        d = xyz - self._interp(p32, s)
        u = np.einsum("ij,ij->i", d, self._interp(self.L.astype(np.float32), s))
        v = np.einsum("ij,ij->i", d, self._interp(self.A.astype(np.float32), s))
        return u.astype(np.float32), v.astype(np.float32), s.astype(np.float32)


def superellipse(u, v, a, b, p: float = 2.0):
    """``|u/a|^p + |v/b|^p`` (<= 1 inside)."""
    return np.abs(u / a) ** p + np.abs(v / b) ** p


def canal_edge_v(u, ap, cw, p: float = 2.6):
    """Distance (mm, >= 0) from the canal centre to its wall in ``v`` at lateral position ``u``."""
    frac = np.clip(1.0 - np.abs(u / (cw / 2)) ** p, 0.0, 1.0)
    return (ap / 2) * frac ** (1.0 / p)
