"""Vertebrae, discs and ribs of a gen2 case as signed-distance fields on the render grid.

Each vertebra is a union of primitives in its own ``(u, v, w)`` frame (``w`` from its body centre): a waisted
elliptic body with rounded rims, pedicles (tall capsules), shingled laminae (extruded 2-D capsules), a spinous
process that drops with the level, transverse processes, four articular processes; cervical vertebrae get a
transverse foramen (two bars around the vertebral artery), S1 the sacral alae, thoracic ones a rib each side
(bone, label 0). Discs: annulus and nucleus between the bodies. The canal is carved out of all bone afterwards
(:mod:`.tissue`), so the primitives may reach into it.
"""

from __future__ import annotations

import numpy as np

from .anatomy import Vertebra, canal_radius
from .shapes import Fields, capsule, capsule2, ellipse2, ellipsoid, extrude


def body_centre_v(d: dict):
    """Anterior offset of the body centre from the canal centre (the body's back is the canal's front wall);
    float or array as the dimensions are."""
    return canal_radius(0.0, d["cw"], d["ca"], d["tref"]) + d["bd"] - 1.0


def vertebral_artery_uv(d: dict) -> tuple[float, float]:
    """Lateral and anterior offsets of the vertebral artery (cervical transverse foramen)."""
    return d["bw"] + 4.5, body_centre_v(d) - 0.3 * d["bd"]


def pedicle_u(d: dict) -> float:
    return d["cw"] + 0.6 * d["pr"]


def _body(fields: Fields, v: Vertebra, vb: float) -> None:
    d = v.dims
    bw, bd, bh = d["bw"], d["bd"], d["bh"]

    def body(u, vv, w):
        waist = bw * (1.0 - 0.06 * np.clip(1.0 - (2.0 * w / bh) ** 2, 0.0, 1.0))
        return extrude(ellipse2(u, vv - vb, waist, bd) + 1.5, np.abs(w) - bh / 2 + 1.5) - 1.5

    rng_u, rng_v, rng_s = (-bw - 3, bw + 3), (vb - bd - 3, vb + bd + 3), (v.s - bh / 2 - 3, v.s + bh / 2 + 3)
    fields.add("body", body, rng_u, rng_v, rng_s, v.s, label=v.verse_id)
    fields.add("vert", body, rng_u, rng_v, rng_s, v.s, label=v.verse_id)


def _disc(fields: Fields, v: Vertebra, below: Vertebra, vb: float) -> None:
    d, e = v.dims, below.dims
    bw, bd = 0.5 * (d["bw"] + e["bw"]) * 1.02, 0.5 * (d["bd"] + e["bd"]) * 1.02
    wd, dh = -(d["bh"] / 2 + d["dh"] / 2), d["dh"]
    vb2 = 0.5 * (vb + float(body_centre_v(e)))
    rng = ((-bw - 2, bw + 2), (vb2 - bd - 2, vb2 + bd + 2), (v.s + wd - dh / 2 - 3, v.s + wd + dh / 2 + 3))
    fields.add("disc", lambda u, vv, w: extrude(ellipse2(u, vv - vb2, bw, bd) + 1.0,
                                                np.abs(w - wd) - dh / 2 - 0.8 + 1.0) - 1.0, *rng, v.s)
    fields.add("nucleus", lambda u, vv, w: extrude(ellipse2(u, vv - vb2 + 0.15 * bd, 0.5 * bw, 0.5 * bd),
                                                   np.abs(w - wd) - 0.3 * dh), *rng, v.s)


