"""``plexus measure``: from a plexus mask to calibre per vertebral level and channel.

clean -> centrelines -> calibre -> canal frame, channel per branch, level per point -> table rows.
Works on any plexus mask: the model's, a phantom's, or one drawn in 3D Slicer.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from ..core.errors import InputError
from ..core.levels import NA, detect_convention, level_rank, to_verse
from ..core.volume import Volume, reorient, same_grid
from .anatomy import (
    CHANNELS,
    TRANSVERSE,
    assign_levels,
    canal_frame,
    classify_branch,
    spine_frame,
    vertebra_axis_positions,
)
from .calibre import BORDER, EMPTY, END, JUNCTION, measure_calibre
from .centreline import Branch, extract_centrelines
from .clean import clean_mask, distance_mm, drop_far_from_bone
from .vertebrae import field_extent, find_bodies, name_bodies, parse_anchor, vertebra_map

BAD = JUNCTION | END | EMPTY | BORDER
COLUMNS = ["level", "channel", "n_points", "length_mm", "median_diameter_mm", "mean_diameter_mm", "min_diameter_mm",
           "max_diameter_mm", "median_inscribed_diameter_mm", "volume_mm3", "canal_area_mm2", "plexus_canal_fraction"]


@dataclass
class MeasureOptions:
    """Parameters of the measurement, all in millimetres (stored in ``measurements.json``)."""

    label: int = 1
    min_volume_mm3: float = 4.0
    max_hole_mm3: float = 2.0
    prune_ratio: float = 2.0
    prune_min_mm: float = 1.0
    smooth_mm: float = 0.8
    step_mm: float = 0.5
    window_mm: float = 2.0
    vertebrae_convention: str = "auto"      # 'auto' tells VerSe from TotalSegmentator ids
    lumbar_count: int = 5                 # levels from bone: lumbar vertebrae above the sacrum (4, 5 or 6)
    max_gap_to_bone_mm: float = 15.0      # with vertebrae or bone: drop mask parts never this close to a vertebra
    anchor: str | None = None             # levels from bone without a sacrum in view: 'NAME@Z' (world z, mm)

    def __post_init__(self):
        for k in ("min_volume_mm3", "max_hole_mm3", "prune_ratio", "step_mm", "window_mm"):
            if getattr(self, k) < 0:
                raise ValueError(f"{k}: must be >= 0, got {getattr(self, k)}")


@dataclass
class MeasureResult:
    """Centreline branches (with per-point ``data``), nodes, table rows and a case summary."""

    branches: list[Branch]
    nodes: np.ndarray
    degree: np.ndarray
    rows: list[dict]
    summary: dict
    warnings: list[str] = field(default_factory=list)
    vertebrae: Volume | None = None      # the vertebra map found from the bone mask (VerSe ids, mask grid)


def _binary(mask: Volume, label: int, warnings: list[str]) -> np.ndarray:
    a = mask.array
    if a.dtype.kind == "f" and not np.all(np.mod(a[a != 0], 1) == 0):
        raise InputError(mask.path, "mask holds non-integer values; pass a probability map with --probabilities")
    top = a.max()
    if a.min() >= 0 and top == label:
        values = {label}
    else:  # sort only the few labelled voxels (memory order: no copy of a Fortran-ordered array)
        flat = a.ravel(order="K")
        values = set(np.unique(flat[flat != 0]).astype(int).tolist())
    if label not in values and mask.meta.get("kind") != "segmentation":  # plexus infer words its own warning
        warnings.append(f"{mask.path}: no voxel has label {label}" + (f" (labels present: {sorted(values)})" if values else ""))
    elif values - {label} and mask.meta.get("kind") != "segmentation":  # the model's own labels are expected
        warnings.append(f"{mask.path}: labels {sorted(values - {label})} besides {label} are ignored")
    return a == label


def measure(mask: Volume, *, vertebrae: Volume | None = None, probabilities: Volume | None = None,
            bone: Volume | None = None, options: MeasureOptions | None = None,
            canal: Volume | None = None) -> MeasureResult:
    """Measure the plexus of ``mask`` (see the module docstring): centrelines, then calibre per vertebral level
    and channel.

    Parameters
    ----------
    mask : Volume
        (I, J, K) label map of the plexus (label ``options.label``), any storage order; RAS mm affine.
    vertebrae : Volume, optional
        (I, J, K) vertebra map on the mask's grid (any convention, see ``options.vertebrae_convention``): levels.
    probabilities : Volume, optional
        (I, J, K) float plexus probability in [0, 1] on the mask's grid: sub-voxel calibre.
    bone : Volume, optional
        (I, J, K) vertebral bone mask (> 0): without ``vertebrae``, the vertebrae are found and named from it.
    options : MeasureOptions, optional
        Window (mm), minimum volume (mm3), lumbar count, anchor...; default :class:`MeasureOptions`.
    canal : Volume, optional
        (I, J, K) vertebral canal (stage 1) on the mask's grid: each level's canal cross-section
        (``canal_area_mm2``, the median over 1 mm steps along the spine axis) and the share of it the plexus fills
        (``plexus_canal_fraction``).

    Returns
    -------
    MeasureResult
        ``rows``: one dict per (level, channel) with the :data:`COLUMNS` (lengths and diameters in mm, volume in
        mm3, area in mm2); ``branches``: centrelines in RAS mm; ``summary``; ``warnings``.

    Raises
    ------
    InputError
        A map on another grid than the mask, a mask that is not a label map.
    """
    opt = options or MeasureOptions()
    t0 = time.perf_counter()
    warnings: list[str] = list(mask.meta.get("warnings", []))
    binary = _binary(mask, opt.label, warnings)
    vertebrae, probabilities, bone = (None if other is None else same_grid(mask, other, what) for other, what in
                                      ((vertebrae, "vertebra map"), (probabilities, "probability map"),
                                       (bone, "bone mask")))
    summary = {"input": mask.path, "shape": list(mask.shape), "spacing_mm": [round(float(s), 4) for s in mask.spacing],
               "axcodes": "".join(mask.axcodes), "options": asdict(opt)}
    if vertebrae is not None:  # VerSe ids from here on, whatever the map's convention
        used = detect_convention(vertebrae.array) if opt.vertebrae_convention == "auto" else opt.vertebrae_convention
        summary["vertebrae_convention"] = vertebrae.meta.get("convention", used)
        vertebrae = vertebrae.with_array(to_verse(vertebrae.array, used))
    if not binary.any():
        return _empty(mask, summary, warnings)
    binary = _near_spine(binary, mask, vertebrae, bone, opt, summary, warnings)
    if not binary.any():
        return _empty(mask, summary, warnings)
    # crop to the plexus, then work in the closest RAS storage (an exact permutation/flip of the arrays):
    # every storage orientation of the same data gives the same skeleton, sections and numbers
    nz = [np.nonzero(binary.any(axis=tuple(j for j in range(3) if j != i)))[0] for i in range(3)]
    lo = np.array([max(int(n.min()) - 4, 0) for n in nz])
    hi = np.array([min(int(n.max()) + 5, s) for n, s in zip(nz, mask.shape)])
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    aff = mask.affine.copy()
    aff[:3, 3] = mask.affine[:3, :3] @ lo + mask.affine[:3, 3]
    crop = reorient(Volume(binary[sl], aff, {}))
    if probabilities is not None:
        probabilities = reorient(Volume(probabilities.array[sl], aff, {}))
    binary, aff = crop.array, crop.affine
    vertebrae = reorient(vertebrae) if vertebrae is not None else None
    spacing = crop.spacing
    cleaned, report = clean_mask(binary, spacing=spacing, min_volume_mm3=opt.min_volume_mm3,
                                 max_hole_mm3=opt.max_hole_mm3)
    summary["clean"] = report.to_dict()
    if report.n_removed:
        warnings.append(f"{mask.path}: removed {report.n_removed} specks ({report.removed_volume_mm3:.1f} mm3)")
    if not cleaned.any():
        warnings.append(f"{mask.path}: nothing left after removing specks below {opt.min_volume_mm3} mm3")
        return _empty(mask, summary, warnings)
    dist = distance_mm(cleaned, spacing=spacing)
    t1 = time.perf_counter()
    graph = extract_centrelines(cleaned, aff, distance_mm=dist, prune_ratio=opt.prune_ratio,
                                prune_min_mm=opt.prune_min_mm, smooth_mm=opt.smooth_mm, step_mm=opt.step_mm)
    t2 = time.perf_counter()
    # the canal frame from the centrelines as extracted (calibre's recentring moves them by under a voxel), so that
    # the vertebral levels are found beside the calibre: neither needs the other, and both spend most of their time
    # in compiled code that releases the GIL
    frame = _canal_frame_of(graph.branches)
    spine_axis = _frame_through_canal(canal) if canal is not None else None  # stage 1's canal: levels follow it
    if frame is None and spine_axis is not None:
        frame = spine_axis
        warnings.append(f"{mask.path}: too little plexus to follow; channels are taken around the canal stage 1 found")
    if frame is None:
        warnings.append(f"{mask.path}: too little plexus to find the spinal canal; channels are all 'transverse'")
    # the probabilities as they are (a view of the crop: no copy of a whole spine's field)
    field_ = (np.asarray(probabilities.array, dtype=np.float32) if probabilities is not None
              else cleaned.astype(np.float32))
    with ThreadPoolExecutor(1, thread_name_prefix="plexus-levels") as pool:
        levels = pool.submit(_levels, spine_axis or frame, vertebrae, bone, opt)
        measure_calibre(graph, field_, aff, distance_mm=dist, window_mm=opt.window_mm)
        t3 = time.perf_counter()
        found, named, level_frame, centroids = levels.result()
    if named is not None:
        warnings += [f"{mask.path}: {w}" for w in named.warnings]
        summary["levels_from_bone"] = {"anchor": named.anchor, "confidence": named.confidence,
                                       "bodies": [{"level": n, "axis_mm": [round(a, 1), round(b, 1)]}
                                                  for n, (a, b) in zip(named.names, named.s_range)]}
    if vertebrae is not None and not centroids:
        warnings.append(f"{vertebrae.path}: no vertebra labels of the {summary['vertebrae_convention']} convention")
    elif centroids and frame is not None and level_frame is not frame:
        _check_plexus_axis(frame, level_frame, mask.path, warnings)
    for b in graph.branches:
        b.data["channel"] = classify_branch(b.points, b.data["flags"], frame) if frame is not None else TRANSVERSE
        s = level_frame.project(b.points)[2] if level_frame is not None else np.zeros(len(b.points))
        b.data["level"] = assign_levels(s, centroids)
    rows = _rows(graph.branches, cleaned, aff, spacing, list(centroids))
    if canal is not None:
        _add_canal_columns(rows, same_grid(mask, canal, "canal mask"), mask.array == opt.label, level_frame or frame,
                           centroids)
    for r in rows:
        if r["channel"] in CHANNELS and r["n_points"] == 0 and (r["level"] != NA or not centroids):
            warnings.append(f"{mask.path}: {r['level']} {r['channel']}: no measurable centreline")
    n_loops = len(graph.branches) - int((graph.degree > 0).sum()) + _n_components(cleaned)
    summary.update({
        "total_volume_mm3": round(float(cleaned.sum() * np.prod(spacing)), 2),
        "centreline_length_mm": round(float(sum(b.length for b in graph.branches)), 2),
        "n_branches": len(graph.branches), "n_junctions": int((graph.degree >= 3).sum()), "n_loops": int(n_loops),
        "levels_source": _levels_source(vertebrae, found, centroids, summary),
        "vertebra_axis_mm": {k: round(v, 2) for k, v in sorted(centroids.items(), key=lambda kv: kv[1])},
        "per_level": _per_level(rows),
        "flags": {name: int(sum(((b.data["flags"] & bit) > 0).sum() for b in graph.branches))
                  for bit, name in ((JUNCTION, "junction"), (END, "end"), (BORDER, "border"), (EMPTY, "empty"))},
        "timings_s": {"clean": round(t1 - t0, 3), "centreline": round(t2 - t1, 3), "calibre": round(t3 - t2, 3),
                      "total": round(time.perf_counter() - t0, 3)},
    })
    return MeasureResult(graph.branches, graph.nodes, graph.degree, rows, summary, warnings, found)


def canal_by_level(canal: Volume, plexus: np.ndarray, frame, centroids: dict[str, float]) -> dict[str, tuple]:
    """Per level: (canal cross-section, mm^2; share of the canal the plexus fills, 0..1).

    Canal voxels take the level of the nearest body centroid along ``frame``'s axis (``NA`` without levels); the
    area is the median, over 1 mm steps along the axis, of the canal volume in the step divided by its length.
    """
    idx = np.argwhere(canal.array > 0)
    if len(idx) == 0 or frame is None:
        return {}
    world = idx @ canal.affine[:3, :3].T + canal.affine[:3, 3]
    s = frame.project(world)[2]
    names = assign_levels(s, centroids)
    voxel = float(np.prod(canal.spacing))
    inside = plexus[tuple(idx.T)]
    out = {}
    for name in dict.fromkeys(names):
        m = names == name
        steps = np.floor(s[m]).astype(int)
        counts = np.bincount(steps - steps.min())
        area = float(np.median(counts[counts > 0])) * voxel  # mm3 per 1 mm of axis
        out[name] = (round(area, 2), round(float(inside[m].mean()), 4))
    return out


def _add_canal_columns(rows: list[dict], canal: Volume, plexus: np.ndarray, frame, centroids) -> None:
    table = canal_by_level(canal, plexus, frame, centroids)
    for r in rows:
        r["canal_area_mm2"], r["plexus_canal_fraction"] = table.get(r["level"], (float("nan"), float("nan")))


def _frame_through_canal(canal: Volume, max_points: int = 200_000):
    """The canal frame (:func:`.anatomy.canal_frame`) through the voxels of the vertebral canal (stage 1)."""
    idx = np.argwhere(canal.array > 0)
    if len(idx) == 0:
        return None
    idx = idx[:: max(1, len(idx) // max_points)]
    pts = idx @ canal.affine[:3, :3].T + canal.affine[:3, 3]
    return canal_frame(pts, np.zeros_like(pts))


def _canal_frame_of(branches: list[Branch]):
    """The canal frame (see :func:`.anatomy.canal_frame`) of the centreline points and their unit tangents."""
    if not branches:
        return None
    pts = np.concatenate([b.points for b in branches])
    tans = np.concatenate([np.gradient(b.points, axis=0) if len(b.points) > 1 else np.zeros((len(b.points), 3))
                           for b in branches])
    tans /= np.maximum(np.linalg.norm(tans, axis=1, keepdims=True), 1e-9)
    return canal_frame(pts, tans)


def _levels(frame, vertebrae: Volume | None, bone: Volume | None, opt: MeasureOptions):
    """Where the vertebrae lie along the spine: ``(found, named, level_frame, centroids)``.

    ``found``/``named``: the vertebra map found from ``bone`` and its named bodies (``None`` with a vertebra map or
    without bone); ``level_frame``: the frame levels are counted along (through the vertebrae when there are some,
    else the canal ``frame``); ``centroids``: level name -> body position along it (mm).
    """
    found = named = level_map = None  # level_map: (VerSe ids, affine) of the vertebrae that name the levels
    if vertebrae is None and bone is not None and frame is not None:
        found, named = _levels_from_bone(bone, frame, opt)
        if named.centroids():
            level_map = (found.array, found.affine)
    if vertebrae is not None:
        level_map = (vertebrae.array, vertebrae.affine)
    level_frame, centroids = frame, {}
    if level_map is not None:
        level_frame = spine_frame(*level_map) or frame
        if level_frame is not None:
            centroids = vertebra_axis_positions(*level_map, level_frame)
    return found, named, level_frame, centroids


def _check_plexus_axis(frame, spine, path, warnings: list[str]) -> None:
    """Warn when the canal axis found from the plexus does not run along the spine (a poor segmentation)."""
    mid = spine.centre[len(spine.centre) // 2]
    _, i = frame.tree.query(mid)
    _, j = spine.tree.query(mid)
    cos = abs(float(frame.T[i] @ spine.T[j]))
    if cos < np.cos(np.radians(30)):
        warnings.append(f"{path}: the plexus found does not run along the spine (axes {np.degrees(np.arccos(cos)):.0f} "
                        f"degrees apart); channels are unreliable, review the segmentation")


def _near_spine(binary, mask: Volume, vertebrae, bone, opt: MeasureOptions, summary: dict, warnings: list[str]):
    """Drop the parts of the mask that never come near a vertebra (see :func:`.clean.drop_far_from_bone`)."""
    if vertebrae is not None:  # already in VerSe ids
        spine = vertebrae.array > 0
    elif bone is not None:
        spine = bone.array > 0
    else:
        return binary
    kept, n, mm3 = drop_far_from_bone(binary, spine, spacing=mask.spacing, max_gap_mm=opt.max_gap_to_bone_mm)
    summary["far_from_spine"] = {"parts_dropped": n, "volume_mm3": round(mm3, 1), "max_gap_mm": opt.max_gap_to_bone_mm}
    if n:
        warnings.append(f"{mask.path}: dropped {n} parts of the mask ({mm3:.0f} mm3) that never come within "
                        f"{opt.max_gap_to_bone_mm:g} mm of a vertebra: not internal vertebral venous plexus")
    return kept


def _levels_source(vertebrae, found, centroids, summary) -> str:
    if not centroids:
        return "none (levels are NA)"
    if vertebrae is not None:
        return "vertebra map"
    return f"bone mask (anchor: {summary['levels_from_bone']['anchor']})"


def _levels_from_bone(bone: Volume, frame, opt: MeasureOptions):
    """Name the vertebral bodies of ``bone`` (see :mod:`.vertebrae`); return (VerSe map Volume, NamedBodies)."""
    mask = bone.array > 0
    bodies, s_all, idx = find_bodies(mask, bone.affine, frame)
    hint = None
    if opt.anchor:
        name, z = parse_anchor(opt.anchor)
        hint = (name, float(frame.s[int(np.argmin(np.abs(frame.centre[:, 2] - z)))]))
    named = name_bodies(bodies, field_extent(bone.shape, bone.affine, frame), lumbar_count=opt.lumbar_count,
                        hint=hint)
    arr = vertebra_map(bone.shape, idx, s_all, named)
    return bone.with_array(arr, kind="vertebrae", convention="verse"), named


def _n_components(mask: np.ndarray) -> int:
    import cc3d

    return int(cc3d.connected_components(mask, connectivity=26, return_N=True)[1])


def _empty(mask: Volume, summary: dict, warnings: list[str]) -> MeasureResult:
    summary.update({"total_volume_mm3": 0.0, "centreline_length_mm": 0.0, "n_branches": 0, "n_junctions": 0,
                    "n_loops": 0, "per_level": {}, "levels_source": "none"})
    return MeasureResult([], np.zeros((0, 3)), np.zeros(0, int), [], summary, warnings)


def _rows(branches: list[Branch], cleaned: np.ndarray, aff: np.ndarray, spacing, levels: list[str]) -> list[dict]:
    """One row per (level, channel); every longitudinal channel of every labelled level is present."""
    if not branches:
        return []
    pts = np.concatenate([b.points for b in branches])
    lv = np.concatenate([b.data["level"] for b in branches])
    ch = np.concatenate([np.full(len(b.points), b.data["channel"], dtype=object) for b in branches])
    dia = np.concatenate([b.data["diameter_mm"] for b in branches])
    ins = np.concatenate([b.data["inscribed_diameter_mm"] for b in branches])
    flg = np.concatenate([b.data["flags"] for b in branches])
    seg = []
    for b in branches:
        d = np.linalg.norm(np.diff(b.points, axis=0), axis=1) if len(b.points) > 1 else np.zeros(0)
        w = np.zeros(len(b.points))
        w[:-1] += d / 2
        w[1:] += d / 2
        seg.append(w)
    seg = np.concatenate(seg)
    vox = np.argwhere(cleaned)
    world = (aff[:3, :3] @ vox.T).T + aff[:3, 3]
    # rounded to 0.1 um: a voxel equidistant from two points goes the same way whatever the storage's float error
    owner = cKDTree(np.round(pts, 4)).query(np.round(world, 4))[1]
    vol_each = np.bincount(owner, minlength=len(pts)) * float(np.prod(spacing))
    keys = {(a, b) for a, b in zip(lv, ch)}
    for level in (levels or [NA]):
        keys |= {(level, c) for c in CHANNELS}
    rows = []
    order = {c: i for i, c in enumerate(CHANNELS + (TRANSVERSE,))}
    for level, channel in sorted(keys, key=lambda k: (level_rank(k[0]), order[k[1]])):
        m = (lv == level) & (ch == channel)
        good = m & ((flg & BAD) == 0)
        row = {"level": level, "channel": channel, "n_points": int(good.sum()), "length_mm": float(seg[m].sum()),
               "volume_mm3": float(vol_each[m].sum())}
        # every point of the channel counts, disturbed ones with the value of the clean sections around
        # them (see calibre): junctions neither bias the statistics nor leave holes in them
        use = m & ((flg & EMPTY) == 0) if good.any() else good
        d = dia[use]
        row.update({"median_diameter_mm": float(np.median(d)) if d.size else float("nan"),
                    "mean_diameter_mm": float(np.mean(d)) if d.size else float("nan"),
                    "min_diameter_mm": float(np.min(d)) if d.size else float("nan"),
                    "max_diameter_mm": float(np.max(d)) if d.size else float("nan"),
                    "median_inscribed_diameter_mm": float(np.median(ins[good])) if good.any() else float("nan")})
        rows.append({k: row.get(k, float("nan")) for k in COLUMNS})  # the canal's columns: see canal_by_level
    return rows


def _per_level(rows: list[dict]) -> dict:
    out: dict[str, dict] = {}
    for r in rows:
        e = out.setdefault(r["level"], {"volume_mm3": 0.0, "length_mm": 0.0})
        e["volume_mm3"] = round(e["volume_mm3"] + r["volume_mm3"], 2)
        e["length_mm"] = round(e["length_mm"] + r["length_mm"], 2)
    return out
