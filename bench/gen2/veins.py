"""The internal vertebral venous plexus of a gen2 case, its true calibre, and the vessels that are not plexus.

Plexus: four longitudinal veins in the epidural space, each touching the canal wall (``wall_gap_mm`` off it) at
its own angle from the anterior midline, swinging medially behind every body (a ladder); a ring round the
canal at every vertebra; a basivertebral vein from the ring's front into each body, forking; an intervertebral
vein each side out through every foramen. Calibre: a base diameter per channel (posterior ones thinner, left
and right unequal) times a log-normal factor per level shared in part by the four channels, some levels
engorged, interpolated smoothly between body centres, with a small ripple. Truth is this geometry: the diameter
at the vertices (1 mm apart) of each longitudinal vein, median per level.

Distractors (not plexus): aorta (+ iliac arteries), IVC, azygos and hemiazygos veins, segmental arteries round
the bodies; in the neck vertebral arteries (through the transverse foramina), carotids, jugular veins.
"""

from __future__ import annotations

import numpy as np

from .anatomy import Spine, canal_radius
from .bones import vertebral_artery_uv
from .ranges import Gen2Ranges, uniform
from .render import Tube

CHANNELS = ("anterior_left", "anterior_right", "posterior_left", "posterior_right")


def _along(spine: Spine, s):
    """Canal and body dimensions along ``s``: dict of arrays (``R0`` canal front radius, ``vb`` body centre,
    ``front`` body front, plus every vertebra key)."""
    p = {k: spine.param(k, s) for k in ("bw", "bd", "bh", "cw", "ca", "tref", "pr")}
    p["R0"] = p["ca"] * (1 - p["tref"])
    p["vb"] = p["R0"] + p["bd"] - 1.0
    p["front"] = p["vb"] + p["bd"]
    return p


def _level_phase(spine: Spine, s):
    """Position in units of levels (integers at the body centres, cranial to caudal order reversed)."""
    ss = np.array([v.s for v in spine.verts])[::-1]
    k = np.arange(len(ss), dtype=float)
    if len(ss) == 1:
        return np.zeros_like(s)
    pitch_lo, pitch_hi = ss[1] - ss[0], ss[-1] - ss[-2]
    out = np.interp(s, ss, k)
    out = np.where(s < ss[0], (s - ss[0]) / pitch_lo, out)
    return np.where(s > ss[-1], k[-1] + (s - ss[-1]) / pitch_hi, out)


def nearest_level(spine: Spine, s) -> np.ndarray:
    """Index into ``spine.verts`` of the body centre nearest along the axis, per ``s``."""
    cs = np.array([v.s for v in spine.verts])
    return np.argmin(np.abs(np.asarray(s)[..., None] - cs), axis=-1)


def wall_point(spine: Spine, theta, r, gap, s):
    """``(u, v)`` of a vein centre of radius ``r`` at angle ``theta`` that stays ``gap`` inside the canal wall."""
    p = _along(spine, s)
    rho = canal_radius(theta, p["cw"], p["ca"], p["tref"]) - r - gap
    return rho * np.sin(theta), rho * np.cos(theta)


