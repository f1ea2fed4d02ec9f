"""Soft tissue of a gen2 case as signed-distance fields on the render grid: the canal and what fills it (dural
sac, cord tapering to the conus, cauda equina roots, exiting roots with their ganglia), the foramina (a model of
the region for the tests), posterior subcutaneous fat and intermuscular fat streaks, the prevertebral fat, the
lungs beside the thoracic spine and the airway in front of the neck.
"""

from __future__ import annotations

import numpy as np

from .anatomy import canal_radius
from .bones import pedicle_u
from .ranges import Gen2Ranges, uniform
from .shapes import Fields, capsule, ellipse2, ellipsoid


def _canal_fns(fields: Fields, sac_f: float):
    sp = fields.spine

    def canal(u, v, w):
        cw, ca, tr = (sp.param(k, w) for k in ("cw", "ca", "tref"))
        return np.hypot(u, v) - canal_radius(np.arctan2(u, v), cw, ca, tr)

    def sac(u, v, w):
        cw, ca = sp.param("cw", w) * sac_f, sp.param("ca", w) * sac_f
        return np.hypot(u, v + 0.5) - canal_radius(np.arctan2(u, v + 0.5), cw, ca, 0.0)

    return canal, sac


def render_canal(fields: Fields, s_range, rng: np.random.Generator, R: Gen2Ranges) -> dict:
    """``canal``, ``sac``, ``cord``, ``root`` and ``foramen`` fields; returns the values drawn."""
    sp = fields.spine
    verts = sp.verts
    cmax = max(max(v.dims["cw"], v.dims["ca"]) for v in verts) * 1.15 + 3
    sac_f = uniform(rng, R.sac_fraction)
    canal, sac = _canal_fns(fields, sac_f)
    s_all = (s_range[0] - 5, s_range[1] + 5)
    fields.add("canal", canal, (-cmax, cmax), (-cmax, cmax), s_all)
    fields.add("sac", sac, (-cmax, cmax), (-cmax, cmax), s_all)
    names = [v.name for v in verts]
    conus = None
    if "L1" in names or "L2" in names:
        l1 = verts[names.index("L1")] if "L1" in names else verts[names.index("L2")]
        conus = l1.s + uniform(rng, (-0.6, 0.3)) * l1.dims["bh"]
    cr = (4.6, 3.6) if sp.region == "cervical" else (4.0, 3.2)

    def cord(u, v, w):
        taper = 1.0 if conus is None else np.clip((w - conus) / 15.0, 0.05, 1.0)
        d = ellipse2(u, v - 0.3, cr[0] * taper + 0.01, cr[1] * taper + 0.01)
        return d if conus is None else np.maximum(d, conus - w)

    fields.add("cord", cord, (-6, 6), (-6, 6), s_all)
    draws = {"sac_fraction": sac_f, "conus_s_mm": conus}
    if conus is not None and conus > s_all[0]:
        n = int(rng.integers(8, 15))
        for _ in range(n):
            a = rng.uniform(0.25 * np.pi, 1.75 * np.pi)  # mostly posterior (supine: the roots settle back)
            rr = rng.uniform(0.3, 0.8)
            cw, ca = verts[-1].dims["cw"] * sac_f, verts[-1].dims["ca"] * sac_f
            u0, v0 = rr * cw * np.sin(a) * 0.8, rr * ca * np.cos(a) * 0.8 - 0.5
            r = rng.uniform(0.5, 0.9)
            fields.add("cord", lambda u, v, w, u0=u0, v0=v0, r=r: capsule(u, v, w, (u0, v0, s_all[0] - 5), (u0, v0, conus), r),
                       (u0 - 2, u0 + 2), (v0 - 2, v0 + 2), (s_all[0] - 5, conus + 2))
    for up, lo in zip([None] + verts[:-1], verts):
        _foramen_and_roots(fields, up, lo, sac_f)
    return draws


def _foramen_and_roots(fields: Fields, up, lo, sac_f: float) -> None:
    """The foramen above vertebra ``lo`` (below ``up``, or the top one), its region and its two exiting roots."""
    d = lo.dims
    s_up = up.s if up is not None else lo.s + d["bh"] + d["dh"]
    du = up.dims if up is not None else d
    top = s_up + 0.2 * du["bh"] - 1.6 * du["pr"]
    bot = lo.s + 0.2 * d["bh"] + 1.6 * d["pr"]
    if lo.name == "S1" or top <= bot:
        top, bot = max(top, bot + 4), bot
    wc, hw = 0.5 * (top + bot), 0.5 * (top - bot) + 1.0
    cw, ca = du["cw"], du["ca"]
    uc, hu = 0.5 * (0.5 * cw + cw + 16), 0.5 * (cw + 16 - 0.5 * cw)
    vc, hv = 0.3 * ca, 0.8 * ca
    fields.add("foramen", lambda u, v, w: np.maximum(np.maximum(np.abs(np.abs(u) - uc) - hu, np.abs(v - vc) - hv),
                                                      np.abs(w) - hw), (-(uc + hu), uc + hu), (vc - hv, vc + hv),
               (wc - hw, wc + hw), wc)
    w_r = s_up - 0.25 * du["bh"] if up is not None else wc + 0.3 * hw
    r = 1.2 if lo.kind == "C" else (1.6 if lo.kind == "T" else 2.2)
    rsac = du["cw"] * sac_f * 0.85
    for side in (-1.0, 1.0):
        pts = [(side * rsac, 0.0, 0.0), (side * (cw + 3), 0.1 * ca, -2.0), (side * (pedicle_u(du) + 14), 0.2 * ca, -6.0)]
        g = (side * (cw + 4), 0.1 * ca, -2.5)
        def root(u, v, w, pts=pts, g=g):
            out = np.minimum(capsule(u, v, w, pts[0], pts[1], r), capsule(u, v, w, pts[1], pts[2], r))
            return np.minimum(out, ellipsoid(u, v, w, g, (2.2 * r, 1.4 * r, 1.4 * r)))
        us = sorted((pts[0][0], pts[2][0]))
        fields.add("root", root, (us[0] - 4, us[1] + 4), (-4 - r, 0.2 * ca + 4 + r), (w_r - 10, w_r + 4), w_r)


