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

The real scan may hold real epidural veins of its own; they are not in the truth. On 1-3 mm clinical scans
they are rarely resolved, but a model trained on hybrids learns that faint real veins are background.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.interpolate import make_interp_spline

from ..core.volume import Volume
from .anatomy import SpineAxis, Vertebra
from .canal import CanalSection, find_canal
from .phantom import Phantom, truth_calibre
from .vessels import build_plexus, draw_diameters, render_tubes


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


def _crop_and_resample(image: Volume, verts_map: Volume, axis: CanalAxis, sections, cfg: HybridConfig):
    """The scan cut to the canal's neighbourhood and, where coarser than ``cfg.spacing``, resampled finer."""
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
    img, vmap = image.array[sl].astype(np.float32), verts_map.array[sl]
    sp = image.spacing
    zoom = np.maximum(sp / cfg.spacing, 1.0)
    if np.any(zoom > 1.0):
        n_new = np.floor((np.array(img.shape) - 1) * zoom).astype(int) + 1
        grid = np.meshgrid(*[np.arange(n) / z for n, z in zip(n_new, zoom)], indexing="ij", sparse=True)
        coords = np.broadcast_arrays(*grid)
        img = ndimage.map_coordinates(img, coords, order=1, mode="nearest")
        vmap = ndimage.map_coordinates(vmap, coords, order=0, mode="nearest")
        aff[:3, :3] = aff[:3, :3] / zoom
    return img, vmap, aff, sp


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
    rng = np.random.default_rng(cfg.seed)
    sections = find_canal(vertebrae.array, affine=vertebrae.affine)
    axis = CanalAxis(sections)
    verts = _vertebrae(sections, axis)
    img, vmap, aff, src_sp = _crop_and_resample(image, vertebrae, axis, sections, cfg)
    diam = draw_diameters(verts, rng, cfg.p_engorged)
    tubes = build_plexus(axis, verts, diam, rng)
    soft = [t for t in tubes if t.kind != "basivertebral"]
    basi = [t for t in tubes if t.kind == "basivertebral"]
    sdf, frac = render_tubes(soft, img.shape, aff)
    sdf_b, frac_b = render_tubes(basi, img.shape, aff)
    out_of_bone = vmap == 0
    mask = ((sdf <= 0) & out_of_bone) | (sdf_b <= 0)
    frac = np.maximum(frac * out_of_bone, frac_b)
    del sdf, sdf_b, frac_b
    sp = np.linalg.norm(aff[:3, :3], axis=0)
    psf = 0.42 * np.maximum(src_sp, sp) * rng.uniform(0.8, 1.2)        # FWHM about one source voxel
    weight = ndimage.gaussian_filter(frac, sigma=psf / sp, mode="nearest")
    local_mean = _tissue_mean(img, vmap, cfg.modality, sigma=np.maximum(src_sp, sp) / sp)
    if cfg.modality == "CT":
        value = rng.uniform(120, 230)
    else:
        near = img[ndimage.binary_dilation(vmap > 0, iterations=3)] if (vmap > 0).any() else img.ravel()
        value = float(np.percentile(near, 99)) * rng.uniform(1.4, 2.0)
    out = img + weight * (value - local_mean)
    dtype = image.array.dtype if np.issubdtype(image.array.dtype, np.integer) else np.float32
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        out = np.clip(np.round(out), info.min, info.max)
    out = out.astype(dtype)

    meta = {"modality": cfg.modality, "warnings": []}
    shape = np.array(img.shape)

    def inside(p: np.ndarray) -> np.ndarray:
        ijk = (p - aff[:3, 3]) @ np.linalg.inv(aff[:3, :3]).T
        return np.all((ijk >= 1) & (ijk <= shape - 2), axis=1)

    centres = {v.name: s.body_centre.tolist() for v, s in zip(verts, sections)}
    ph = Phantom(cfg, Volume(out, aff, {**meta, "kind": "image"}), Volume(mask.astype(np.uint8), aff, {**meta, "kind": "plexus_mask"}),
                 Volume(frac, aff, {**meta, "kind": "plexus_fraction"}), Volume(vmap.astype(np.uint8), aff, {**meta, "kind": "vertebrae"}),
                 tubes, verts, axis, centres, truth_calibre(tubes, verts, inside))
    ph.info = {"source": {"image": cfg.image or image.path, "vertebrae": cfg.vertebrae or vertebrae.path,
                          "spacing_mm": [round(float(x), 4) for x in src_sp]},
               "vein_value": round(float(value), 2), "psf_sd_mm": [round(float(x), 3) for x in psf],
               "canal": [{"level": s.name, "found_by": s.found_by, "width_mm": round(s.canal_width, 2),
                          "ap_mm": round(s.canal_ap, 2), "centre_ras": np.round(s.centre, 2).tolist()} for s in sections]}
    return ph