def plexus(spine: Spine, s_range, rng: np.random.Generator, R: Gen2Ranges):
    """Plexus tubes, the longitudinal veins' ``(channel, s, diameter)`` samples, and the values drawn."""
    n = len(spine.verts)
    lo, hi = R.diameter_limits_mm
    base_a = uniform(rng, R.anterior_diameter_mm)
    ratio = uniform(rng, R.posterior_ratio)
    shared = R.level_sigma * 0.7 * rng.standard_normal(n)
    engorged = rng.random(n) < R.engorged_probability
    eng_f = np.where(engorged, rng.uniform(*R.engorged_factor, n), 1.0)
    gap = uniform(rng, R.wall_gap_mm)
    s = np.arange(s_range[0] - 15.0, s_range[1] + 15.0, 1.0)
    phase = _level_phase(spine, s)
    ladder = 0.5 * (1 + np.cos(2 * np.pi * phase))
    ks = np.arange(n)[::-1].astype(float)  # phase of each vertebra (index 0 is cranial, phase n-1)
    tubes, samples, draws = [], [], {"anterior_diameter_mm": base_a, "posterior_ratio": ratio, "wall_gap_mm": gap,
                                     "engorged_levels": [v.name for v, e in zip(spine.verts, engorged) if e]}
    geo = {}
    for ch in CHANNELS:
        side = 1.0 if ch.endswith("left") else -1.0
        ant = ch.startswith("anterior")
        theta0 = np.deg2rad(uniform(rng, R.anterior_angle_deg if ant else R.posterior_angle_deg))
        d0 = base_a * (1.0 if ant else ratio) * uniform(rng, R.side_asymmetry)
        logf = shared + R.level_sigma * 0.7 * rng.standard_normal(n) + np.log(eng_f)
        f = np.exp(np.interp(phase, ks[::-1], logf[::-1]))
        ripple = 1.0 + 0.06 * np.sin(2 * np.pi * s / rng.uniform(8, 16) + rng.uniform(0, 2 * np.pi))
        diam = d0 * f * ripple
        cap = np.where(eng_f[nearest_level(spine, s)] > 1.0, R.engorged_max_mm, hi)
        diam = np.clip(diam, lo, cap)
        theta = side * theta0 * (1.0 - (0.25 if ant else 0.1) * ladder)
        u, v = wall_point(spine, theta, diam / 2, gap, s)
        tubes.append(_tube(spine, ch, "longitudinal", u, v, s, diam / 2))
        samples += [(ch, float(a), float(b)) for a, b in zip(s, diam)]
        geo[ch] = (s, diam, theta)
        draws[f"{ch}_diameter_mm"] = d0
        draws[f"{ch}_angle_deg"] = float(np.rad2deg(theta0))
    ring_ratio = uniform(rng, R.ring_ratio)
    for vt in spine.verts:
        d = vt.dims
        s_ring = vt.s + rng.uniform(-0.15, 0.1) * d["bh"]
        r_ring = 0.5 * ring_ratio * np.mean([np.interp(s_ring, g[0], g[1]) for g in geo.values()])
        r_ring = max(r_ring, lo / 2)
        th = np.linspace(0, 2 * np.pi, 73)
        u, v = wall_point(spine, th, r_ring, gap, np.full_like(th, s_ring))
        tubes.append(_tube(spine, f"ring_{vt.name}", "ring", u, v, np.full_like(th, s_ring), np.full_like(th, r_ring)))
        rb = 0.5 * uniform(rng, R.basivertebral_diameter_mm)
        depth = uniform(rng, R.basivertebral_depth) * 2 * d["bd"]
        p = _along(spine, np.array([s_ring]))
        v0, v1 = float(v[0]), float(p["R0"][0] + depth)
        tubes.append(_tube(spine, f"basivertebral_{vt.name}", "basivertebral", [0.0, 0.0], [v0, v1], [s_ring] * 2,
                           [rb, rb * 0.9]))
        for side in (-1.0, 1.0):
            tubes.append(_tube(spine, f"basivertebral_{vt.name}_{'left' if side > 0 else 'right'}", "basivertebral",
                               [0.0, side * 0.35 * d["bw"]], [v1, v1 + 0.25 * d["bd"]], [s_ring] * 2,
                               [rb * 0.9, rb * 0.7]))
    discs = [vt.s + vt.dims["bh"] / 2 + vt.dims["dh"] / 2 for vt in spine.verts[:1]]
    discs += [vt.s - vt.dims["bh"] / 2 - vt.dims["dh"] / 2 for vt in spine.verts if vt.dims["dh"] > 0]
    for sd in discs:
        p = _along(spine, np.array([sd]))
        cw, ca = float(p["cw"][0]), float(p["ca"][0])
        for side, ch in ((1.0, "anterior_left"), (-1.0, "anterior_right")):
            g = geo[ch]
            r0 = 0.5 * np.interp(sd, g[0], g[1])
            ua, va = wall_point(spine, np.interp(sd, g[0], g[2]), r0, gap, np.array([sd]))
            ri = 0.5 * uniform(rng, R.intervertebral_diameter_mm)
            tubes.append(_tube(spine, f"intervertebral_{sd:.0f}_{ch.split('_')[1]}", "intervertebral",
                               [float(ua[0]), side * 0.95 * cw, side * (cw + 5), side * (cw + 10)],
                               [float(va[0]), 0.25 * ca, 0.15 * ca, 0.1 * ca], [sd, sd - 1, sd - 2, sd - 3],
                               [ri, ri, 0.9 * ri, 0.8 * ri]))
    draws["ring_ratio"] = ring_ratio
    return tubes, samples, draws


def _tube(spine: Spine, name: str, kind: str, u, v, s, r, plexus_: bool = True) -> Tube:
    return Tube(name, kind, spine.world(np.asarray(u, float), np.asarray(v, float), np.asarray(s, float)),
                np.asarray(r, float), plexus_)


