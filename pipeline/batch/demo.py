"""``plexus demo``: the main job on the shipped sample cases (``make demo``).

Runs ``plexus infer`` with the shipped model on ``sample_data/cases.csv`` (a CT and an MR phantom with
their vertebra maps), then prints, for each case, the per-level calibre table beside the phantom's truth and
the Dice of the segmentation against the true plexus mask.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..evaluation.metrics import dice
from ..export.tables import format_table, read_calibre_csv
from ..io.formats import read_label_map
from .local import run_batch
from .options import InferOptions


def _truth(case: Path) -> dict:
    """{(level, channel): true median diameter, mm} of a phantom case (empty without ``truth_calibre.csv``)."""
    path = case / "truth_calibre.csv"
    if not path.exists():
        return {}
    return {(r["level"], r["channel"]): r["median_diameter_mm"] for r in read_calibre_csv(path)}


def run_demo(sample_dir: Path, out_dir: Path, model: Path = Path("models/plexus")) -> int:
    """Run the pipeline on every sample case; return the exit code of the batch."""
    listing = Path(sample_dir) / "cases.csv"
    if not listing.exists():
        raise InputError(listing, "no sample case list")
    code = run_batch([str(listing)], Path(out_dir), InferOptions(model=Path(model), overwrite=True)).exit_code
    for row in csv.DictReader(open(listing)):
        case = (listing.parent / row["image"]).parent
        out = Path(out_dir) / row["case_id"]
        if not (out / "calibre.csv").exists():
            continue
        rows = read_calibre_csv(out / "calibre.csv")
        print(f"\n== {row['case_id']}: calibre per level and channel (mm)")
        print(format_table(rows))
        truth = _truth(case)
        errs = [abs(r["median_diameter_mm"] - truth[(r["level"], r["channel"])]) for r in rows
                if (r["level"], r["channel"]) in truth and np.isfinite(r["median_diameter_mm"])]
        seg = read_label_map(out / "segmentation.nii.gz").array == 1
        plexus_dice = dice(seg, read_label_map(case / "plexus_mask.nii.gz").array == 1)
        missing = len(truth) - len(errs)
        if truth:
            print(f"vs phantom truth: plexus Dice {plexus_dice:.3f}; median diameter mean abs error "
                  f"{np.mean(errs) if errs else float('nan'):.3f} mm over {len(errs)} (level, channel) pairs"
                  + (f", {missing} not measured" if missing else ""))
        print(f"outputs: {out}/  — open in 3D Slicer:  Slicer --python-script {out.resolve()}/load_in_slicer.py")
    print(f"\nBatch report: {(Path(out_dir) / 'report.html').resolve()} (open it in a web browser)")
    return code
