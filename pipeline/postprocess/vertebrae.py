"""Vertebral levels without a vertebra map: bodies from a bone mask, named by counting from an anchor.

1. **Bodies.** Bone voxels are projected into the canal frame (see :mod:`.anatomy`); those in front of the canal
   (``10 mm < v < 70 mm``, ``|u| < 35 mm``) are vertebral bodies. Their amount per millimetre of spine axis is a
   profile whose deep minima (under 35 % of the bone within 40 mm) are the discs; each run between two discs longer than ``min_body_mm`` is a body.
2. **Anchor.** A hint ``NAME@S`` given by the user wins (it can name a transitional vertebra). Else the **sacrum** is the caudal-most bone column when it either ends free inside the field of view
   (nothing below it over at least ``free_end_mm``, more than a disc: no lumbar vertebra ends without a disc and another
   vertebra under it) or runs on fused for more than 1.6 median body heights (S1 fused with S2...), and the
   bodies above it are lumbar-sized (median over 18 mm: a cervical column ending free is no sacrum). Its cranial
   body is S1; the body above is L5 (L6 with ``lumbar_count=6``), and so on upwards. The hint (``L3@120``: the
   body whose centre lies nearest the world height 120 mm, the scanner's z) names one body and counts from it.
   Else **C2**: the cranial-most column, when it runs on without a disc for more than 1.6 cervical body heights
   (the dens of C2 rising through the atlas) and ends free in the field, is C1 above C2, counted downwards. When
   both the sacrum and C2 are in view the sacrum names the levels and a warning says if the two counts disagree.
   With no anchor, levels are not guessed: every body is ``NA`` and a warning says why.
3. **Map.** Every bone voxel within 90 mm of the canal axis takes the body nearest along the spine axis, so the
   map written (``vertebrae.nii.gz``, VerSe ids) holds whole vertebrae, posterior elements included, and the whole
   sacrum below S1 (VerSe 26).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d, maximum_filter1d

from ..core.levels import NAME_TO_VERSE, ORDER
from .anatomy import CanalFrame

_CERVICAL_MAX_MM = 18.0   # cervical bodies are about 14 mm tall, lumbar ones 23-28 mm


@dataclass
class NamedBodies:
    """Bodies found along the spine axis, cranial to caudal, and how they were named."""

    names: list[str]                     # level of each body ('NA' when no anchor holds)
    s_range: list[tuple[float, float]]   # (caudal, cranial) axis positions of each body, mm
    anchor: str                          # 'sacrum', 'C2', 'hint NAME@S', or 'none'
    confidence: float                    # 0..1: regularity of body heights and clarity of the anchor
    warnings: list[str] = field(default_factory=list)

    def centroids(self) -> dict[str, float]:
        """Axis position of each named body's centre (what :func:`.anatomy.assign_levels` takes)."""
        return {n: 0.5 * (a + b) for n, (a, b) in zip(self.names, self.s_range) if n != "NA"}


