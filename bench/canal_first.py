"""Canal first (issue 19): stage 1 on every real scan, what the model marks inside and outside the canal, levels,
and held-out phantoms with and without the canal's crop.

1. **Stage 1 on every real scan of ``../shared/data``**: status, time, and the canal centre found on each axial
   slice against the centre of the reference labels there (TotalSegmentator's spinal cord 79 / total_mr 21,
   TPTBox's spinal canal 61, SCT's manual cord masks); a slice of the reference where stage 1 has no canal
   counts as missed.
2. **``plexus infer`` with the defaults** on the same scans: plexus marked in all, outside the canal stage 1
   found, the levels named (and, for the lumbar CT, TotalSegmentator's own vertebrae for comparison).
3. **Held-out phantoms** (seeds 800000+, as ``bench/model_eval.py``): Dice of the shipped model on the whole
   field (as before) and canal first (stage 1 -> crop -> network -> plexus within ``--canal-margin``), and the
   share of the true plexus inside the crop and inside the kept region.

Usage: ``python bench/canal_first.py [--cases 8] [--no-doc]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from common import ROOT, git_rev, machine, update_doc
from model_eval import _phantom_case

from pipeline.evaluation.canal import canal_centre_errors
from pipeline.evaluation.metrics import dice
from pipeline.inference.crop import crop_box, plexus_region
from pipeline.inference.model import load_model
from pipeline.inference.segmentation import prepare_in_canal, segment, segment_in_canal
from pipeline.io import Volume, read_image
from pipeline.spine import find_canal

SHARED = ROOT.parent / "shared" / "data"
# scan, reference, label ids, modality (None: no reference of the canal's contents)
SCANS = [
    ("totalsegmentator/example_ct.nii.gz", "totalsegmentator/example_seg_fast_force_split.nii.gz", (79,), "CT"),
    ("totalsegmentator/example_ct_sm.nii.gz", "totalsegmentator/example_seg.nii.gz", (79,), "CT"),
    ("dicom_totalseg_example_ct", "totalsegmentator/example_seg_dicom.nii.gz", (79,), "CT"),
    ("totalsegmentator/example_mr_sm.nii.gz", "totalsegmentator/example_seg_mr.nii.gz", (21,), "MR"),
    ("tptbox_samples/sample_mri/sub-mri_label-6_T2w.nii.gz",
     "tptbox_samples/sample_mri/sub-mri_seg-subreg_label-6_msk.nii.gz", (61,), "MR"),
    ("sct_testing_data/t2/t2.nii.gz", "sct_testing_data/t2/t2_seg-manual.nii.gz", (1,), "MR"),
    ("sct_testing_data/t1/t1w.nii.gz", "sct_testing_data/t1/t1w_seg-manual.nii.gz", (1,), "MR"),
    ("sct_testing_data/t2s/t2s_uncropped.nii.gz", None, (), "MR"),
    ("dicom_dicom2nifti_mr_sagittal/001_ground_truth.nii.gz", None, (), "MR"),
]
TOTALSEG_NAMES = {26: "S1", 27: "L5", 28: "L4", 29: "L3", 30: "L2", 31: "L1", 32: "T12", 33: "T11"}


def stage1_table() -> list[str]:
    rows = ["| scan | modality | status | stage 1 (s) | reference slices found | centre error median / 90th / max (mm) |",
            "|---|---|---|---|---|---|"]
    for scan, ref, ids, modality in SCANS:
        vol = read_image(SHARED / scan)
        t0 = time.perf_counter()
        res = find_canal(vol, modality)
        dt = time.perf_counter() - t0
        cell = "(no reference)"
        found = ""
        if ref is not None:
            r = nib.load(SHARED / ref)
            errs = canal_centre_errors(res.centreline, Volume(np.isin(np.asarray(r.dataobj), ids).astype(np.uint8), r.affine))
            fin = errs[np.isfinite(errs)]
            found = f"{len(fin)} / {len(errs)}"
            cell = (f"{np.median(fin):.1f} / {np.percentile(fin, 90):.1f} / {fin.max():.1f}" if len(fin) else "none")
        status = res.status if res.found else f"{res.status}: {res.reason}"
        rows.append(f"| `{scan}` | {modality} | {status} | {dt:.2f} | {found} | {cell} |")
    return rows


def infer_table(tmp: Path, margin: float) -> list[str]:
    out = tmp / "infer"
    inputs = [str(SHARED / s) for s, *_ in SCANS]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline.cli", "-q", "infer", *inputs, "-o", str(out), "--canal-margin",
                    str(margin)], cwd=ROOT,
                   check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    suffix = "" if margin == 4.0 else f"_margin{margin:g}"
    rows = [f"`plexus infer --canal-margin {margin:g}` (otherwise the defaults) on the {len(inputs)} scans: "
            f"{wall:.0f} s in all.", "",
            "| case | status | plexus (ml) | outside the canal (ml) | levels named |", "|---|---|---|---|---|"]
    for d in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")):
        meas = json.loads((d / "measurements.json").read_text())
        shutil.copy(d / "qc.png", ROOT / "docs" / "images" / f"canal_first_{d.name}{suffix}.png")
        if meas.get("status", "ok") != "ok":
            rows.append(f"| {d.name} | {meas['status']} | 0 | 0 | - |")
            continue
        seg = nib.load(d / "segmentation.nii.gz")
        sp = np.prod(seg.header.get_zooms()[:3])
        plexus = np.asarray(seg.dataobj) == 1
        canal = np.asarray(nib.load(d / "canal.nii.gz").dataobj) > 0
        levels = [k for k in meas.get("vertebra_axis_mm", {})] or ["NA"]
        rows.append(f"| {d.name} | ok | {plexus.sum() * sp / 1000:.2f} | {(plexus & ~canal).sum() * sp / 1000:.2f} | "
                    f"{', '.join(levels)} |")
    rows += ["", "QC pictures (the canal stage 1 found in yellow, the plexus kept in red):", ""]
    rows += [f"![{d.name}](images/canal_first_{d.name}{suffix}.png)" for d in sorted(out.iterdir())
             if d.is_dir() and not d.name.startswith(".") and (d / "qc.png").exists()]
    ts = np.asarray(nib.load(SHARED / "totalsegmentator/spine_report/totalseg.nii.gz").dataobj)
    present = [TOTALSEG_NAMES[v] for v in sorted(set(np.unique(ts)) & set(TOTALSEG_NAMES), reverse=True)]
    rows += ["", f"TotalSegmentator's vertebrae of `example_ct` (`spine_report/totalseg.nii.gz`): {', '.join(present)}."]
    return rows


def phantom_table(n: int, model_dir: Path, margin: float) -> list[str]:
    model, meta = load_model(model_dir, "cpu")
    rows = ["| phantom | Dice, whole field | Dice, canal first | true plexus in the crop | in the kept region |",
            "|---|---|---|---|---|"]
    stats = []
    for k in range(n):
        name, ph, cfg = _phantom_case(k)
        truth = ph.mask.array > 0
        whole = segment(ph.image, model, meta, modality=cfg.modality).labels.array == 1
        canal = find_canal(ph.image, cfg.modality)
        if not canal.found:
            rows.append(f"| {name} | {dice(whole, truth):.3f} | {canal.status} | - | - |")
            stats.append((dice(whole, truth), 0.0, 0.0, 0.0))
            continue
        crop = prepare_in_canal(ph.image, canal, meta, modality=cfg.modality)
        first = segment_in_canal(ph.image, model, meta, crop, roi_mm=margin).labels.array == 1
        inside = np.zeros_like(truth)
        inside[crop_box(canal.canal, ph.image.affine, 25.0)] = True
        kept = plexus_region(canal.canal, ph.image.spacing, margin)
        s = (dice(whole, truth), dice(first, truth), truth[inside].sum() / truth.sum(), truth[kept].sum() / truth.sum())
        stats.append(s)
        rows.append(f"| {name} | {s[0]:.3f} | {s[1]:.3f} | {100 * s[2]:.1f} % | {100 * s[3]:.1f} % |")
    m = np.mean(stats, axis=0)
    rows.append(f"| **mean** | **{m[0]:.3f}** | **{m[1]:.3f}** | **{100 * m[2]:.1f} %** | **{100 * m[3]:.1f} %** |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=8, help="held-out phantoms (default 8)")
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "plexus")
    ap.add_argument("--canal-margin", type=float, default=4.0, help="plexus kept within this of the canal (mm)")
    ap.add_argument("--no-doc", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = ap.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"error: {SHARED}: the real scans are not there (../shared/data)")
    with tempfile.TemporaryDirectory() as tmp:
        s1 = stage1_table()
        print("\n".join(s1))
        inf = infer_table(Path(tmp), args.canal_margin)
        print("\n".join(inf))
    ph = phantom_table(args.cases, args.model, args.canal_margin)
    print("\n".join(ph))
    text = "\n".join([
        "## Canal first: stage 1 on real scans, the plexus inside the canal, held-out phantoms"
        + ("" if args.canal_margin == 4.0 else f" (`--canal-margin {args.canal_margin:g}`)"), "",
        f"Measured at commit {git_rev()} on {machine()} with `python bench/canal_first.py --cases {args.cases}`.", "",
        "**Stage 1 on every real scan** (canal centre per axial slice against the reference's centre; the SCT and",
        "TotalSegmentator references are the cord, whose centre lies within a few mm of the canal's):", "", *s1, "",
        f"**What the shipped model marks, canal first** (`--canal-margin {args.canal_margin:g}`):", "", *inf, "",
        f"**Phantoms of the training generator, fresh seeds** (800000+, `{args.model.name}`; not independent: a",
        "held-out seed of the generator the model learned is not a held-out source):", "", *ph])
    if not args.no_doc:
        key = "Canal first: stage 1 on real scans, plexus inside the canal, held-out phantoms"
        update_doc(key + ("" if args.canal_margin == 4.0 else f", margin {args.canal_margin:g} mm"), text)


if __name__ == "__main__":
    main()
