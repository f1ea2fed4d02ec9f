"""``plexus demo``: the main job on the shipped sample cases (``make demo``).

Runs ``plexus infer`` with the shipped model on ``sample_data/cases.csv`` (a CT and an MR phantom with
their vertebra maps), then prints, for each case, the per-level calibre table beside the phantom's truth and
the Dice of the segmentation against the true plexus mask.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from .errors import InputError
from .export.tables import format_table
from .io import read_label_map


def _truth(case: Path) -> dict:
    path = case / "truth_calibre.csv"
    if not path.exists():
        return {}
    return {(r["level"], r["channel"]): float(r["median_diameter_mm"]) for r in csv.DictReader(open(path))}


def run_demo(sample_dir: Path, out_dir: Path, model: Path = Path("models/plexus_phantom")) -> int:
    """Run the pipeline on every sample case; return the exit code of the batch."""
    from .batch import run_batch

    listing = Path(sample_dir) / "cases.csv"
    if not listing.exists():
        raise InputError(listing, "no sample case list")
    args = argparse.Namespace(model=model, device="auto", vertebrae=None, modality="auto", series=None, overlap=None,
                              tta=None, save_probabilities=False, overwrite=True)
    code = run_batch([str(listing)], Path(out_dir), args)
    for row in csv.DictReader(open(listing)):
        case = (listing.parent / row["image"]).parent
        out = Path(out_dir) / row["case_id"]
        if not (out / "calibre.csv").exists():
            continue
        rows = list(csv.DictReader(open(out / "calibre.csv")))
        for r in rows:
            for k in r:
                if k not in ("level", "channel"):
                    r[k] = float(r[k]) if r[k] else float("nan")
            r["n_points"] = int(r["n_points"])
        print(f"\n== {row['case_id']}: calibre per level and channel (mm)")
        print(format_table(rows))
        truth = _truth(case)
        errs = [abs(r["median_diameter_mm"] - truth[(r["level"], r["channel"])]) for r in rows
                if (r["level"], r["channel"]) in truth and np.isfinite(r["median_diameter_mm"])]
        seg = read_label_map(out / "segmentation.nii.gz").array == 1
        true_mask = read_label_map(case / "plexus_mask.nii.gz").array == 1
        dice = 2 * np.logical_and(seg, true_mask).sum() / max(seg.sum() + true_mask.sum(), 1)
        missing = len(truth) - len(errs)
        if truth:
            print(f"vs phantom truth: plexus Dice {dice:.3f}; median diameter mean abs error "
                  f"{np.mean(errs) if errs else float('nan'):.3f} mm over {len(errs)} (level, channel) pairs"
                  + (f", {missing} not measured" if missing else ""))
        print(f"outputs: {out}/  — open in 3D Slicer:  Slicer --python-script {out.resolve()}/load_in_slicer.py")
    print(f"\nBatch report: {(Path(out_dir) / 'report.html').resolve()} (open it in a web browser)")
    return code
