"""One gen2 case: draw, render on a fine axis-aligned RAS grid, average down to the scan's voxels, add the
scanner, store in the drawn orientation (:func:`build_case`), and write the case folder (:func:`generate_case`).

Random streams are separate per concern (``numpy.random.default_rng([seed, k])``), so forcing the orientation or
the voxel size of a case leaves its anatomy and plexus as they were.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.core.volume import Volume, reorient

from .anatomy import REGIONS, Spine, build_spine, draw_levels, fov_range
from .bones import render_bones
from .ranges import GEN2_RANGES, Gen2Ranges, uniform
from .render import Grid, tube_fraction
from .scanner import ct_finish, ct_values, mr_finish, mr_values
from .shapes import Fields
from .tissue import render_canal, render_soft
from .veins import CHANNELS, distractors, nearest_level, plexus

MAX_RENDER_MM = 1.2  # render voxels at most this big: partial volume by averaging the render voxels down
KINDS = ("longitudinal", "ring", "basivertebral", "intervertebral")


@dataclass
class Case:
    """A rendered case: the three volumes (in the storage orientation), truth rows, phantom.json's content, and
    for the tests, on the RAS output grid: ``canal_region``, ``body`` (bool) and ``plexus_kind`` (index into
    :data:`KINDS`, -1 outside the plexus)."""

    image: Volume
    mask: Volume
    vertebrae: Volume
    truth: list[tuple[str, str, float, int]]
    meta: dict
    extras: dict = field(default_factory=dict)


def _rng(seed: int, k: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), k])


def _ramp(sdf: np.ndarray, w: float) -> np.ndarray:
    return np.clip(0.5 - sdf / np.float32(w), 0.0, 1.0).astype(np.float32)


def _down(a: np.ndarray, m) -> np.ndarray:
    if tuple(m) == (1, 1, 1):
        return a
    n = [a.shape[d] // m[d] for d in range(3)]
    return a.reshape(n[0], m[0], n[1], m[1], n[2], m[2]).mean((1, 3, 5), dtype=np.float32)


def _centre(a: np.ndarray, m) -> np.ndarray:
    return a[m[0] // 2::m[0], m[1] // 2::m[1], m[2] // 2::m[2]]


def _fit_levels(region, levels, rng_seed, R: Gen2Ranges, max_mm):
    """Build the spine, dropping levels (keeping S1 or the top of the neck) until the field of view fits."""
    while True:
        spine = build_spine(region, levels, _rng(rng_seed, 100 + len(levels)), R)
        lo, hi = fov_range(spine)
        if hi - lo <= max_mm or len(levels) <= 3:
            return spine
        levels = levels[1:] if region == "lumbar" else levels[:-1]


def _grid(spine: Spine, spacing, s_range, front_mm, back_mm, lat_mm) -> Grid:
    s = np.linspace(s_range[0], s_range[1], 200)
    pts = np.concatenate([spine.world(u, v, s) for u in (-lat_mm, lat_mm) for v in (-back_mm, front_mm)])
    c_lo, c_hi = spine.world(0.0, 0.0, s_range[0]), spine.world(0.0, 0.0, s_range[1])
    lo, hi = pts.min(0), pts.max(0)
    lo[2], hi[2] = min(c_lo[2], c_hi[2]), max(c_lo[2], c_hi[2])
    axes = []
    for d in range(3):
        n = max(int(np.floor((hi[d] - lo[d]) / spacing[d])) + 1, 4)
        axes.append(np.round(lo[d], 3) + spacing[d] * np.arange(n))
    return Grid(tuple(axes))


def build_case(seed: int, modality: str, region: str | None = None, *, orientation: str | None = None,
               spacing: tuple[float, float] | None = None, levels: list[str] | None = None,
               ranges: Gen2Ranges = GEN2_RANGES) -> Case:
    """Draw and render one case (see :func:`generate_case`); ``spacing`` forces (in-plane, slice) mm,
    ``orientation`` the storage axes, ``levels`` the vertebrae (cranial to caudal, consecutive)."""
    R = ranges
    if modality not in ("CT", "MR"):
        raise ValueError(f"modality: expected 'CT' or 'MR', got {modality!r}")
    if region is None:
        region = str(_rng(seed, 0).choice(REGIONS))
    if region not in REGIONS:
        raise ValueError(f"region: expected one of {REGIONS} or None, got {region!r}")
    if orientation is not None and orientation not in R.orientations:
        raise ValueError(f"orientation: expected one of {R.orientations}, got {orientation!r}")
    rs = _rng(seed, 5)
    ip, sl = uniform(rs, R.inplane_mm), uniform(rs, R.slice_mm)
    orient = str(rs.choice(R.orientations))
    ip, sl = spacing if spacing is not None else (ip, sl)
    orient = orientation or orient
    slice_axis = 0 if orient in ("PIR", "PSR") else 2
    sp_w = np.full(3, ip)
    sp_w[slice_axis] = sl
    lv = list(levels) if levels is not None else draw_levels(region, _rng(seed, 1))
    spine = _fit_levels(region, lv, seed, R, R.max_long_axis_voxels * min(ip, sl))
    s_range = fov_range(spine)
    tubes, samples, vdraws = plexus(spine, s_range, _rng(seed, 2), R)
    others, ddraws = distractors(spine, s_range, _rng(seed, 3), R)
    rf = _rng(seed, 4)
    body_front = max(v.dims["ca"] * (1 - v.dims["tref"]) + 2 * v.dims["bd"] for v in spine.verts)
    front = body_front + uniform(rf, R.fov_front_extra_mm)
    if "aorta_radius_mm" in ddraws:
        front = max(front, body_front + 6 + 2 * ddraws["aorta_radius_mm"] + 3)
    back = max(v.dims["ca"] + v.dims["sl"] for v in spine.verts) + uniform(rf, R.fov_back_extra_mm)
    lat = uniform(rf, R.fov_lateral_mm)
    out = _grid(spine, sp_w, s_range, front, back, lat)
    m = np.maximum(np.ceil(sp_w / MAX_RENDER_MM - 1e-6).astype(int), 1)
    rgrid = Grid(tuple((a[:, None] + ((np.arange(k) - (k - 1) / 2) * sp / k)[None]).ravel()
                       for a, k, sp in zip(out.axes, m, sp_w)))
    fields = Fields(spine, rgrid)
    render_bones(fields)
    tdraws = render_canal(fields, s_range, rf, R)
    tdraws.update(render_soft(fields, s_range, rf, R))
    f_plx, _, owner = tube_fraction(rgrid, tubes)
    art = [t for t in others if t.kind == "artery"]
    ven = [t for t in others if t.kind == "vein"]
    f_art, sdf_art, _ = tube_fraction(rgrid, art, exact=False)
    f_ven, sdf_ven, _ = tube_fraction(rgrid, ven, exact=False)
    F = fields.f
    w = float(rgrid.spacing.mean())
    carve = np.maximum(-F["canal"], -(np.minimum(sdf_art, sdf_ven) - 0.5))
    vert = np.maximum(F["vert"], carve)
    bone = np.minimum(vert, F.get("rib", vert))
    bone = np.maximum(bone, carve)
    layers = [("fat", _ramp(F["subcut"], w)), ("fat", _ramp(F.get("fatstreak", F["subcut"] * 0 + 1e3), w)),
              ("organ" if region == "cervical" else "fat", _ramp(F["prevertebral"], w))]
    if "psoas" in F:
        layers.append(("muscle", _ramp(F["psoas"], w)))
    if "organ" in F:
        layers.append(("organ", _ramp(F["organ"], w)))
    if "lung" in F:
        layers.append(("lung", _ramp(F["lung"], w)))
    f_bone, f_inner = _ramp(bone, w), _ramp(bone + 1.2, w)
    layers += [("annulus", _ramp(F["disc"], w)), ("nucleus", _ramp(F["nucleus"], w)), ("cortical", f_bone),
               ("cancellous", f_inner), ("epidural", _ramp(F["canal"], w)), ("root", _ramp(F["root"], w)),
               ("csf", _ramp(F["sac"], w)), ("cord", _ramp(F["cord"], w)), ("artery", f_art), ("vein", f_ven),
               ("plexus", f_plx)]
    ri = _rng(seed, 6)
    vals = ct_values(ri, R, region) if modality == "CT" else mr_values(ri, R, region)
    x = vals["epidural_fat_share"]
    vals["epidural"] = x * vals["fat"] + (1 - x) * vals["epidural_soft"]
    img = np.full(rgrid.shape, vals["muscle"], np.float32)
    for name, f in layers:
        img += f * (np.float32(vals[name]) - img)
    img, f_canc, f_plx_o = _down(img, m), _down(f_inner, m), _down(f_plx, m)
    rn = _rng(seed, 7)
    if modality == "CT":
        arr, sdraws = ct_finish(img, f_canc, sp_w, slice_axis, rn, R)
    else:
        ref = vals["muscle"] if vals["weighting"] == "T1c" else vals["cord"]
        arr, sdraws = mr_finish(img, f_canc, out.axes, sp_w, slice_axis, ref, rn, R)
    mask = f_plx_o >= 0.5
    labels = np.where((_down(_ramp(vert, w), m) >= 0.5) & ~mask, _centre(fields.label["vert"], m), 0).astype(np.uint8)
    origin = np.array([a[0] for a in out.axes])
    aff = np.eye(4)
    aff[:3, :3] = np.diag(sp_w)
    aff[:3, 3] = origin
    store = lambda a, **meta: reorient(Volume(a, aff.copy(), meta), orient)
    truth = truth_rows(spine, tubes, samples, out)
    kinds = np.array([KINDS.index(t.kind) for t in tubes] + [-1], np.int8)[_centre(owner, m)]
    extras = {"canal_region": _down(((F["canal"] < 1.0) | (F["foramen"] < 0)).astype(np.float32), m) > 0,
              "body": _down(_ramp(np.maximum(F["body"], carve), w), m) > 0.5,
              "plexus_kind": np.where(mask, kinds, -1), "affine_ras": aff, "mask_ras": mask}
    meta = {"generator": "gen2", "seed": int(seed), "modality": modality, "region": region,
            "levels": [v.name for v in spine.verts], "spacing_mm": [float(s) for s in store(mask).spacing],
            "orientation": orient, "shape": list(store(mask).shape),
            "level_rule": "a point takes the level of the vertebra whose body centre is nearest along the spine axis",
            "vertebrae": [{"name": v.name, "verse_id": v.verse_id,
                           "body_centre_ras": [round(float(c), 3) for c in spine.world(0.0, _vb(v), v.s)]}
                          for v in spine.verts],
            "drawn": {"spine": spine.draws, "plexus": vdraws, "distractors": ddraws, "tissue": tdraws,
                      "fov_mm": {"front": front, "back": back, "lateral": lat},
                      "values": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in vals.items()},
                      "scanner": sdraws}}
    return Case(store(arr, modality=modality), store(mask.astype(np.uint8)), store(labels), truth, meta, extras)


def _vb(v) -> float:
    d = v.dims
    return d["ca"] * (1 - d["tref"]) + d["bd"] - 1.0


def truth_rows(spine: Spine, tubes, samples, out: Grid) -> list[tuple[str, str, float, int]]:
    """Median true diameter per (level, channel) over the longitudinal veins' vertices inside the field of view."""
    lo = np.array([a[0] for a in out.axes])
    hi = np.array([a[-1] for a in out.axes])
    rows = []
    for ch in CHANNELS:
        t = next(t for t in tubes if t.name == ch)
        s = np.array([a for c, a, _ in samples if c == ch])
        dia = np.array([b for c, _, b in samples if c == ch])
        inside = np.all((t.points >= lo) & (t.points <= hi), axis=1)
        lev = nearest_level(spine, s)
        for k, v in enumerate(spine.verts):
            sel = inside & (lev == k)
            if sel.sum() >= 3:
                rows.append((v.name, ch, float(np.median(dia[sel])), int(sel.sum())))
    order = {v.name: i for i, v in enumerate(spine.verts)}
    return sorted(rows, key=lambda r: (order[r[0]], CHANNELS.index(r[1])))
