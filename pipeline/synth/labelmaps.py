"""Label maps for domain-randomised training (:mod:`.randomise`): structures, the veins' partial volume, classes.

A :class:`LabelCase` is a label map on an axis-aligned RAS grid at the model's spacing, from one of two sources:

* **our phantoms** (:func:`phantom_label_case`): the generator's own tissue codes (air, fat, soft tissue, muscle,
  CSF, cord, disc, cancellous and cortical bone, posterior elements, epidural fat, roots, enhanced vessels);
* **real scans** (:func:`scan_label_case`): a hybrid of the scan (:mod:`.hybrid`, a synthetic plexus in its
  real canal) whose image is cut into ``n_classes`` intensity classes after a 1 mm smoothing, so the map holds
  the scan's real anatomy (bone, muscle, organs, the table) and none of its intensities. The hybrid's own image
  is kept beside it (``image``, normalised as the model's preprocessing does), for the share of samples that train
  on a real scan's texture with the plexus drawn in (``data.randomised.p_real_image``).

Label values: 1-13 phantom tissues (tissue code + 1), 20-35 intensity classes of a real scan, ``PLEXUS`` the
veins. ``centres`` gives each label's intensity in its source's own contrast (CT window or MR percentiles, [0, 1]),
used when :mod:`.randomise` keeps the source's contrast. Training classes: 0 background, 1 plexus, 2 vertebral bone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..core.atomic import atomic_path
from ..core.volume import Volume, reorient
from .hybrid import HybridConfig, generate_hybrid
from .phantom import CSF, CT_HU, MR_SI, VESSEL, PhantomConfig, generate_phantom

PLEXUS = 50
DISTRACTOR = VESSEL + 1                  # the phantoms' enhanced vessels that are not plexus
CSF_LABEL = CSF + 1
SCAN_CLASSES = 20                         # first label of a real scan's intensity classes
CT_WINDOW = (-250.0, 750.0)              # the model's CT window (HU), for the source-contrast centres
#: Version of the label maps made here, written into every saved case. Raised whenever a change makes earlier
#: maps wrong, so a training cache made before it is remade (2: a vertebra cut to a fragment by the field of
#: view is left out of the canal, :func:`.canal.find_canal`; version 1 drew veins behind the spine there).
LABEL_MAP_VERSION = 2


@dataclass
class LabelCase:
    """A label map for randomised training.

    Attributes
    ----------
    labels : (X, Y, Z) uint8 array
        Structure labels (see the module docstring).
    fraction : (X, Y, Z) float32 array
        Fraction of each voxel inside a vein, [0, 1].
    classes : (X, Y, Z) uint8 array
        Training target: 0 background, 1 plexus, 2 vertebral bone.
    spacing : (3,) float, mm
        Voxel size along R, A, S.
    centres : dict
        Label -> intensity in the source's contrast, [0, 1].
    source : str
        Where the map came from: ``phantom:<seed>`` or the real scan's id (``configs/real_scans.yaml``).
    image : (X, Y, Z) float32 array or None
        A real scan's hybrid image in [0, 1] (CT window or MR percentiles, as the model's preprocessing), the
        plexus drawn in; None for a phantom's map.
    """

    case_id: str
    labels: np.ndarray
    fraction: np.ndarray
    classes: np.ndarray
    spacing: tuple[float, float, float]
    centres: dict[int, float] = field(default_factory=dict)
    source: str = ""
    image: np.ndarray | None = None

    def __post_init__(self):
        if not (self.labels.shape == self.fraction.shape == self.classes.shape):
            raise ValueError(f"labels, fraction, classes: shapes differ ({self.labels.shape}, {self.fraction.shape}, "
                             f"{self.classes.shape})")
        if self.image is not None and self.image.shape != self.labels.shape:
            raise ValueError(f"image: shape {self.image.shape} differs from the labels' {self.labels.shape}")


def _on_model_grid(vols: list[Volume], spacing: float, orders: list[int]) -> list[np.ndarray]:
    """Volumes of one grid, stored RAS, resampled to ``spacing`` mm isotropic (labels nearest, fractions linear)."""
    out = []
    for vol, order in zip(vols, orders):
        v = reorient(vol, "RAS")
        zoom = np.asarray(v.spacing) / spacing
        a = v.array
        if np.any(np.abs(zoom - 1) > 0.02):
            a = ndimage.zoom(a.astype(np.float32) if order else a, zoom, order=order, mode="nearest")
        out.append(a)
    return out


def phantom_label_case(cfg: PhantomConfig, *, spacing: float = 0.8) -> LabelCase:
    """The label map of one of our phantoms (``cfg`` drawn at ``spacing`` mm, RAS; the image is not kept)."""
    ph = generate_phantom(replace(cfg, spacing=(spacing,) * 3, orientation="RAS", render_image=True))
    tissues, mask, frac, verts = _on_model_grid([ph.tissues, ph.mask, ph.fraction, ph.vertebrae], spacing, [0, 0, 1, 0])
    labels = tissues.astype(np.uint8) + 1
    labels[mask > 0] = PLEXUS
    if cfg.modality == "CT":
        lo, hi = CT_WINDOW
        centres = {k + 1: float(np.clip((hu - lo) / (hi - lo), 0, 1)) for k, hu in CT_HU.items()}
        centres[DISTRACTOR] = centres[PLEXUS] = (190 - lo) / (hi - lo)
    else:
        centres = {k + 1: si / 1000.0 for k, si in MR_SI.items()}
        centres[DISTRACTOR] = centres[PLEXUS] = 0.85
    classes = np.where(mask > 0, 1, np.where(verts > 0, 2, 0)).astype(np.uint8)
    return LabelCase(f"phantom_{cfg.seed:06d}", labels, frac.astype(np.float32), classes, (spacing,) * 3, centres,
                     f"phantom:{cfg.seed}")


def scan_label_case(image: Volume, vertebrae: Volume, *, modality: str, seed: int, scan_id: str,
                    spacing: float = 0.8, n_classes: int = 10, keep_image: bool = True) -> LabelCase:
    """The label map of a hybrid of a real scan: its intensity classes, the synthetic plexus, its vertebrae.

    Parameters
    ----------
    image, vertebrae : Volume
        The real scan and its vertebra map (VerSe ids) on the same grid.
    modality : {'CT', 'MR'}
    seed : int
        Draws the plexus (:func:`.hybrid.generate_hybrid`).
    scan_id : str
        The scan's id in ``configs/real_scans.yaml`` (recorded as the case's source).
    spacing : float, mm
        The model grid's voxel size.
    n_classes : int
        Intensity classes the (1 mm smoothed) image is cut into, at its quantiles.
    keep_image : bool
        Keep the hybrid's own image (``image``); False for a stand-in image (a vertebra map without its scan).
    """
    if not 2 <= n_classes <= 16:
        raise ValueError(f"n_classes: expected 2 to 16, got {n_classes}")
    ph = generate_hybrid(image, vertebrae, HybridConfig(modality=modality, seed=seed, spacing=spacing))
    img, mask, frac, verts = _on_model_grid([ph.image, ph.mask, ph.fraction, ph.vertebrae], spacing, [1, 0, 1, 0])
    real = _normalised(img.astype(np.float32), modality) if keep_image else None
    norm = _normalised(ndimage.gaussian_filter(img.astype(np.float32), 1.0 / spacing), modality)
    edges = np.unique(np.percentile(norm, np.linspace(0, 100, n_classes + 1)[1:-1]))
    cls = np.digitize(norm, edges).astype(np.uint8)
    labels = (SCAN_CLASSES + cls).astype(np.uint8)
    centres = {SCAN_CLASSES + k: float(norm[cls == k].mean()) for k in np.unique(cls)}
    plexus = mask > 0
    centres[PLEXUS] = float(norm[plexus].mean()) if plexus.any() else 0.8
    labels[plexus] = PLEXUS
    classes = np.where(plexus, 1, np.where(verts > 0, 2, 0)).astype(np.uint8)
    return LabelCase(f"{scan_id}_{seed:06d}", labels, frac.astype(np.float32), classes, (spacing,) * 3, centres,
                     scan_id, real)


def _normalised(img: np.ndarray, modality: str) -> np.ndarray:
    """[0, 1] as the model's preprocessing makes of a scan: the CT window, or the MR's 0.5-99.8th percentiles."""
    if modality == "CT":
        return np.clip((img - CT_WINDOW[0]) / (CT_WINDOW[1] - CT_WINDOW[0]), 0, 1)
    lo, hi = np.percentile(img, [0.5, 99.8])
    return np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)


def save_label_case(case: LabelCase, path: str | Path) -> Path:
    """Write a label case as one compressed ``.npz`` (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = np.array(list(case.centres), np.int32)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            extra = {} if case.image is None else {"image": case.image.astype(np.float16)}
            np.savez_compressed(fh, labels=case.labels, fraction=case.fraction.astype(np.float16), classes=case.classes,
                                spacing=np.asarray(case.spacing), centre_keys=keys,
                                centre_values=np.array([case.centres[k] for k in keys], np.float64),
                                case_id=case.case_id, source=case.source, version=LABEL_MAP_VERSION, **extra)
    return path


def load_label_case(path: str | Path) -> LabelCase:
    with np.load(path) as z:
        centres = {int(k): float(v) for k, v in zip(z["centre_keys"], z["centre_values"])}
        return LabelCase(str(z["case_id"]), z["labels"], z["fraction"].astype(np.float32), z["classes"],
                         tuple(float(x) for x in z["spacing"]), centres, str(z["source"]),
                         z["image"].astype(np.float32) if "image" in z.files else None)


def is_current(path: str | Path, *, with_image: bool = False) -> bool:
    """Whether a saved label case can be reused: it exists, is of this :data:`LABEL_MAP_VERSION` (caches written
    before the version was recorded are version 1), and keeps its real scan's hybrid image where ``with_image``."""
    path = Path(path)
    if not path.exists():
        return False
    with np.load(path) as z:
        version = int(z["version"]) if "version" in z.files else 1
        return version == LABEL_MAP_VERSION and (not with_image or "image" in z.files)
