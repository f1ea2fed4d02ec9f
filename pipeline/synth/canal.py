"""The real vertebral canal of a scan, found from its vertebra map.

Each vertebra, viewed along the spine axis, is a ring: body in front, pedicles at the sides, laminae and
spinous process behind. Projecting the vertebra's own label along the local axis closes that ring even where
no single slice does (pedicles and laminae sit at different heights), and the hole of the projection is the
canal's footprint: its centre, width (between the pedicles) and depth (body to laminae). Where the ring is
open (a cut-out, a partial label), the canal is taken behind the body along the mid-line with the published
mean size of that level and flagged ``'open'``.

Works in the world frame (RAS, mm) on any storage order or spacing; the plane of each vertebra is turned to its
own front (body centre minus canal centre), so a patient rotated in the scanner gives the same canal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..core.levels import level_name, level_rank
from .anatomy import MORPHOMETRY

_STEP = 0.5          # mm, grid of the projected plane
_HALF = 45.0         # mm, half-size of the projected plane
_CLAMP = 0.3         # canal width/depth kept within +-30 % of the level's published mean


@dataclass
class CanalSection:
    """The canal at one vertebra (world RAS, mm).

    ``centre`` is the canal centre in the plane of the vertebra's centroid, ``body_centre`` the centre of the
    body; ``up``/``anterior``/``left`` the local frame; ``found_by`` is ``'ring'`` (closed in projection) or
    ``'open'`` (behind the body, published size); a size more than 30 % off the level's published mean
    (a coarse or partial mask) is clamped to that range and flagged ``'ring, size clamped'``.
    """

    name: str
    verse_id: int
    centre: np.ndarray
    body_centre: np.ndarray
    caudal: np.ndarray
    anterior: np.ndarray
    canal_width: float
    canal_ap: float
    body_height: float
    body_width: float
    body_depth: float
    body_s: tuple[float, float]       # body extent along the local axis, relative to ``centre`` (mm)
    found_by: str


def _frame(caudal: np.ndarray, anterior_hint: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = caudal / np.linalg.norm(caudal)
    a = anterior_hint - (anterior_hint @ t) * t
    a /= np.linalg.norm(a)
    left = np.cross(-t, a)                     # superior x anterior = patient left (-x in RAS)
    return t, a, left


def _world(ijk: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def find_canal(vertebrae: np.ndarray, *, affine: np.ndarray, min_voxels: int = 20) -> list[CanalSection]:
    """The canal at every vertebra of a VerSe-convention vertebra map, cranial to caudal.

    Parameters
    ----------
    vertebrae : (I, J, K) int ndarray
        Vertebra map, VerSe ids (1-7 C, 8-19 T, 20-25 L, 26 S1, 28 T13).
    affine : (4, 4) float ndarray
        Voxel index -> RAS mm.
    min_voxels : int
        Vertebrae with fewer voxels (clipped by the field of view) are left out.

    Returns
    -------
    list of CanalSection
        Needs at least two vertebrae (the local axis joins neighbouring centroids); raises ``ValueError``
        otherwise.
    """
    if vertebrae.ndim != 3:
        raise ValueError(f"vertebrae: expected a 3-D map, got shape {vertebrae.shape}")
    ids = [int(i) for i in np.unique(vertebrae) if i > 0 and level_name(int(i)) != "NA"]
    counts = np.bincount(vertebrae.ravel().astype(np.int64))[ids] if ids else []
    ids = sorted((i for i, n in zip(ids, counts) if n >= min_voxels), key=lambda i: level_rank(level_name(i)))
    if len(ids) < 2:
        raise ValueError(f"vertebrae: need at least two vertebrae to find the canal, found {len(ids)}")
    cents = np.array([_world(np.array(c), affine) for c in ndimage.center_of_mass(vertebrae > 0, vertebrae, ids)])
    inv = np.linalg.inv(affine)
    out = []
    for k, vid in enumerate(ids):
        caudal = cents[min(k + 1, len(ids) - 1)] - cents[max(k - 1, 0)]
        own = vertebrae == vid
        d = _world(np.argwhere(own).astype(np.float64), affine) - cents[k]
        hint = np.array([0.0, 1.0, 0.0])       # the scanner's anterior first, then the vertebra's own
        for _ in range(2):
            t, a, left = _frame(caudal, hint)
            s_vox = d @ t
            proj = _project(own, inv, cents[k], t, a, left, np.percentile(s_vox, [2, 98]))
            sec = _section(vid, proj, cents[k], t, a, left, d, s_vox)
            hint = sec.body_centre - sec.centre
        out.append(sec)
    return out


def _project(mask: np.ndarray, inv: np.ndarray, centre, t, a, left, s_range) -> np.ndarray:
    """Maximum of ``mask`` along ``t`` over ``s_range`` on a (u, v) plane grid (u: left, v: anterior)."""
    g = np.arange(-_HALF, _HALF + _STEP / 2, _STEP)
    U, V = np.meshgrid(g, g, indexing="ij")
    proj = np.zeros(U.shape, bool)
    for s in np.arange(s_range[0], s_range[1] + 0.5, 1.0):
        pts = centre + U[..., None] * left + V[..., None] * a + s * t
        ijk = pts @ inv[:3, :3].T + inv[:3, 3]
        proj |= ndimage.map_coordinates(mask, ijk.reshape(-1, 3).T, order=0, mode="constant", cval=0).reshape(U.shape).astype(bool)
    return proj


def _section(vid: int, proj: np.ndarray, centre, t, a, left, d: np.ndarray, s_vox: np.ndarray) -> CanalSection:
    g = np.arange(-_HALF, _HALF + _STEP / 2, _STEP)
    name = level_name(vid)
    holes, n = ndimage.label(ndimage.binary_fill_holes(proj) & ~proj)
    best = None
    if n:
        areas = ndimage.sum_labels(np.ones(holes.shape), holes, range(1, n + 1)) * _STEP ** 2
        for lab in np.argsort(areas)[::-1] + 1:
            iu, iv = np.nonzero(holes == lab)
            if areas[lab - 1] >= 20.0 and abs(g[iu].mean()) < 15.0:
                best = (g[iu], g[iv])
                break
    table = MORPHOMETRY.get(name, MORPHOMETRY["L3"])
    if best is not None:
        uu, vv = best
        u_c, v_c = (uu.min() + uu.max()) / 2, (vv.min() + vv.max()) / 2
        width, ap = uu.max() - uu.min() + _STEP, vv.max() - vv.min() + _STEP
        found = "ring"
        lo, hi = 1 - _CLAMP, 1 + _CLAMP  # coarse or partial masks: keep the size within published variation
        if not (lo * table[5] <= width <= hi * table[5] and lo * table[4] <= ap <= hi * table[4]):
            width, ap = float(np.clip(width, lo * table[5], hi * table[5])), float(np.clip(ap, lo * table[4], hi * table[4]))
            found = "ring, size clamped"
    else:  # open ring: behind the body along the mid-line, published canal size
        mid = proj[np.abs(g) <= 2.0].any(axis=0)
        runs, n_runs = ndimage.label(mid)
        back_wall = g[runs == runs[np.nonzero(mid)[0].max()]].min() if n_runs else 0.0
        ap, width = float(table[4]), float(table[5])
        u_c, v_c = 0.0, back_wall - _STEP / 2 - ap / 2
        found = "open"
    canal = centre + u_c * left + v_c * a
    # the body: voxels in front of the canal
    u_vox, v_vox = d @ left, d @ a
    body = v_vox > v_c + ap / 2
    if body.sum() < 10:
        body = np.ones_like(v_vox, bool)
    s_lo, s_hi = np.percentile(s_vox[body], [0.5, 99.5])
    body_centre = centre + np.median(u_vox[body]) * left + np.median(v_vox[body]) * a + (s_lo + s_hi) / 2 * t
    bw = float(np.ptp(np.percentile(u_vox[body], [0.5, 99.5])))
    bd = float(np.ptp(np.percentile(v_vox[body], [0.5, 99.5])))
    return CanalSection(name, vid, canal, body_centre, t, a, float(width), float(ap), float(s_hi - s_lo), bw, bd,
                        (float(s_lo), float(s_hi)), found)
