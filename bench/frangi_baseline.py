"""A thresholded-vesselness baseline inside the stage-1 canal, for ``bench/by_source.py`` (issue 20).

Frangi vesselness (scikit-image, sigmas 0.5/1/1.5/2.5 mm on an isotropic copy of the canal's box) restricted to
the canal stage 1 found, grown by the same margin the model's plexus is kept within (``--canal-margin``, 4 mm).
The box's intensities are first scaled to [0, 1] by their 1st and 99th percentiles inside the canal, so one
threshold serves scans of any units. CT veins are bright; on MR both polarities count (enhanced veins are bright,
flow voids dark: the larger of the two responses). One threshold per modality, tuned for the mean Dice on training
cases only (:func:`tune`), never on a test case.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import frangi

from pipeline.core.volume import Volume
from pipeline.inference.crop import crop_box

SIGMAS_MM = (0.5, 1.0, 1.5, 2.5)


def vesselness(image: Volume, region: np.ndarray, modality: str) -> np.ndarray:
    """(I, J, K) float32 Frangi response on ``image``'s grid, 0 outside ``region`` (bool, the grown canal)."""
    out = np.zeros(image.shape, np.float32)
    if not region.any():
        return out
    box = crop_box(region, image.affine, 3.0 + max(SIGMAS_MM))
    sub = np.asarray(image.array[box], dtype=np.float32)
    inside = region[box]
    lo, hi = np.percentile(sub[inside], [1, 99])
    sub = np.clip((sub - lo) / max(hi - lo, 1e-6), -0.5, 1.5)
    sp = np.asarray(image.spacing, float)
    iso = max(float(sp.min()), 0.5)
    zoom = sp / iso
    n_iso = np.maximum(np.round(np.array(sub.shape) * zoom).astype(int), 1)
    if np.allclose(zoom, 1.0):
        work = sub
    else:
        grid = np.meshgrid(*[np.arange(n) * (s - 1) / max(n - 1, 1) for n, s in zip(n_iso, sub.shape)],
                           indexing="ij", sparse=True)
        work = ndimage.map_coordinates(sub, np.broadcast_arrays(*grid), order=1, mode="nearest")
    sig = [s / iso for s in SIGMAS_MM]
    v = frangi(work, sigmas=sig, black_ridges=False)
    if modality == "MR":
        v = np.maximum(v, frangi(work, sigmas=sig, black_ridges=True))
    if work is not sub:  # back onto the box's own voxels
        grid = np.meshgrid(*[np.arange(s) * (n - 1) / max(s - 1, 1) for n, s in zip(n_iso, sub.shape)],
                           indexing="ij", sparse=True)
        v = ndimage.map_coordinates(v, np.broadcast_arrays(*grid), order=1, mode="nearest")
    out[box] = np.where(inside, v, 0.0)
    return out


def tuning_record(v: np.ndarray, truth: np.ndarray, modality: str, source: str) -> dict:
    """What tuning needs of one training case: the responses inside the region and the truth there, and the
    whole truth's size (truth outside the region is a miss at any threshold)."""
    sel = v > 0
    return {"modality": modality, "source": source, "v": v[sel].astype(np.float32), "t": truth[sel].astype(bool),
            "n_truth": int(truth.sum())}


def _dice_at(rec: dict, thr: float) -> float:
    p = rec["v"] > thr
    denom = p.sum() + rec["n_truth"]
    return float(2 * (p & rec["t"]).sum() / denom) if denom else 1.0


def tune(records: list[dict], modality: str, exclude: str | None = None) -> tuple[float, float, int]:
    """The threshold with the best mean Dice over the training ``records`` of ``modality`` (those of scan
    ``exclude`` left out). Returns (threshold, its mean training Dice, cases used); NaN when none."""
    use = [r for r in records if r["modality"] == modality and r["source"] != exclude and len(r["v"])]
    if not use:
        return float("nan"), float("nan"), 0
    pooled = np.concatenate([r["v"] for r in use])
    levels = np.unique(np.quantile(pooled, np.linspace(0.3, 0.999, 90)))
    scores = [np.mean([_dice_at(r, t) for r in use]) for t in levels]
    k = int(np.argmax(scores))
    return float(levels[k]), float(scores[k]), len(use)