def distractors(spine: Spine, s_range, rng: np.random.Generator, R: Gen2Ranges):
    """Non-plexus vessels (kind ``artery`` or ``vein``) and the values drawn."""
    s = np.arange(s_range[0] - 20.0, s_range[1] + 20.0, 3.0)
    p = _along(spine, s)
    out, draws = [], {}
    if spine.region == "cervical":
        ra, rc, rj = (uniform(rng, x) for x in (R.vertebral_artery_radius_mm, R.carotid_radius_mm,
                                                  R.jugular_radius_mm))
        uc, vc = uniform(rng, (14.0, 20.0)), uniform(rng, (6.0, 12.0))
        for side in (-1.0, 1.0):
            uva, vva = vertebral_artery_uv({k: p[k] for k in p})
            out.append(_tube(spine, "vertebral_artery", "artery", side * uva, vva, s, np.full_like(s, ra), False))
            out.append(_tube(spine, "carotid", "artery", side * (p["bw"] + uc), p["front"] + vc, s, np.full_like(s, rc), False))
            out.append(_tube(spine, "jugular", "vein", side * (p["bw"] + uc + rc + rj + 2), p["front"] + vc - 2, s,
                             np.full_like(s, rj), False))
        draws.update(vertebral_artery_radius_mm=ra, carotid_radius_mm=rc, jugular_radius_mm=rj)
        return out, draws
    r_ao, u_ao, g_ao = uniform(rng, R.aorta_radius_mm), uniform(rng, (2.0, 15.0)), uniform(rng, (2.0, 6.0))
    v_ao = p["front"] + g_ao + r_ao
    s_bif = next((v.s for v in spine.verts if v.name == "L4"), -np.inf)
    keep = s >= s_bif
    out.append(_tube(spine, "aorta", "artery", np.full(keep.sum(), u_ao), v_ao[keep], s[keep], np.full(keep.sum(), r_ao), False))
    if np.isfinite(s_bif):
        for side in (-1.0, 1.0):
            ss = np.array([s_bif, s_bif - 30, s_bif - 70])
            out.append(_tube(spine, "iliac_artery", "artery", [u_ao, u_ao + side * 14, u_ao + side * 30],
                             np.interp(ss, s, v_ao) + [0, 2, 4], ss, [0.6 * r_ao] * 3, False))
    draws.update(aorta_radius_mm=r_ao, aorta_left_mm=u_ao)
    if spine.region == "lumbar":
        r_iv, u_iv = uniform(rng, R.ivc_radius_mm), -uniform(rng, (15.0, 25.0))
        out.append(_tube(spine, "ivc", "vein", np.full_like(s, u_iv), p["front"] + 2 + r_iv, s, np.full_like(s, r_iv), False))
        draws["ivc_radius_mm"] = r_iv
    else:
        r_az = uniform(rng, R.azygos_radius_mm)
        out.append(_tube(spine, "azygos", "vein", -0.6 * p["bw"], p["vb"] + 0.8 * p["bd"] + r_az + 1.5, s,
                         np.full_like(s, r_az), False))
        low = s < next((v.s for v in spine.verts if v.name == "T8"), np.inf)
        if low.sum() > 1:
            out.append(_tube(spine, "hemiazygos", "vein", 0.6 * p["bw"][low], p["vb"][low] + 0.8 * p["bd"][low] + 0.7 * r_az + 1.5,
                             s[low], np.full(low.sum(), 0.7 * r_az), False))
        draws["azygos_radius_mm"] = r_az
    rs = uniform(rng, R.segmental_radius_mm)
    for vt in spine.verts:
        if vt.name == "S1":
            continue
        d = vt.dims
        vb = float(_along(spine, np.array([vt.s]))["vb"][0])
        for side in (-1.0, 1.0):
            al = np.deg2rad(np.linspace(25, 105, 7))
            u = list(side * (d["bw"] + 2 + rs) * np.sin(al)) + [side * (d["cw"] + 1.6 * d["pr"] + 4)]
            v = list(vb + (d["bd"] + 2 + rs) * np.cos(al)) + [0.6 * d["ca"]]
            w = [0.0] * 7 + [-0.3 * d["bh"]]
            out.append(_tube(spine, f"segmental_{vt.name}", "artery", [u_ao] + u,
                             [float(np.interp(vt.s, s, v_ao)) - r_ao + 1] + v, [vt.s + x for x in [0.0] + w],
                             [rs] * 9, False))
    draws["segmental_radius_mm"] = rs
    return out, draws
