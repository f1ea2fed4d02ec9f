"""The whole pipeline on the team's real public scans (../shared/data): read, preprocess, infer, measure, export.

What is checked is what a real scan can check: nothing crashes on real intensities, spacings and storage
orders, the outputs lie exactly on each input's grid, and levels named from a supplied real vertebra map are
right (ordered along the spine as the map says). The shipped model was trained on phantoms only and these
scans are 1-3 mm: the plexus it finds there is not a measurement (see docs/real_data.md).
Skipped, with the reason, where ../shared/data is absent.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.core.levels import ORDER
from pipeline.io import read_image, read_label_map
from tests.conftest import ROOT, SHARED_DATA

# case id: (image, vertebra map or None, modality expected from the intensities)
CASES = {
    "totalseg_ct": ("totalsegmentator/example_ct_sm.nii.gz", "totalsegmentator/example_seg.nii.gz", "CT"),
    "totalseg_mr": ("totalsegmentator/example_mr_sm.nii.gz", None, "MR"),
    "sct_t2": ("sct_testing_data/t2/t2.nii.gz", None, "MR"),
    "tptbox_mr": ("tptbox_samples/sample_mri/sub-mri_label-6_T2w.nii.gz",
                  "tptbox_samples/sample_mri/sub-mri_seg-vert_label-6_msk.nii.gz", "MR"),
    "dicom_ct": ("dicom_totalseg_example_ct", "totalsegmentator/example_seg_dicom.nii.gz", "CT"),
}


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    missing = [rel for rel, *_ in CASES.values() if not (SHARED_DATA / rel).exists()]
    if missing:
        pytest.skip(f"real data not available: {SHARED_DATA / missing[0]} is absent (the team's ../shared/data)")
    d = tmp_path_factory.mktemp("real")
    listing = d / "cases.csv"
    with open(listing, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case_id", "image", "vertebrae"])
        for cid, (img, vert, _) in CASES.items():
            w.writerow([cid, SHARED_DATA / img, SHARED_DATA / vert if vert else ""])
    out = d / "out"
    code = main(["-q", "infer", str(listing), "-o", str(out), "--model", str(ROOT / "models" / "plexus"),
                 "--no-tta", "--device", "cpu"])
    return code, out


def test_every_real_scan_finishes(real_run):
    code, out = real_run
    run = json.loads((out / "run.json").read_text())
    assert code == 0 and not run["failures"], run["failures"]
    assert set(run["timings"]) == set(CASES)


@pytest.mark.parametrize("cid", sorted(CASES))
def test_outputs_lie_on_the_input_grid(real_run, cid):
    _, out = real_run
    image = read_image(SHARED_DATA / CASES[cid][0])
    seg = read_label_map(out / cid / "segmentation.nii.gz")
    assert seg.shape == image.shape
    np.testing.assert_allclose(seg.affine, image.affine, atol=1e-4)
    meas = json.loads((out / cid / "measurements.json").read_text())
    assert meas["modality"] == CASES[cid][2]
    for f in ("calibre.csv", "centerlines.json", "qc.png", "segmentation.seg.nrrd", "centerlines.mrk.json"):
        assert (out / cid / f).stat().st_size > 0, f


@pytest.mark.parametrize("cid, expected, convention", [
    ("totalseg_ct", ["L2", "L1", "T12", "T11"], "totalsegmentator"),
    ("dicom_ct", ["T12", "T11"], "totalsegmentator"),
    ("tptbox_mr", ["C7", "C6", "C5"], "verse"),
])
def test_levels_from_a_real_vertebra_map_follow_the_spine(real_run, cid, expected, convention):
    _, out = real_run
    meas = json.loads((out / cid / "measurements.json").read_text())
    assert meas["levels_source"] == "vertebra map" and meas["vertebrae_convention"] == convention
    axis = meas["vertebra_axis_mm"]                     # caudal to cranial along the spine
    assert list(axis) == expected, axis
    assert all(b - a > 10 for a, b in zip(list(axis.values()), list(axis.values())[1:]))  # a body height apart
    levels = {r["level"] for r in csv.DictReader(open(out / cid / "calibre.csv"))}
    assert levels <= set(expected) | {"NA"} and levels & set(expected)
    assert all(lv in ORDER for lv in axis)