def render_soft(fields: Fields, s_range, rng: np.random.Generator, R: Gen2Ranges) -> dict:
    """``subcut``, ``fatstreak``, ``prevertebral``, ``lung`` (air: lungs or airway) fields; the values drawn."""
    sp = fields.spine
    s_all = (s_range[0] - 5, s_range[1] + 5)
    big = (-1e3, 1e3)
    sub_mm = uniform(rng, R.subcut_fat_mm)
    par = lambda k, w: sp.param(k, w)
    rpost = lambda w: par("ca", w) * (1 + par("tref", w))
    curv = uniform(rng, (0.002, 0.008))  # the back is convex: the fat comes forward laterally
    fields.add("subcut", lambda u, v, w: v + rpost(w) + par("sl", w) + sub_mm - curv * u ** 2, big, big, s_all)
    front = lambda w: par("ca", w) * (1 - par("tref", w)) + 2 * par("bd", w) - 1.0
    fields.add("prevertebral", lambda u, v, w: front(w) + 2.0 - v + 0.01 * u ** 2, big, big, s_all)
    if sp.region == "lumbar":  # psoas muscles beside the bodies, in front of the transverse processes
        for side in (-1.0, 1.0):
            fields.add("psoas", lambda u, v, w, side=side: ellipse2(side * u - par("bw", w) - 9.0, v - front(w) + 0.8 * par("bd", w),
                                                                      10.0 + 0.25 * par("bw", w), 12.0),
                       (0, 200) if side > 0 else (-200, 0), big, s_all)
    for _ in range(int(rng.integers(2, 6))):  # organs / bowel in front
        c = (rng.uniform(-40, 40), float(front(0.0)) + rng.uniform(18, 45), rng.uniform(*s_all))
        radii = (rng.uniform(8, 25), rng.uniform(6, 15), rng.uniform(10, 40))
        fields.add("organ", lambda u, v, w, c=c, radii=radii: ellipsoid(u, v, w, c, radii),
                   (c[0] - radii[0] - 1, c[0] + radii[0] + 1), (c[1] - radii[1] - 1, c[1] + radii[1] + 1),
                   (c[2] - radii[2] - 1, c[2] + radii[2] + 1))
    share = uniform(rng, R.intermuscular_fat)
    n = int(round(share * 60))
    for _ in range(n):
        u0, v0 = rng.uniform(4, 50) * rng.choice([-1, 1]), -rng.uniform(8, 55)
        s0 = rng.uniform(*s_all)
        ln, r = rng.uniform(15, 70), rng.uniform(0.8, 2.5)
        a, b = (u0, v0, s0 - ln / 2), (u0 + rng.normal(0, 3), v0 + rng.normal(0, 3), s0 + ln / 2)
        fields.add("fatstreak", lambda u, v, w, a=a, b=b, r=r: capsule(u, v, w, a, b, r),
                   (min(a[0], b[0]) - r - 1, max(a[0], b[0]) + r + 1), (min(a[1], b[1]) - r - 1, max(a[1], b[1]) + r + 1),
                   (a[2] - r - 1, b[2] + r + 1))
    if sp.region == "thoracic":
        for side in (-1.0, 1.0):
            def lung(u, v, w, side=side):
                bw, ca, tl, vb = par("bw", w), par("ca", w), par("tl", w), front(w) - par("bd", w)
                e = ellipse2(side * u - (bw + 40), v - (vb + 10), 38.0, 60.0)
                return np.maximum(e, -0.45 * ca - 0.35 * tl - 3 - v)
            fields.add("lung", lung, (0, 200) if side > 0 else (-200, 0), big, s_all)
    elif sp.region == "cervical":
        ra = uniform(rng, (6.0, 9.0))
        fields.add("lung", lambda u, v, w: np.hypot(u, v - front(w) - 5 - ra) - ra, (-ra - 2, ra + 2), big, s_all)
    return {"subcut_fat_mm": sub_mm, "intermuscular_fat": share}
