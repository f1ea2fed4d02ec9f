"""Segmentation metrics (the one Dice, clDice, HD95, centreline precision/recall) and the calibre score against a
phantom's truth: shared by ``plexus evaluate``, training validation and the demo."""

from __future__ import annotations

import numpy as np
from skimage.morphology import skeletonize

from ..export.tables import read_calibre_csv


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks (1.0 when both are empty)."""
    s = pred.sum() + truth.sum()
    return 1.0 if s == 0 else float(2 * np.logical_and(pred, truth).sum() / s)


def cldice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Centreline Dice (Shit et al., CVPR 2021): harmonic mean of topology precision and sensitivity."""
    if not pred.any() or not truth.any():
        return 1.0 if pred.any() == truth.any() else 0.0
    sp, st = skeletonize(pred), skeletonize(truth)
    tprec = np.logical_and(sp, truth).sum() / max(sp.sum(), 1)
    tsens = np.logical_and(st, pred).sum() / max(st.sum(), 1)
    return float(2 * tprec * tsens / max(tprec + tsens, 1e-9))


def hd95(pred: np.ndarray, truth: np.ndarray, spacing) -> float:
    """95th-percentile symmetric surface distance, mm (inf when one mask is empty)."""
    from scipy import ndimage

    if not pred.any() or not truth.any():
        return float("inf")
    sp = tuple(float(s) for s in spacing)
    surf_p = pred & ~ndimage.binary_erosion(pred)
    surf_t = truth & ~ndimage.binary_erosion(truth)
    dt_t = ndimage.distance_transform_edt(~surf_t, sampling=sp)
    dt_p = ndimage.distance_transform_edt(~surf_p, sampling=sp)
    return float(np.percentile(np.concatenate([dt_t[surf_p], dt_p[surf_t]]), 95))


def centreline_precision_recall(pred: np.ndarray, truth: np.ndarray, spacing, tol_mm: float = 1.5):
    """Fraction of predicted skeleton within ``tol_mm`` of the true skeleton, and the converse."""
    from scipy import ndimage

    if not pred.any() or not truth.any():
        return 0.0, 0.0
    sp = tuple(float(s) for s in spacing)
    sk_p, sk_t = skeletonize(pred), skeletonize(truth)
    d_t = ndimage.distance_transform_edt(~sk_t, sampling=sp)
    d_p = ndimage.distance_transform_edt(~sk_p, sampling=sp)
    return float((d_t[sk_p] <= tol_mm).mean()), float((d_p[sk_t] <= tol_mm).mean())


def calibre_errors(rows: list[dict], truth_csv) -> list[float]:
    """Measured minus true median diameter for every (level, channel) of the truth (NaN where missing)."""
    got = {(r["level"], r["channel"]): r["median_diameter_mm"] for r in rows}
    return [float(got.get((r["level"], r["channel"]), float("nan"))) - r["median_diameter_mm"]
            for r in read_calibre_csv(truth_csv)]


def calibre_score(rows: list[dict], truth_csv) -> dict:
    """Calibre error over every (level, channel) pair of the truth, the pairs a prediction missed included.

    A pair is missed when the measurement has no finite median diameter for it; its error is then its whole true
    diameter (as if measured 0 mm), so a prediction that loses a channel scores worse than one that finds it,
    however roughly.

    Parameters
    ----------
    rows : list of dict
        ``plexus measure`` rows (``level``, ``channel``, ``median_diameter_mm``).
    truth_csv : path
        The phantom's ``truth_calibre.csv``.

    Returns
    -------
    dict
        ``mae_mm`` (missed pairs counted, mm), ``mae_found_mm`` (over the found pairs only, NaN when none),
        ``missed`` and ``pairs`` (counts), ``errors_mm`` (measured minus true per truth row, NaN where missed).
    """
    errors = calibre_errors(rows, truth_csv)
    true = [r["median_diameter_mm"] for r in read_calibre_csv(truth_csv)]
    err = np.asarray(errors, dtype=np.float64)
    found = np.isfinite(err)
    absolute = np.where(found, np.abs(err), np.asarray(true, dtype=np.float64))
    return {"mae_mm": float(absolute.mean()) if len(err) else float("nan"),
            "mae_found_mm": float(np.abs(err[found]).mean()) if found.any() else float("nan"),
            "missed": int((~found).sum()), "pairs": len(err), "errors_mm": errors}
