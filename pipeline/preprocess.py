"""Preprocessing shared by training and inference, and its exact inverse (MONAI dictionary transforms).

Forward: canonical orientation -> resampling to the model spacing -> intensity normalisation
(CT: HU window to [0, 1]; MR: percentile range to [0, 1]) -> crop to the body (foreground) with a margin.
:func:`invert` maps anything computed on the model grid (probabilities, labels) back onto the input's own
grid: same shape, same affine, voxel for voxel (MONAI's ``Invertd`` replays the recorded operations
backwards; labels use nearest-neighbour, probabilities linear interpolation).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    CropForegroundd,
    Invertd,
    MapTransform,
    Orientationd,
    ScaleIntensityRange,
    ScaleIntensityRangePercentiles,
    Spacingd,
)

from .io import Volume


@dataclass(frozen=True)
class PreprocessConfig:
    """How images are put on the model grid; stored in every model folder's ``metadata.json``.

    Parameters
    ----------
    spacing : (3,) float
        Model voxel size, mm.
    orientation : str
        Model axcodes (default ``'RAS'``).
    ct_window : (float, float)
        HU mapped to [0, 1] (clipped).
    mr_percentiles : (float, float)
        Intensity percentiles mapped to [0, 1] (clipped).
    crop_margin_mm : float or None
        Margin around the body for the foreground crop; ``None`` disables the crop.
    """

    spacing: tuple[float, float, float] = (0.8, 0.8, 0.8)
    orientation: str = "RAS"
    ct_window: tuple[float, float] = (-250.0, 750.0)
    mr_percentiles: tuple[float, float] = (0.5, 99.8)
    crop_margin_mm: float | None = 8.0

    def __post_init__(self):
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise ValueError(f"spacing: expected three positive values, got {self.spacing}")
        if self.ct_window[1] <= self.ct_window[0]:
            raise ValueError(f"ct_window: upper must exceed lower, got {self.ct_window}")
        lo, hi = self.mr_percentiles
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"mr_percentiles: expected 0 <= lower < upper <= 100, got {self.mr_percentiles}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass
class Prepared:
    """An image on the model grid: ``image`` (1, X, Y, Z) MetaTensor with its recorded operations."""

    image: MetaTensor
    transform: Compose
    input_shape: tuple[int, int, int]
    input_affine: np.ndarray
    modality: str

    @property
    def affine(self) -> np.ndarray:
        """Model-grid affine, voxel index -> RAS mm, (4, 4)."""
        return np.asarray(self.image.affine, dtype=np.float64)


def guess_modality(vol: Volume) -> str:
    """'CT' or 'MR' from metadata, else from intensities (CT has air near -1000 HU and negative fat)."""
    m = vol.meta.get("modality")
    if m in ("CT", "MR"):
        return m
    a = vol.array
    sample = a.ravel()[:: max(1, a.size // 200_000)].astype(np.float32)
    p1, p50 = np.percentile(sample, [1, 50])
    return "CT" if p1 < -500 and p50 < 400 else "MR"


class ModalityIntensityd(MapTransform):
    """CT: HU window to [0, 1]; MR: percentile range to [0, 1]; chosen per sample by ``data["modality"]``."""

    def __init__(self, keys, cfg: PreprocessConfig):
        super().__init__(keys)
        lo, hi = cfg.ct_window
        self.ct = ScaleIntensityRange(a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)
        lo, hi = cfg.mr_percentiles
        self.mr = ScaleIntensityRangePercentiles(lower=lo, upper=hi, b_min=0.0, b_max=1.0, clip=True)

    def __call__(self, data):
        d = dict(data)
        modality = d.get("modality")
        if modality not in ("CT", "MR"):
            raise ValueError(f"modality: expected 'CT' or 'MR', got {modality!r}")
        for key in self.key_iterator(d):
            d[key] = (self.ct if modality == "CT" else self.mr)(d[key])
        return d


def build_transform(cfg: PreprocessConfig, label_keys: tuple[str, ...] = ()) -> Compose:
    """The forward transform: key ``'image'`` (+ ``label_keys``, resampled nearest-neighbour).

    The sample dict carries ``'modality'`` ('CT' or 'MR') for the intensity step.
    """
    keys = ["image", *label_keys]
    modes = ["bilinear"] + ["nearest"] * len(label_keys)
    steps = [Orientationd(keys=keys, axcodes=cfg.orientation, labels=(("L", "R"), ("P", "A"), ("I", "S"))),
             Spacingd(keys=keys, pixdim=cfg.spacing, mode=modes, padding_mode="border"),
             ModalityIntensityd(keys="image", cfg=cfg)]
    if cfg.crop_margin_mm is not None:
        margin = [int(np.ceil(cfg.crop_margin_mm / s)) for s in cfg.spacing]
        steps.append(CropForegroundd(keys=keys, source_key="image", select_fn=_foreground, margin=margin,
                                     allow_smaller=True))
    return Compose(steps)


def _foreground(x):
    return x > 0.02


def to_metatensor(vol: Volume) -> MetaTensor:
    arr = np.ascontiguousarray(vol.array, dtype=np.float32)[None]
    return MetaTensor(torch.from_numpy(arr), affine=torch.as_tensor(vol.affine, dtype=torch.float64))


def preprocess(vol: Volume, cfg: PreprocessConfig, modality: str | None = None) -> Prepared:
    """Put ``vol`` on the model grid (see the module docstring)."""
    modality = modality or guess_modality(vol)
    transform = build_transform(cfg)
    out = transform({"image": to_metatensor(vol), "modality": modality})
    return Prepared(out["image"], transform, vol.shape, vol.affine.copy(), modality)


def invert(prep: Prepared, data: np.ndarray | torch.Tensor, *, nearest: bool) -> np.ndarray:
    """Map ``data`` (C, X, Y, Z) on the model grid back to the input grid -> (C, I, J, K) ndarray.

    Parameters
    ----------
    nearest : bool
        Nearest-neighbour (labels) instead of linear interpolation (probabilities, distances).
    """
    t = torch.as_tensor(np.asarray(data) if not torch.is_tensor(data) else data)
    if t.ndim != 4 or tuple(t.shape[1:]) != tuple(prep.image.shape[1:]):
        raise ValueError(f"data: expected (C, {', '.join(map(str, prep.image.shape[1:]))}), got {tuple(t.shape)}")
    dtype = t.dtype
    pred = MetaTensor(t.float())  # Invertd copies the geometry and recorded operations from the image
    inv = Invertd(keys="pred", transform=prep.transform, orig_keys="image", nearest_interp=nearest,
                  to_tensor=True)
    res = inv({"pred": pred, "image": prep.image})["pred"]
    arr = res.detach().cpu().numpy()
    if arr.shape[1:] != tuple(prep.input_shape):
        raise RuntimeError(f"inverse produced shape {arr.shape[1:]}, expected {prep.input_shape}")
    if not dtype.is_floating_point:
        arr = np.rint(arr).astype(np.int64)
    return arr