def find_bodies(bone: np.ndarray, affine: np.ndarray, frame: CanalFrame, *, min_body_mm: float = 8.0,
                max_voxels: int = 3_000_000,
                reach_mm: float = 90.0) -> tuple[list[tuple[float, float]], np.ndarray, np.ndarray]:
    """Vertebral bodies of a bone mask along the canal axis.

    Parameters
    ----------
    bone : (I, J, K) bool ndarray
        Vertebral bone (the model's class 2, or any vertebra map > 0).
    affine : (4, 4) ndarray
        Voxel to RAS mm.
    frame : CanalFrame
        The canal frame of the plexus.

    Returns
    -------
    bodies : list of (s_caudal, s_cranial) in mm, cranial first.
    s_all : (N,) axis positions of the bone voxels within ``reach_mm`` of the canal axis (no part of a vertebra
    lies farther: a spinous process ends some 70 mm behind the canal; a model's "bone" at the skin of a
    whole-body field of view does); idx : (N, 3) their voxel indices.

    The profile takes at most ``max_voxels`` evenly spread voxels (a whole-spine mask holds millions).
    """
    idx = np.argwhere(bone)
    if len(idx) == 0:
        return [], np.zeros(0), idx
    world = (affine[:3, :3] @ idx.T).T + affine[:3, 3]
    u, v, s_all = frame.project(world)  # every voxel once: the vertebra map labels them all
    near = np.hypot(u, v) <= reach_mm
    if not near.all():
        idx, u, v, s_all = idx[near], u[near], v[near], s_all[near]
    step = max(1, int(np.ceil(len(idx) / max_voxels)))
    u, v, s = u[::step], v[::step], s_all[::step]
    body = (v > 10.0) & (v < 70.0) & (np.abs(u) < 35.0)
    if body.sum() < 50:
        return [], s_all, idx
    lo, hi = np.floor(s[body].min()) - 2, np.ceil(s[body].max()) + 3
    hist, edges = np.histogram(s[body], bins=np.arange(lo, hi, 1.0))
    prof = gaussian_filter1d(hist.astype(float), 1.0)
    # discs are dips below 35 % of the bone around them (within 40 mm): small cervical bodies count as well as
    # large lumbar ones in one scan
    local = maximum_filter1d(prof, size=81, mode="nearest")
    inside = (prof > 0.35 * local) & (prof > 0.05 * np.percentile(prof[prof > 0], 75))
    bodies, k = [], 0
    while k < len(inside):
        if inside[k]:
            j = k
            while j < len(inside) and inside[j]:
                j += 1
            if edges[j] - edges[k] >= min_body_mm:
                bodies.append((float(edges[k]), float(edges[j])))
            k = j
        else:
            k += 1
    return sorted(bodies, key=lambda b: -b[1]), s_all, idx


# adult vertebral body heights (mm) by region, with room for a body merged with its disc or cut by the field
BODY_MM = {"C": (8.0, 24.0), "T": (12.0, 34.0), "L": (17.0, 42.0), "S": (15.0, 60.0)}


def name_bodies(bodies: list[tuple[float, float]], field_s: tuple[float, float], *, lumbar_count: int = 5,
                hint: tuple[str, float] | None = None, free_end_mm: float = 15.0) -> NamedBodies:
    """Name ``bodies`` (cranial first) from ``hint`` (name, axis position), else the sacrum, else C2, else ``NA``.

    ``field_s``: the (caudal, cranial) axis positions where the canal runs inside the image, to tell a free end
    from one cut by the field of view. Names that are not physically possible (:func:`implausible`) are ``NA``
    with a warning, never a guess; a user's hint is kept as given.
    """
    named = _name_bodies(bodies, field_s, lumbar_count=lumbar_count, hint=hint, free_end_mm=free_end_mm)
    why = implausible(named) if hint is None else ""
    if why:
        return NamedBodies(["NA"] * len(named.names), named.s_range, "none", 0.0,
                           [*named.warnings, f"levels not named: counting from the {named.anchor} gives {why}"])
    return named


def implausible(named: NamedBodies) -> str:
    """Why the names of ``named`` cannot be an adult spine ('' when they can): a body far outside its region's
    height range (a cervical name on lumbar-sized bodies, a lumbar one on cervical-sized), or a name twice."""
    real = [(n, b - a) for n, (a, b) in zip(named.names, named.s_range) if n != "NA"]
    if len(real) != len({n for n, _ in real}):
        return "a level named twice"
    if real and len(real) < 2 and named.anchor in ("sacrum", "C2"):
        return f"a single body: one vertebra cannot show a {named.anchor}"
    for n, h in real[1:-1]:  # every body inside the field (the first and last may be cut by it)
        lo, hi = BODY_MM[n[0]]
        if n not in ("C1", "C2") and not lo <= h <= hi:
            return f"{n} on a body {h:.0f} mm tall (an adult's is {lo:.0f}-{hi:.0f} mm)"
    for region, (lo, hi) in BODY_MM.items():
        h = [x for n, x in real if n[0] == region and n not in ("C1", "C2")]
        if len(h) >= 2 and not lo <= float(np.median(h)) <= hi:
            return (f"{region} names on bodies {float(np.median(h)):.0f} mm tall (an adult's are {lo:.0f}-{hi:.0f} mm)")
    return ""