def _posterior(fields: Fields, v: Vertebra, vb: float) -> None:
    d, lab = v.dims, v.verse_id
    ca, pr, lt, bh = d["ca"], d["pr"], d["lt"], d["bh"]
    lam = 0.8 * lt  # lamina half thickness
    rpost = float(canal_radius(np.pi, d["cw"], ca, d["tref"]))
    cwp, wp = pedicle_u(d), 0.2 * bh
    s0 = v.s
    add = lambda fn, ur, vr, wr: fields.add("vert", fn, ur, vr, (s0 + wr[0], s0 + wr[1]), s0, label=lab)
    for side in (-1.0, 1.0):
        p0, p1 = (side * cwp, vb - 0.7 * d["bd"], wp), (side * cwp, -0.45 * ca, wp)
        ur = (min(side * cwp, 0) - 2 * pr - 1, max(side * cwp, 0) + 2 * pr + 1)
        add(lambda u, vv, w, p0=p0, p1=p1: capsule(u, vv, w, p0, p1, pr, 1.5),
            ur, (-0.45 * ca - pr - 1, vb + 1), (wp - 1.6 * pr - 1, wp + 1.6 * pr + 1))
        lam0, lam1 = (side * cwp, -0.45 * ca), (0.0, -(rpost + lt))
        add(lambda u, vv, w, a=lam0, b=lam1: extrude(capsule2(u, vv - 0.2 * w, a, b, lam), np.abs(w + 0.05 * bh) - 0.42 * bh),
            (min(side * cwp, 0) - lt - 1, max(side * cwp, 0) + lt + 1), (-(rpost + 2 * lt) - 0.1 * bh - 2, -0.45 * ca + lt + 0.1 * bh + 2),
            (-0.5 * bh - 1, 0.4 * bh + 1))
        for wf, vf in ((0.45 * bh, -0.55 * ca - 0.5 * pr), (-0.5 * bh, -0.7 * ca - 0.6 * pr)):  # articular processes
            c, radii = (side * (cwp + 0.5 * pr), vf, wf), (1.1 * pr, 1.0 * pr, 0.3 * bh)
            add(lambda u, vv, w, c=c, radii=radii: ellipsoid(u, vv, w, c, radii),
                (c[0] - radii[0] - 1, c[0] + radii[0] + 1), (vf - radii[1] - 1, vf + radii[1] + 1),
                (wf - radii[2] - 1, wf + radii[2] + 1))
        if v.kind in "TL" and d["tl"] > 0:
            back = 0.35 if v.kind == "T" else 0.1
            t0, t1 = (side * cwp, -0.45 * ca, wp), (side * (cwp + d["tl"]), -0.45 * ca - back * d["tl"], wp + 0.1 * d["tl"])
            r = pr * (0.7 if v.kind == "T" else 0.55)
            add(lambda u, vv, w, a=t0, b=t1, r=r: capsule(u, vv, w, a, b, r, 1.6),
                (min(t0[0], t1[0]) - r - 1, max(t0[0], t1[0]) + r + 1), (t1[1] - r - 1, t0[1] + r + 1),
                (wp - 1.6 * r - 1, t1[2] + 1.6 * r + 1))
        if v.kind == "C":
            uva, vva = vertebral_artery_uv(d)
            for a, b in (((side * 0.8 * d["bw"], vb + 0.2 * d["bd"], 0.0), (side * (uva + 3.5), vva + 0.5, 0.0)),
                         ((side * cwp, vva - 1.0, 0.0), (side * (uva + 3.5), vva - 0.5, 0.0))):
                add(lambda u, vv, w, a=a, b=b: capsule(u, vv, w, a, b, 1.8, 1.6),
                    (min(a[0], b[0]) - 3, max(a[0], b[0]) + 3), (min(a[1], b[1]) - 3, max(a[1], b[1]) + 3), (-4, 4))
        if v.name == "S1":
            c, radii = (side * (d["bw"] + 12.0), vb - 0.3 * d["bd"], -0.1 * bh), (16.0, 0.9 * d["bd"], 0.45 * bh)
            add(lambda u, vv, w, c=c, radii=radii: ellipsoid(u, vv, w, c, radii),
                (c[0] - radii[0] - 1, c[0] + radii[0] + 1), (c[1] - radii[1] - 1, c[1] + radii[1] + 1),
                (c[2] - radii[2] - 1, c[2] + radii[2] + 1))
        if v.kind == "T":
            tl = d["tl"]
            chain = [(side * 0.8 * d["bw"], vb - 0.6 * d["bd"], 0.45 * bh),
                     (side * (cwp + 0.9 * tl), -0.45 * ca - 0.35 * tl + 2.0, wp),
                     (side * (cwp + tl + 25.0), -0.45 * ca - 0.35 * tl + 8.0, wp - 10.0),
                     (side * (cwp + tl + 60.0), 20.0, wp - 28.0)]
            for a, b in zip(chain[:-1], chain[1:]):
                fields.add("rib", lambda u, vv, w, a=a, b=b: capsule(u, vv, w, a, b, 3.5, 1.6),
                           (min(a[0], b[0]) - 8, max(a[0], b[0]) + 8), (min(a[1], b[1]) - 8, max(a[1], b[1]) + 8),
                           (s0 + min(a[2], b[2]) - 8, s0 + max(a[2], b[2]) + 8), s0)
    sp0, sp1 = (0.0, -(rpost + lt), -0.1 * bh), (0.0, -(rpost + d["sl"]), -d["sdrop"])
    kw, tip = (2.6, 1.1) if v.kind in "LS" else (2.0, 1.3)  # lumbar spinous processes are tall plates
    add(lambda u, vv, w: np.minimum(capsule(u, vv, w, sp0, sp1, 0.9 * lt, kw),
                                    ellipsoid(u, vv, w, sp1, (tip * lt, tip * lt, 1.8 * lt))),
        (-2 * lt - 1, 2 * lt + 1), (sp1[1] - 2 * lt - 1, sp0[1] + 2 * lt + 1),
        (-d["sdrop"] - 3.5 * lt, 0.4 * bh + 2 * lt))


def render_bones(fields: Fields) -> None:
    """Fill ``body``, ``vert`` (with labels), ``disc``, ``nucleus`` and ``rib`` fields for every vertebra."""
    verts = fields.spine.verts
    for k, v in enumerate(verts):
        vb = float(body_centre_v(v.dims))
        if k == 0:  # the disc above the highest body, half in view
            above = Vertebra(v.name, 0, v.s + v.dims["bh"] + v.dims["dh"], v.dims)
            _disc(fields, above, v, vb)
        _body(fields, v, vb)
        if k + 1 < len(verts) and v.dims["dh"] > 0:
            _disc(fields, v, verts[k + 1], vb)
        elif k + 1 == len(verts) and v.name != "S1":  # the disc below the lowest body, half in view
            _disc(fields, v, v, vb)
        _posterior(fields, v, vb)
