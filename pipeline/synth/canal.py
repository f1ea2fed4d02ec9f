"""The real vertebral canal of a scan, found from its vertebra map.

Each vertebra, viewed along the spine axis, is a ring: body in front, pedicles at the sides, laminae and
spinous process behind. Projecting the vertebra's own label along the local axis closes that ring even where
no single slice does (pedicles and laminae sit at different heights), and the hole of the projection is the
canal's footprint: its centre, width (between the pedicles) and depth (body to laminae). Where the ring is
open (a cut-out, a partial label), the canal is taken behind the body along the mid-line with the published
mean size of that level and flagged ``'open'``.

Works in the world frame (RAS, mm) on any storage order or spacing; the plane of each vertebra is turned to its
own front (body centre minus canal centre), so a patient rotated in the scanner gives the same canal.

A scan without a vertebra map: :func:`sections_from_centreline` lays vertebrae of published size along a canal
centre line (stage 1's, or :func:`label_centreline` of a reference label), named from an anchor
(:func:`sct_anchor`: the Spinal Cord Toolbox's vertebral labels shipped with a scan) or a given top level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..core.levels import NAME_TO_VERSE, level_name, level_rank
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


def find_canal(vertebrae: np.ndarray, *, affine: np.ndarray, min_voxels: int = 20,
               min_fraction: float = 0.2) -> list[CanalSection]:
    """The canal at every vertebra of a VerSe-convention vertebra map, cranial to caudal.

    Parameters
    ----------
    vertebrae : (I, J, K) int ndarray
        Vertebra map, VerSe ids (1-7 C, 8-19 T, 20-25 L, 26 S1, 28 T13).
    affine : (4, 4) float ndarray
        Voxel index -> RAS mm.
    min_voxels : int
        Vertebrae with fewer voxels (clipped by the field of view) are left out.
    min_fraction : float
        So are vertebrae with fewer voxels than this share of the median vertebra's: a fragment the field of view
        cut off (the tip of a spinous process at the scan's edge) has neither the vertebra's centroid nor its
        ring, and a canal placed from it lies outside the real one.

    Returns
    -------
    list of CanalSection
        Needs at least two vertebrae (the local axis joins neighbouring centroids); raises ``ValueError``
        otherwise.
    """
    if vertebrae.ndim != 3:
        raise ValueError(f"vertebrae: expected a 3-D map, got shape {vertebrae.shape}")
    if not 0.0 <= min_fraction < 1.0:
        raise ValueError(f"min_fraction: expected a share in [0, 1), got {min_fraction}")
    ids = [int(i) for i in np.unique(vertebrae) if i > 0 and level_name(int(i)) != "NA"]
    counts = np.bincount(vertebrae.ravel().astype(np.int64))[ids] if ids else []
    floor = max(min_voxels, min_fraction * float(np.median(counts))) if ids else min_voxels
    ids = sorted((i for i, n in zip(ids, counts) if n >= floor), key=lambda i: level_rank(level_name(i)))
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


_NAMES = [n for n in MORPHOMETRY if n != "L6"]   # C1 .. S1, cranial to caudal (no T13, no L6)


def sections_from_centreline(centreline: np.ndarray, *, anchor: tuple[str, np.ndarray] | None = None,
                             top_level: str = "C3", canal: np.ndarray | None = None,
                             affine: np.ndarray | None = None) -> list[CanalSection]:
    """The canal at every vertebra along a canal centre line with no vertebra map (stage 1's, or a reference's).

    Vertebrae are laid along the line a published body height and disc apart (:data:`.anatomy.MORPHOMETRY`),
    named from ``anchor`` (a level whose body centre lies at that point's height on the line; e.g. SCT's
    vertebral labels) or else with ``top_level`` at the line's cranial end. The anterior direction is the scanner's
    (RAS +y, patients lie supine) across the line. Canal width and depth are measured on ``canal`` (a CT canal
    out to its bony wall) within +-30 % of the level's published mean, else published (``found_by`` says which);
    the body (not in any map) is the published one, in front of the canal.

    Parameters
    ----------
    centreline : (M, 3) float ndarray
        Canal centre points, RAS mm, in order along the canal (either way).
    anchor : (str, (3,) float ndarray), optional
        A level name and a point at the height of its body centre.
    top_level : str
        Without ``anchor``: the level of the cranial-most vertebra.
    canal, affine : (I, J, K) ndarray and (4, 4) ndarray, optional
        A canal mask and its voxel -> RAS affine, to measure the canal's size.

    Returns
    -------
    list of CanalSection
        Cranial to caudal; ``ValueError`` when the line holds fewer than two vertebrae.
    """
    c = np.asarray(centreline, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != 3 or len(c) < 2:
        raise ValueError(f"centreline: expected (M, 3) points with M >= 2, got shape {c.shape}")
    if c[0, 2] < c[-1, 2]:
        c = c[::-1]                                  # cranial first
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(c, axis=0), axis=1))])
    s = np.arange(0.0, arc[-1] + 0.5, 1.0)
    line = ndimage.gaussian_filter1d(np.stack([np.interp(s, arc, c[:, d]) for d in range(3)], 1), 4.0, axis=0,
                                     mode="nearest")
    name = top_level if anchor is None else anchor[0]
    if name not in _NAMES:
        raise ValueError(f"{'anchor' if anchor is not None else 'top_level'}: unknown level {name!r}")
    k0 = _NAMES.index(name)
    if anchor is not None:  # the line's point at the anchor's height
        centres = {k0: float(s[np.argmin(np.abs(line[:, 2] - float(np.asarray(anchor[1])[2])))])}
    else:
        centres = {k0: MORPHOMETRY[name][0] / 2}
    for k in range(k0 + 1, len(_NAMES)):             # caudal
        prev = MORPHOMETRY[_NAMES[k - 1]]
        centres[k] = centres[k - 1] + prev[0] / 2 + prev[3] + MORPHOMETRY[_NAMES[k]][0] / 2
    for k in range(k0 - 1, -1, -1):                  # cranial
        own = MORPHOMETRY[_NAMES[k]]
        centres[k] = centres[k + 1] - MORPHOMETRY[_NAMES[k + 1]][0] / 2 - own[3] - own[0] / 2
    keep = sorted(k for k, sc in centres.items() if 0.0 <= sc <= s[-1])
    if len(keep) < 2:
        raise ValueError(f"centreline: {s[-1]:.0f} mm of canal hold {len(keep)} vertebra(e); need at least two")
    pts = None
    if canal is not None and affine is not None:
        pts = np.argwhere(np.asarray(canal) > 0) @ affine[:3, :3].T + affine[:3, 3]
    tan = np.gradient(line, axis=0)
    out = []
    for k in keep:
        nm = _NAMES[k]
        H, W, D, _, ap, cw = MORPHOMETRY[nm]
        i = int(np.clip(np.searchsorted(s, centres[k]), 0, len(s) - 1))
        t, a, left = _frame(tan[i], np.array([0.0, 1.0, 0.0]))
        width, depth, found = float(cw), float(ap), "stage 1, published size"
        if pts is not None:
            d = pts - line[i]
            near = (np.abs(d @ t) <= 1.5) & (np.linalg.norm(d, axis=1) <= 25.0)
            if near.sum() >= 10:
                step = float(np.abs(affine[:3, :3]).sum(0).min())
                w0, a0 = (float(np.ptp(np.percentile(d[near] @ e, [1, 99]))) + step for e in (left, a))
                width, depth = (float(np.clip(x, (1 - _CLAMP) * m, (1 + _CLAMP) * m)) for x, m in ((w0, cw), (a0, ap)))
                found = "stage 1" if (width, depth) == (w0, a0) else "stage 1, size clamped"
        body_centre = line[i] + (depth / 2 + D / 2) * a
        out.append(CanalSection(nm, NAME_TO_VERSE[nm], line[i].copy(), body_centre, t, a, width, depth, float(H),
                                float(W), float(D), (-H / 2, H / 2), found))
    return out


def _height_axis(affine: np.ndarray) -> int:
    """The voxel axis closest to the world's superior direction."""
    return int(np.argmax(np.abs(affine[2, :3]) / np.linalg.norm(affine[:3, :3], axis=0)))


def sct_anchor(image_path, affine: np.ndarray, shape) -> tuple[str, np.ndarray] | None:
    """A named level from the Spinal Cord Toolbox files shipped beside ``image_path``, if any.

    ``labels.nii.gz`` (SCT vertebral labels: value n at the mid-body of the n-th vertebra from C1, n = 1-24 as
    VerSe ids) gives the cranial-most label; else ``init_label_vertebrae.txt`` (``-initz z,n``: slice ``z``, counted
    from the inferior end, holds the disc above vertebra n) gives vertebra n half a body and disc below the disc.
    Returns ``(name, point RAS mm)`` or None.
    """
    from pathlib import Path

    import nibabel as nib

    folder = Path(image_path).parent
    if (folder / "labels.nii.gz").exists():
        lab = nib.load(folder / "labels.nii.gz")
        arr = np.asarray(lab.dataobj)
        ids = [int(i) for i in np.unique(arr) if 0 < i <= 24]
        if ids:
            ijk = np.argwhere(arr == ids[0]).mean(0)
            return level_name(ids[0]), lab.affine[:3, :3] @ ijk + lab.affine[:3, 3]
    txt = folder / "init_label_vertebrae.txt"
    if txt.exists() and "-initz" in txt.read_text():
        z, n = (int(x) for x in txt.read_text().split("-initz")[1].split()[0].split(","))
        ax = _height_axis(affine)
        ijk = (np.asarray(shape, float) - 1) / 2
        ijk[ax] = z if affine[2, ax] > 0 else shape[ax] - 1 - z
        name = level_name(n)
        if name == "NA":
            return None
        H, _, _, _, _, _ = MORPHOMETRY.get(name, MORPHOMETRY["C3"])
        disc = MORPHOMETRY.get(level_name(n - 1), MORPHOMETRY["C3"])[3]
        return name, affine[:3, :3] @ ijk + affine[:3, 3] - np.array([0.0, 0.0, H / 2 + disc / 2])
    return None


def label_centreline(labels: np.ndarray, affine: np.ndarray, ids) -> np.ndarray:
    """(M, 3) RAS mm: the centroid of ``labels`` in ``ids`` on each slice across the height axis that holds any."""
    m = np.isin(labels, list(ids))
    ax = _height_axis(affine)
    pts = []
    for k in range(m.shape[ax]):
        sl = np.take(m, k, axis=ax)
        if sl.sum() >= 3:
            c = list(np.argwhere(sl).mean(0))
            c.insert(ax, float(k))
            pts.append(affine[:3, :3] @ np.array(c) + affine[:3, 3])
    return np.array(pts).reshape(-1, 3)


def straight_coords(axis, shape, aff) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, v, s) of every voxel centre of a grid ``shape``/``aff`` about a :class:`.anatomy.SpineAxis` (mm)."""
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1).T
    return tuple(x.reshape(shape) for x in axis.to_straight(ijk @ aff[:3, :3].T.astype(np.float32) + aff[:3, 3]))


def level_map(verts, u, v, s) -> np.ndarray:
    """Each level's published body (in front of the canal) and lamina (behind), VerSe ids: levels only."""
    out = np.zeros(u.shape, np.uint8)
    for vt in verts:
        at = np.abs(s - vt.s_centre) <= vt.height / 2
        body = at & (v >= vt.canal_ap / 2 + 0.5) & (v <= vt.canal_ap / 2 + vt.depth) & (np.abs(u) <= vt.width / 2)
        lamina = at & (v <= -vt.canal_ap / 2 - 1.0) & (v >= -vt.canal_ap / 2 - 7.0) & (np.abs(u) <= vt.canal_width / 2 + 3)
        out[body | lamina] = vt.verse_id
    return out