def _name_bodies(bodies: list[tuple[float, float]], field_s: tuple[float, float], *, lumbar_count: int = 5,
                 hint: tuple[str, float] | None = None, free_end_mm: float = 15.0) -> NamedBodies:
    if lumbar_count not in (4, 5, 6):
        raise ValueError(f"lumbar_count: expected 4, 5 or 6, got {lumbar_count}")
    n = len(bodies)
    if n == 0:
        return NamedBodies([], [], "none", 0.0, ["no vertebral bodies found in the bone mask"])
    heights = np.array([b[1] - b[0] for b in bodies])
    med = float(np.median(heights))
    regular = float(np.mean(np.abs(heights - med) <= 0.4 * med))
    order = [x for x in ORDER if x != "T13" and (x != "L6" or lumbar_count == 6)
             and not (lumbar_count == 4 and x == "L5")]
    # a sacrum carries lumbar-sized bodies (cervical ones are about 14 mm): a cervical column whose lowest body
    # ends free (bone not found below it) or runs on is not named from a "sacrum"
    lumbar_sized = n < 2 or float(np.median(heights[-4:-1])) >= _CERVICAL_MAX_MM
    last = bodies[-1]
    fused = last[1] - last[0] > 1.6 * med and n >= 2 and lumbar_sized
    if fused:  # S1 fused with the sacrum below: split S1 (one body height) off the top of the column
        bodies = bodies[:-1] + [(last[1] - med, last[1])]
        regular = float(np.mean(np.abs(heights[:-1] - med) <= 0.4 * med))
    axis = _axis_column(bodies, field_s, free_end_mm)
    if axis is not None:  # C2 with its dens and the atlas around it: C1 is the part above one body height
        bodies = [(axis, bodies[0][1]), (bodies[0][0], axis)] + bodies[1:]
        n = len(bodies)
    if hint is not None:
        name, s0 = hint
        if name not in order:
            raise ValueError(f"anchor: unknown level {name!r}")
        k0 = int(np.argmin([abs(0.5 * (a + b) - s0) for a, b in bodies]))
        i0 = order.index(name)
        names = [order[i0 + k - k0] if 0 <= i0 + k - k0 < len(order) else "NA" for k in range(n)]
        return NamedBodies(names, bodies, f"hint {name}", round(regular, 2))
    free = last[0] - field_s[0] >= free_end_mm and lumbar_sized
    from_axis = [order[k] if k < len(order) else "NA" for k in range(n)] if axis is not None else None
    if fused or free:
        start = order.index("S1") - (n - 1)
        names = [order[start + k] if start + k >= 0 else "NA" for k in range(n)]
        why = "fused sacrum" if fused else "free caudal end"
        warn = [] if regular > 0.6 else [f"irregular body heights: levels named from the sacrum ({why}) may be off by one"]
        if from_axis is not None and from_axis != names:
            off = order.index(names[-1]) - order.index(from_axis[-1]) if from_axis[-1] in order else 0
            warn.append(f"counting down from C2 and up from the sacrum disagree by {abs(off)} vertebra(e) (a body "
                        "missed or merged, or a transitional vertebra): levels named from the sacrum")
            regular = min(regular, 0.5)
        return NamedBodies(names, bodies, "sacrum", round(regular, 2), warn)
    if from_axis is not None:
        return NamedBodies(from_axis, bodies, "C2", round(regular, 2), [] if regular > 0.6 else
                           ["irregular body heights: levels named down from C2 may be off by one"])
    return NamedBodies(["NA"] * n, bodies, "none", 0.0,
                       ["levels not named: neither the sacrum nor C2 is in view and no --anchor NAME@Z was given"])


