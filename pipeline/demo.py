"""``plexus demo``: the main job on the shipped sample cases (``make demo``).

For every case of ``sample_data/``: load the scan, put it on the model grid (orientation, spacing,
intensity), measure the plexus mask with its vertebra map, write every output and print the per-level
calibre table beside the phantom's truth.
"""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

from .errors import InputError
from .export.report import build_report
from .export.tables import format_table
from .io import read_image
from .measure_case import measure_case
from .preprocess import PreprocessConfig, preprocess

log = logging.getLogger("plexus")


def sample_cases(sample_dir: Path) -> list[Path]:
    """Case folders of ``sample_dir`` (each holds an ``image.nii.gz``)."""
    cases = sorted(p.parent for p in Path(sample_dir).glob("*/image.nii.gz"))
    if not cases:
        raise InputError(sample_dir, "no sample cases (folders with image.nii.gz) found")
    return cases


def _truth(case: Path) -> dict:
    path = case / "truth_calibre.csv"
    if not path.exists():
        return {}
    return {(r["level"], r["channel"]): float(r["median_diameter_mm"]) for r in csv.DictReader(open(path))}


def run_demo(sample_dir: Path, out_dir: Path) -> int:
    """Run the pipeline on every sample case; return the exit code."""
    for case in sample_cases(sample_dir):
        t0 = time.perf_counter()
        vol = read_image(case / "image.nii.gz")
        prep = preprocess(vol, PreprocessConfig())
        out = Path(out_dir) / case.name
        res = measure_case(case / "plexus_mask.nii.gz", out, image_path=case / "image.nii.gz",
                           vertebrae_path=case / "vertebrae.nii.gz")
        truth = _truth(case)
        print(f"\n== {case.name}: {prep.modality} {vol.shape} {''.join(vol.axcodes)}, spacing "
              f"{tuple(round(float(s), 2) for s in vol.spacing)} mm -> model grid {tuple(prep.image.shape[1:])}; "
              f"{time.perf_counter() - t0:.1f} s")
        print(format_table(res.rows))
        errs = [abs(r["median_diameter_mm"] - truth[(r["level"], r["channel"])]) for r in res.rows
                if (r["level"], r["channel"]) in truth]
        if errs:
            print(f"median diameter vs phantom truth: mean abs error {sum(errs) / len(errs):.3f} mm over "
                  f"{len(errs)} (level, channel) pairs")
        print(f"outputs: {out}/ (calibre.csv, centerlines.json, measurements.json, qc.png, Slicer files)")
    report = build_report(out_dir)
    print(f"\nBatch report: {report.resolve()} (open it in a web browser)")
    print(f"Open a case in 3D Slicer:  Slicer --python-script {Path(out_dir).resolve()}/<case>/load_in_slicer.py")
    return 0
