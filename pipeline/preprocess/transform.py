"""Preprocessing shared by training and inference, and its exact inverse.

Forward: canonical orientation -> resampling to the model spacing -> intensity normalisation
(CT: HU window to [0, 1]; MR: percentile range to [0, 1]) -> crop to the body (foreground) with a margin.
Training runs it as MONAI dictionary transforms (:func:`build_transform`, labels resampled with the image);
inference runs the same steps with the same grids on arrays (:func:`preprocess`, through :mod:`.grid`),
several times faster and lighter on a whole-body CT, and :func:`invert` maps anything computed on the model grid
(probabilities, labels) back onto the input's own grid: same shape, same affine, voxel for voxel (labels
nearest-neighbour, probabilities linear). A test holds the two paths to the same numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import nibabel as nib
import numpy as np
import torch
from monai.transforms import (
    Compose,
    CropForegroundd,
    MapTransform,
    Orientationd,
    ScaleIntensityRange,
    ScaleIntensityRangePercentiles,
    Spacingd,
)

from ..core.volume import Volume
from .grid import model_grid, orientation, reachable_box, reoriented_affine, resample


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
    def from_dict(cls, d: dict) -> PreprocessConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass
class Prepared:
    """An image on the model grid, with what :func:`invert` needs to go back.

    ``image`` (1, X, Y, Z) float32 tensor and ``affine`` (voxel -> RAS mm) of the model grid; ``input_shape`` and
    ``input_affine`` of the scan; ``ornt`` the reorientation applied first; ``grid_affine`` and ``grid_shape`` of
    the resampled grid before the crop ``box`` (slices of it) was taken.
    """

    image: torch.Tensor
    affine: np.ndarray
    input_shape: tuple[int, int, int]
    input_affine: np.ndarray
    modality: str
    ornt: np.ndarray
    grid_affine: np.ndarray
    grid_shape: tuple[int, int, int]
    box: tuple[slice, slice, slice]


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


def normalise(arr: np.ndarray, modality: str, cfg: PreprocessConfig) -> np.ndarray:
    """The intensity step of :func:`build_transform` on an array (in place for float32): CT window or MR
    percentiles of the whole resampled image, mapped to [0, 1] and clipped."""
    if modality not in ("CT", "MR"):
        raise ValueError(f"modality: expected 'CT' or 'MR', got {modality!r}")
    lo, hi = cfg.ct_window if modality == "CT" else np.percentile(arr, cfg.mr_percentiles)
    arr -= np.float32(lo)
    if hi != lo:  # MONAI: a flat image is only shifted
        arr /= np.float32(hi - lo)
    return np.clip(arr, 0.0, 1.0, out=arr)


def foreground_box(arr: np.ndarray, margin) -> tuple[slice, slice, slice]:
    """``CropForegroundd``'s box: voxels above 0.02, grown by ``margin`` voxels, inside the image; empty when
    nothing is above (a scan of air: there is nothing for the network to see)."""
    fg = _foreground(arr)
    slow = int(np.argmax([abs(s) for s in fg.strides]))  # two passes over the volume, along its memory order
    plane = fg.any(axis=slow)
    rest = [a for a in range(3) if a != slow]
    hits = {slow: np.flatnonzero(fg.any(axis=tuple(rest))),
            rest[0]: np.flatnonzero(plane.any(axis=1)), rest[1]: np.flatnonzero(plane.any(axis=0))}
    if hits[slow].size == 0:
        return (slice(0, 0),) * 3
    return tuple(slice(max(int(hits[a][0]) - margin[a], 0), min(int(hits[a][-1]) + 1 + margin[a], arr.shape[a]))
                 for a in range(3))


def preprocess(vol: Volume, cfg: PreprocessConfig, modality: str | None = None) -> Prepared:
    """Put ``vol`` on the model grid (see the module docstring)."""
    modality = modality or guess_modality(vol)
    ornt = orientation(vol.affine, cfg.orientation)
    arr = nib.orientations.apply_orientation(np.asarray(vol.array), ornt)
    oriented = reoriented_affine(vol.affine, vol.shape, ornt)
    grid_affine, grid_shape = model_grid(oriented, arr.shape, cfg.spacing)
    img = normalise(resample(arr, oriented, grid_affine, grid_shape, order=1), modality, cfg)
    box = tuple(slice(0, n) for n in grid_shape)
    if cfg.crop_margin_mm is not None:
        box = foreground_box(img, [int(np.ceil(cfg.crop_margin_mm / s)) for s in cfg.spacing])
    affine = grid_affine.copy()
    affine[:3, 3] = grid_affine[:3, :3] @ [b.start for b in box] + grid_affine[:3, 3]
    crop = img[box]
    if crop.size < 0.5 * img.size:  # a view would keep the whole grid alive; a large crop stays a view (the
        crop = crop.copy(order="K")  # network reads it window by window); copied in its own memory order, no transpose
    image = torch.from_numpy(crop)[None]
    return Prepared(image, affine, vol.shape, vol.affine.copy(), modality, ornt, grid_affine, grid_shape, box)


def invert(prep: Prepared, data: np.ndarray | torch.Tensor, *, nearest: bool,
           out: np.ndarray | None = None) -> np.ndarray:
    """Map ``data`` (C, X, Y, Z) on the model grid back to the input grid -> (C, I, J, K) ndarray.

    Parameters
    ----------
    nearest : bool
        Nearest-neighbour (labels) instead of linear interpolation (probabilities, distances). Integer ``data``
        comes back as int64, anything else as float32; the margin cropped away comes back as 0.
    out : (C, I, J, K) float32 ndarray, optional
        Where to write float results (no copy of a large volume).
    """
    arr = data.detach().cpu().numpy() if torch.is_tensor(data) else np.asarray(data)
    if arr.ndim != 4 or tuple(arr.shape[1:]) != tuple(prep.image.shape[1:]):
        raise ValueError(f"data: expected (C, {', '.join(map(str, prep.image.shape[1:]))}), got {tuple(arr.shape)}")
    oriented = reoriented_affine(prep.input_affine, prep.input_shape, prep.ornt)
    out = np.empty((len(arr), *prep.input_shape), dtype=np.float32) if out is None else out
    # The model grid is the crop box in zeros (MONAI's Invertd pads it so). The box plus one plane of zeros where it
    # stops short of the grid's edge gives exactly the same samples (beyond the grid: its edge values, which are
    # the box's own where the box reaches the edge, else zeros), without the whole grid; and input voxels that
    # can only see those zeros are not sampled at all.
    lo = np.array([int(b.start > 0) for b in prep.box])
    hi = np.array([int(b.stop < n) for b, n in zip(prep.box, prep.grid_shape)])
    src_affine = prep.grid_affine.copy()
    start = np.array([b.start for b in prep.box]) - lo  # the padded box's first voxel on the model grid
    src_affine[:3, 3] = prep.grid_affine[:3, :3] @ start + prep.grid_affine[:3, 3]
    if len(arr) == 0:
        return out
    inner = tuple(slice(a, a + n) for a, n in zip(lo, arr.shape[1:]))
    # one padded source for every channel (its planes of zeros stay zero); None when the crop is empty (air)
    src = np.zeros(np.array(arr.shape[1:]) + lo + hi, np.float32) if arr[0].size else None
    oriented_shape = nib.orientations.apply_orientation(out[0], prep.ornt).shape
    sub = reachable_box(src.shape, src_affine, oriented, oriented_shape, lo, hi) if src is not None else None
    for c in range(len(arr)):  # one channel at a time: a whole-body CT's probabilities are gigabytes
        view = nib.orientations.apply_orientation(out[c], prep.ornt)  # out[c] in the model's axis order
        if not np.shares_memory(view, out[c]):
            raise RuntimeError("invert: the reoriented output is not a view")  # nibabel flips and transposes
        out[c].fill(0.0)  # in memory order: touching a fresh array's pages in strided slabs is several times slower
        if sub is None:
            continue
        src[inner] = arr[c]  # (np.pad is several times slower)
        dst = oriented.copy()
        dst[:3, 3] = oriented[:3, :3] @ [b.start for b in sub] + oriented[:3, 3]
        resample(src, src_affine, dst, [b.stop - b.start for b in sub], order=0 if nearest else 1, out=view[sub])
    if arr.dtype.kind in "iub":
        return np.rint(out).astype(np.int64)
    return out