def _axis_column(bodies: list[tuple[float, float]], field_s: tuple[float, float], free_end_mm: float) -> float | None:
    """Where C2's body ends and the atlas begins, when the cranial-most bone column is the C1-C2 complex; else None.

    The dens rises from the C2 body through the ring of the atlas, so bone in front of the canal runs on without a
    disc for more than 1.6 cervical body heights; the column must end free inside the field (nothing above it
    over ``free_end_mm``) and the bodies under it must be cervical-sized (median under 18 mm)."""
    if len(bodies) < 3:
        return None
    top = bodies[0]
    rest = float(np.median([b - a for a, b in bodies[1:4]]))
    if top[1] - top[0] > 1.6 * rest and rest < _CERVICAL_MAX_MM and field_s[1] - top[1] >= free_end_mm:
        return top[0] + 1.1 * rest
    return None


def vertebra_map(shape: tuple[int, int, int], idx: np.ndarray, s: np.ndarray, named: NamedBodies) -> np.ndarray:
    """VerSe label map: every bone voxel (``idx``, axis positions ``s``) takes the nearest named body along s."""
    out = np.zeros(shape, dtype=np.uint8)
    keep = [(NAME_TO_VERSE[nm], 0.5 * (a + b)) for nm, (a, b) in zip(named.names, named.s_range) if nm != "NA"]
    if not keep or len(idx) == 0:
        return out
    ids = np.array([k for k, _ in keep], dtype=np.uint8)
    centres = np.array([c for _, c in keep])
    nearest = _nearest(s, centres)
    gap = float(np.median(np.abs(np.diff(centres)))) if len(centres) > 1 else 30.0
    ok = np.abs(s - centres[nearest]) <= 0.75 * gap
    ends = [b for nm, b in zip(named.names, named.s_range) if nm != "NA"]
    ok &= s <= max(b for _, b in ends) + 0.3 * gap   # a vertebra cut by the field above the top body is not it
    if "S1" in named.names:  # the rest of the fused sacrum below S1 is sacrum too (VerSe 26 = sacrum/S1)
        ok |= s < centres[list(ids).index(NAME_TO_VERSE["S1"])]
    else:
        ok &= s >= min(a for a, _ in ends) - 0.3 * gap
    out[tuple(idx[ok].T)] = ids[nearest[ok]]
    return out


def _nearest(s: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """``argmin(|s[:, None] - centres|, axis=1)`` (the first centre on ties) by a binary search of the sorted
    centres: no (N, K) table for the millions of voxels of a whole spine."""
    order = np.lexsort((np.arange(len(centres)), centres))  # by position, then index
    first = np.r_[True, centres[order][1:] != centres[order][:-1]]  # a repeated position: its first centre
    order = order[first]
    cs = centres[order]
    j = np.searchsorted(cs, s)
    below, above = order[np.clip(j - 1, 0, len(cs) - 1)], order[np.clip(j, 0, len(cs) - 1)]
    db, da = np.abs(s - centres[below]), np.abs(s - centres[above])
    return np.where((db < da) | ((db == da) & (below < above)), below, above)


def field_extent(shape: tuple[int, int, int], affine: np.ndarray, frame: CanalFrame) -> tuple[float, float]:
    """(caudal, cranial) axis positions where the canal axis runs inside the image grid."""
    ijk = (np.linalg.inv(affine)[:3, :3] @ frame.centre.T).T + np.linalg.inv(affine)[:3, 3]
    inside = np.all((ijk >= -0.5) & (ijk <= np.asarray(shape) - 0.5), axis=1)
    if not inside.any():
        return float(frame.s[0]), float(frame.s[-1])
    return float(frame.s[inside].min()), float(frame.s[inside].max())


def parse_anchor(text: str) -> tuple[str, float]:
    """``'L3@120.5'`` -> ``('L3', 120.5)``: level name and world height (RAS z, mm)."""
    name, sep, z = text.partition("@")
    try:
        if not sep:
            raise ValueError
        return name.strip().upper(), float(z)
    except ValueError:
        raise ValueError(f"--anchor: expected NAME@Z such as L3@120 (level at world height Z mm), got {text!r}") \
            from None
