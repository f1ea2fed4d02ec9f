"""Hybrid phantoms: a synthetic plexus with exact ground truth inserted into the real canal of a real scan.

The scan's vertebra map gives the real canal at every vertebra (:func:`.canal.find_canal`); a smooth canal
centre line through those sections, with the real canal sizes and body heights, carries the same plexus model
as the phantoms (:mod:`.vessels`). The veins are rendered with exact partial volume on a grid of at most
``spacing`` mm (finer than a coarse scan, so the truth is not blocky), blurred by the scan's own point spread
(about one source voxel), and added to the real image *as a change of local mean*: the real noise and texture
stay, so the noise is the scan's own; the local mean is that of the soft tissue around (bone left out, so a vein
beside the canal wall is not measured against the bone's brightness). Veins are kept out of real bone, except the basivertebral veins, which
enter the vertebral body as in life.

Enhancement: CT veins take a venous-phase value (120-230 HU, as the phantoms); MR veins are enhanced relative to
the scan's own histogram: 1.4-2x its 99th percentile around the spine, so they stand out from bright CSF on
T2-weighted scans as enhanced veins do on contrast T1 (the phantoms' 700-1000 against tissue up to 320).

Without a vertebra map (:func:`generate_hybrid_in_canal`, :func:`generate_hybrid_from_scan`), the sections come
from the canal centre line of stage 1 (:func:`.canal.sections_from_centreline`), the veins are kept out of the
scan's own bone on CT (HU > 200) and within the canal's outline on MR; MR veins are then drawn bright
(enhanced, as above), dark (flow void, 0.2-0.5x the local tissue) or intermediate, recorded in ``phantom.json``
(``vein_polarity``), with how visible the veins came out (``vein_cnr``, :func:`vein_visibility`). Registry scans
(``configs/real_scans.yaml``) are made at their own resolution (coarsest voxel side, 1-3 mm).

The real scan may hold real epidural veins of its own; they are not in the truth. On 1-3 mm clinical scans
they are rarely resolved, but a model trained on hybrids learns that faint real veins are background.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.interpolate import make_interp_spline

from ..core.volume import Volume, same_grid
from ..io import read_image, read_label_map, read_vertebrae
from ..io.registry import ScanEntry
from . import canal as canal_sections
from .anatomy import SpineAxis, Vertebra
from .canal import CanalSection, find_canal
from .phantom import Phantom, truth_calibre
from .vessels import build_plexus, canal_profile, draw_diameters, render_tubes


@dataclass
class HybridConfig:
    """What defines a hybrid case besides the scan itself; ``seed`` draws the plexus and its intensity.

    Parameters
    ----------
    image, vertebrae : str
        Paths of the real scan and its vertebra map (recorded in ``phantom.json``).
    modality : {'CT', 'MR'}
    seed : int
    spacing : float
        Largest voxel size (mm) of the output grid; a coarser scan is resampled (image linear, labels nearest).
    margin_mm : (3,) float
        Field kept around the canal: half-width, behind, in front (mm).
    p_engorged : float
        Probability of an engorged level.
    """

    image: str = ""
    vertebrae: str = ""
    modality: str = "CT"
    seed: int = 0
    spacing: float = 1.0
    margin_mm: tuple[float, float, float] = (34.0, 34.0, 42.0)
    p_engorged: float = 0.15

    def __post_init__(self):
        if self.modality not in ("CT", "MR"):
            raise ValueError(f"modality: expected 'CT' or 'MR', got {self.modality!r}")
        if not 0.2 <= self.spacing <= 3.0:
            raise ValueError(f"spacing: expected 0.2 to 3 mm, got {self.spacing}")
        if len(self.margin_mm) != 3 or min(self.margin_mm) <= 5:
            raise ValueError(f"margin_mm: expected three values above 5 mm, got {self.margin_mm}")


class CanalAxis(SpineAxis):
    """A :class:`SpineAxis` through measured canal centres (no random shape): a smoothing spline through the
    centres, extended straight by ``extend`` mm at both ends; the anterior direction follows each vertebra's
    body."""

    def __init__(self, sections: list[CanalSection], ds: float = 0.25, extend: float = 40.0):
        c = np.array([x.centre for x in sections])
        step = np.linalg.norm(np.diff(c, axis=0), axis=1)
        knots = np.concatenate([[0.0], np.cumsum(step)])
        k = min(3, len(c) - 1)
        spl = make_interp_spline(knots, c, k=k)
        self._ds = ds
        self.s = np.arange(-extend, knots[-1] + extend + ds, ds)
        inner = np.clip(self.s, 0.0, knots[-1])
        p = spl(inner)
        tan = spl.derivative()(inner)
        tan /= np.linalg.norm(tan, axis=1, keepdims=True)
        p = p + (self.s - inner)[:, None] * tan      # straight beyond the ends
        self.p, self.t = p, tan
        ant_k = np.array([x.body_centre - x.centre for x in sections])
        ant = np.stack([np.interp(inner, knots, ant_k[:, d]) for d in range(3)], axis=1)
        ant -= np.einsum("ij,ij->i", ant, tan)[:, None] * tan
        ant /= np.linalg.norm(ant, axis=1, keepdims=True)
        self.A = ant
        self.L = np.cross(-tan, ant)
        self.knots = knots


def _vertebrae(sections: list[CanalSection], axis: CanalAxis) -> list[Vertebra]:
    """Straightened-frame vertebrae from the measured sections (body centre and extent along the axis)."""
    out = []
    for sec in sections:
        _, _, s_mid = axis.to_straight(sec.body_centre[None])
        out.append(Vertebra(sec.name, sec.verse_id, float(s_mid[0]), sec.body_height, sec.body_width, sec.body_depth,
                            0.0, sec.canal_ap, sec.canal_width))
    for a, b in zip(out[:-1], out[1:]):
        a.disc_below = float(max(b.s_centre - b.height / 2 - (a.s_centre + a.height / 2), 0.0))
    return out


def _crop_and_resample(image: Volume, labels: list, axis: CanalAxis, sections, cfg: HybridConfig):
    """The scan cut to the canal's neighbourhood and, where coarser than ``cfg.spacing``, resampled finer; the
    ``labels`` (arrays on the image's grid, or None) cut and resampled alike (nearest)."""
    half, back, front = cfg.margin_mm
    s_lo = axis.to_straight(sections[0].body_centre[None])[2][0] - sections[0].body_height / 2 - 10
    s_hi = axis.to_straight(sections[-1].body_centre[None])[2][0] + sections[-1].body_height / 2 + 10
    ss = np.linspace(s_lo, s_hi, 80)
    pts = np.concatenate([axis.to_world(u, v, ss) for u in (-half, half) for v in (-back, front)])
    inv = np.linalg.inv(image.affine)
    ijk = pts @ inv[:3, :3].T + inv[:3, 3]
    lo = np.clip(np.floor(ijk.min(0)).astype(int), 0, np.array(image.shape) - 1)
    hi = np.clip(np.ceil(ijk.max(0)).astype(int) + 1, lo + 1, np.array(image.shape))
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    aff = image.affine.copy()
    aff[:3, 3] = image.affine[:3, :3] @ lo + image.affine[:3, 3]
    img = image.array[sl].astype(np.float32)
    labs = [None if lab is None else np.asarray(lab[sl]) for lab in labels]
    sp = image.spacing
    zoom = np.maximum(sp / cfg.spacing, 1.0)
    if np.any(zoom > 1.0):
        n_new = np.floor((np.array(img.shape) - 1) * zoom).astype(int) + 1
        grid = np.meshgrid(*[np.arange(n) / z for n, z in zip(n_new, zoom)], indexing="ij", sparse=True)
        coords = np.broadcast_arrays(*grid)
        img = ndimage.map_coordinates(img, coords, order=1, mode="nearest")
        labs = [None if lab is None else ndimage.map_coordinates(lab, coords, order=0, mode="nearest") for lab in labs]
        aff[:3, :3] = aff[:3, :3] / zoom
    return img, labs, aff, sp


def _tissue_mean(img: np.ndarray, vmap: np.ndarray, modality: str, *, sigma) -> np.ndarray:
    """Local mean of the soft tissue a vein displaces (epidural fat, CSF): bone is left out (normalised
    convolution), or a vein beside the canal wall would take the bone's brightness as its background."""
    soft = (vmap == 0) & ((img < 250) if modality == "CT" else True)
    w = ndimage.gaussian_filter(soft.astype(np.float32), sigma=sigma, mode="nearest")
    m = ndimage.gaussian_filter(np.where(soft, img, 0).astype(np.float32), sigma=sigma, mode="nearest")
    wide = ndimage.gaussian_filter(np.where(soft, img, 0).astype(np.float32), sigma=4 * np.asarray(sigma), mode="nearest")
    w_wide = ndimage.gaussian_filter(soft.astype(np.float32), sigma=4 * np.asarray(sigma), mode="nearest")
    fallback = wide / np.maximum(w_wide, 1e-3)
    return np.where(w > 0.05, m / np.maximum(w, 1e-6), fallback)


def generate_hybrid(image: Volume, vertebrae: Volume, cfg: HybridConfig) -> Phantom:
    """A hybrid case: ``image`` (real CT/MR) with a synthetic plexus in the canal its ``vertebrae`` (VerSe map on
    the same grid) outline. Deterministic for a given scan and ``cfg.seed``."""
    if image.shape != vertebrae.shape or not np.allclose(image.affine, vertebrae.affine, atol=1e-3):
        raise ValueError("vertebrae: the vertebra map must lie on the image's grid")
    sections = find_canal(vertebrae.array, affine=vertebrae.affine)
    return _insert(image, sections, cfg, vertebrae.array, "vertebra map", vertebrae.path)


def generate_hybrid_in_canal(image: Volume, centreline: np.ndarray, cfg: HybridConfig, *,
                             canal: np.ndarray | None = None, anchor: tuple[str, np.ndarray] | None = None,
                             top_level: str = "C3", source: str = "stage 1") -> Phantom:
    """A hybrid case of a scan with no vertebra map: the sections come from a canal centre line (stage 1's
    :class:`~pipeline.spine.CanalResult` ``centreline`` and, on CT, its ``canal`` mask on ``image``'s grid) through
    :func:`.canal.sections_from_centreline`. The veins are kept out of the scan's bone on CT (HU > 200), and within
    the canal's outline on MR (bone is not known there), but for the basivertebral and intervertebral veins.
    The written vertebra map holds each level's published body and lamina, only to name the levels."""
    sections = canal_sections.sections_from_centreline(centreline, anchor=anchor, top_level=top_level,
                                        canal=canal if cfg.modality == "CT" else None, affine=image.affine)
    return _insert(image, sections, cfg, None, source, "")


def _vein_value(rng, modality: str, img, near: np.ndarray, local_mean: np.ndarray):
    """What the veins look like: CT venous phase (HU); MR bright (enhanced: 1.4-2x the 99th percentile around the
    spine), dark (flow void: 0.2-0.5x the local tissue) or intermediate (a quarter to half of the way from the
    local tissue to the bright value). Returns the target map or value and its record."""
    if modality == "CT":
        value = rng.uniform(120, 230)
        return value, {"vein_value": round(float(value), 2)}
    bright = float(np.percentile(near, 99)) * rng.uniform(1.4, 2.0)
    pick = rng.random()
    if pick < 0.45:
        return bright, {"vein_value": round(bright, 2), "vein_polarity": "bright"}
    if pick < 0.85:
        f = rng.uniform(0.2, 0.5)
        return f * local_mean, {"vein_polarity": "dark", "vein_factor_of_tissue": round(float(f), 3)}
    f = rng.uniform(0.25, 0.5)
    return local_mean + f * (bright - local_mean), {"vein_polarity": "intermediate", "vein_value": round(bright, 2),
                                                     "vein_share_to_bright": round(float(f), 3)}


def vein_visibility(image: np.ndarray, mask: np.ndarray, *, shell_voxels: int = 2) -> float:
    """How visible the drawn veins are: |mean in the veins - mean around them| / SD around them.

    Parameters
    ----------
    image : (I, J, K) array
        The hybrid image.
    mask : (I, J, K) bool
        The veins (the truth).
    shell_voxels : int
        Width of the surround, voxels: the voxels within it of a vein that are not vein.

    Returns
    -------
    float
        The contrast-to-noise ratio of the veins against what surrounds them (texture and anatomy count as
        noise); about 0 where a dark vein lies in dark tissue (a flow void against bone on T2), NaN without veins.
    """
    if not mask.any():
        return float("nan")
    around = image[ndimage.binary_dilation(mask, iterations=shell_voxels) & ~mask].astype(np.float64)
    sd = float(around.std()) if around.size > 1 else 0.0
    if sd == 0:
        return float("inf")
    return round(abs(float(image[mask].astype(np.float64).mean()) - float(around.mean())) / sd, 3)


def _insert(image: Volume, sections: list[CanalSection], cfg: HybridConfig, vertebrae, source: str, vert_path: str):
    rng = np.random.default_rng(cfg.seed)
    axis = CanalAxis(sections)
    verts = _vertebrae(sections, axis)
    img, (vmap,), aff, src_sp = _crop_and_resample(image, [vertebrae], axis, sections, cfg)
    diam = draw_diameters(verts, rng, cfg.p_engorged)
    tubes = build_plexus(axis, verts, diam, rng)
    if vmap is not None:     # the vertebra map is the bone: only the basivertebral veins enter it
        free_kinds, keep, near_sel = ("basivertebral",), vmap == 0, ndimage.binary_dilation(vmap > 0, iterations=3)
    else:
        u, v, s = canal_sections.straight_coords(axis, img.shape, aff)
        vmap = canal_sections.level_map(verts, u, v, s)
        ap, cw = canal_profile(s, verts)
        near_sel = (np.abs(u) < 25) & (np.abs(v) < 25)
        if cfg.modality == "CT":  # the scan's own bone
            free_kinds, keep = ("basivertebral",), img <= 200.0
        else:                     # within the canal's outline, 1.5 mm grown; the foramina and bodies free
            free_kinds = ("basivertebral", "intervertebral")
            keep = (u / (cw / 2 + 1.5)) ** 2 + (v / (ap / 2 + 1.5)) ** 2 <= 1.0
        del u, v, s, ap, cw
    held = [t for t in tubes if t.kind not in free_kinds]
    free = [t for t in tubes if t.kind in free_kinds]
    sdf, frac = render_tubes(held, img.shape, aff)
    sdf_b, frac_b = render_tubes(free, img.shape, aff)
    mask = ((sdf <= 0) & keep) | (sdf_b <= 0)
    frac = np.maximum(frac * keep, frac_b)
    del sdf, sdf_b, frac_b
    sp = np.linalg.norm(aff[:3, :3], axis=0)
    psf = 0.42 * np.maximum(src_sp, sp) * rng.uniform(0.8, 1.2)        # FWHM about one source voxel
    weight = ndimage.gaussian_filter(frac, sigma=psf / sp, mode="nearest")
    bone = vmap if source == "vertebra map" else np.zeros(img.shape, np.uint8)
    local_mean = _tissue_mean(img, bone, cfg.modality, sigma=np.maximum(src_sp, sp) / sp)
    near = img[near_sel] if near_sel.any() else img.ravel()
    value, vein = _vein_value(rng, cfg.modality, img, near, local_mean)
    out = img + weight * (value - local_mean)
    dtype = image.array.dtype if np.issubdtype(image.array.dtype, np.integer) else np.float32
    dtype = np.int16 if dtype in (np.uint8, np.int8) else dtype      # room for bright veins and dark voids
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        out = np.clip(np.round(out), info.min, info.max)
    out = out.astype(dtype)
    vein["vein_cnr"] = vein_visibility(out, mask)

    meta = {"modality": cfg.modality, "warnings": []}
    shape = np.array(img.shape)

    def inside(p: np.ndarray) -> np.ndarray:
        ijk = (p - aff[:3, 3]) @ np.linalg.inv(aff[:3, :3]).T
        return np.all((ijk >= 1) & (ijk <= shape - 2), axis=1)

    centres = {v.name: s.body_centre.tolist() for v, s in zip(verts, sections)}
    ph = Phantom(cfg, Volume(out, aff, {**meta, "kind": "image"}), Volume(mask.astype(np.uint8), aff, {**meta, "kind": "plexus_mask"}),
                 Volume(frac, aff, {**meta, "kind": "plexus_fraction"}), Volume(vmap.astype(np.uint8), aff, {**meta, "kind": "vertebrae"}),
                 tubes, verts, axis, centres, truth_calibre(tubes, verts, inside))
    ph.info = {"source": {"image": cfg.image or image.path, "vertebrae": cfg.vertebrae or vert_path,
                          "spacing_mm": [round(float(x), 4) for x in src_sp]},
               "canal_source": source, **vein, "psf_sd_mm": [round(float(x), 3) for x in psf],
               "canal": [{"level": s.name, "found_by": s.found_by, "width_mm": round(s.canal_width, 2),
                          "ap_mm": round(s.canal_ap, 2), "centre_ras": np.round(s.centre, 2).tolist()} for s in sections]}
    return ph


# the top level of the registry's scans that ship neither a vertebra map nor SCT labels (a registry entry's
# ``top_level`` key wins); only the names and the published sizes they bring hang on it, never the scoring
TOP_LEVEL_GUESS = {"totalseg_mr": "T11", "sct_t2s": "C2"}


def hybrid_spacing(scan_spacing) -> float:
    """The scan's own resolution: its coarsest voxel side, at least 1 mm and at most 3 mm."""
    return float(np.clip(np.max(scan_spacing), 1.0, 3.0))


@dataclass
class ScanCanal:
    """A registry scan read once for all its hybrids: the image, and its vertebra map or canal centre line."""

    entry: ScanEntry
    image: Volume
    vertebrae: Volume | None = None
    centreline: np.ndarray | None = None
    canal: np.ndarray | None = None
    anchor: tuple | None = None
    source: str = "vertebra map"


def scan_canal(entry: ScanEntry, find_canal=None, *, max_off_mm: float = 10.0) -> ScanCanal:
    """Read ``entry`` (of :func:`pipeline.io.registry.read_registry`) and find its canal: the vertebra map when shipped; else stage 1
    (``find_canal``: :func:`pipeline.spine.find_canal`, passed in since stage 1 sits above this module), unless
    stage 1 finds none or lies more than ``max_off_mm`` (median) from the entry's ``canal_ref`` label, whose
    slice centroids are then the centre line."""
    if entry.image is None:
        raise ValueError(f"entry: scan {entry.id!r} has no image; a hybrid needs one")
    image = read_image(entry.image)
    if entry.vertebrae is not None:
        return ScanCanal(entry, image, same_grid(image, read_vertebrae(entry.vertebrae), "vertebra map", "image"))
    if find_canal is None:
        raise ValueError(f"find_canal: scan {entry.id!r} has no vertebra map; pass stage 1 (pipeline.spine.find_canal)")
    res = find_canal(image, entry.modality)
    line, canal, source = (res.centreline, res.canal, "stage 1") if res.found else (None, None, "")
    ref = entry.canal_ref
    if ref is not None:
        lab = same_grid(image, read_label_map(ref.path), "canal reference", "image")
        ref_line = canal_sections.label_centreline(lab.array, image.affine, ref.ids)
        off = np.inf
        if line is not None and len(ref_line):
            off = float(np.median(np.min(np.linalg.norm(line[:, None] - ref_line[None], axis=2), axis=1)))
        if len(ref_line) >= 2 and off > max_off_mm:
            why = f"off by {off:.0f} mm" if np.isfinite(off) else "found none"
            line, canal, source = ref_line, None, f"reference label {ref.path.name} (stage 1 {why})"
    if line is None:
        raise ValueError(f"entry: stage 1 finds no spine in scan {entry.id!r} ({res.reason}) and it has no canal_ref")
    return ScanCanal(entry, image, None, line, canal, canal_sections.sct_anchor(entry.image, image.affine, image.shape), source)


def generate_hybrid_from_scan(scan: ScanCanal | ScanEntry, seed: int, *, spacing: float | None = None,
                              find_canal=None) -> Phantom:
    """A hybrid of a registry scan at the scan's own resolution (:func:`hybrid_spacing`), from its vertebra map or
    else its canal centre line; deterministic per scan and ``seed``. ``scan`` is a :func:`scan_canal` (read once
    for many seeds) or a registry entry (read here, with ``find_canal`` for a scan without a vertebra map)."""
    if isinstance(scan, ScanEntry):
        scan = scan_canal(scan, find_canal)
    e = scan.entry
    cfg = HybridConfig(image=str(e.image), vertebrae=str(e.vertebrae or ""), modality=e.modality,
                       seed=int(seed), spacing=spacing or hybrid_spacing(scan.image.spacing))
    if scan.vertebrae is not None:
        ph = generate_hybrid(scan.image, scan.vertebrae, cfg)
    else:
        top = e.top_level or TOP_LEVEL_GUESS.get(e.id, "C3")
        ph = generate_hybrid_in_canal(scan.image, scan.centreline, cfg, canal=scan.canal, anchor=scan.anchor,
                                      top_level=top, source=scan.source)
        ph.info["levels_named_by"] = f"SCT labels ({scan.anchor[0]})" if scan.anchor else f"top level {top}"
    ph.info["scan_id"] = e.id
    return ph
