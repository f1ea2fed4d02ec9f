"""Hybrids of every registry scan (issue 20): a scan without a vertebra map takes its canal from stage 1, MR veins
come in both polarities, and the by-source benchmark never scores a model on a scan it saw in training."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from pipeline.io import read_image
from pipeline.io.registry import read_registry
from pipeline.spine import find_canal
from pipeline.synth import canal as canal_sections
from pipeline.synth.hybrid import generate_hybrid_from_scan, scan_canal, vein_visibility
from pipeline.synth.vessels import CHANNELS
from tests.conftest import ROOT, shared

sys.path.insert(0, str(ROOT / "bench"))


@pytest.fixture(scope="module")
def registry():
    return {e.id: e for e in read_registry(ROOT / "configs" / "real_scans.yaml")}


@pytest.fixture(scope="module")
def sct_t1(registry):
    shared("sct_testing_data/t1/t1w.nii.gz")
    return scan_canal(registry["sct_t1"], find_canal)


def _on_grid(mask, src_affine, dst):
    """``mask`` (on ``src_affine``) sampled at the voxel centres of the Volume ``dst`` (nearest)."""
    ijk = np.indices(dst.shape).reshape(3, -1).T @ dst.affine[:3, :3].T + dst.affine[:3, 3]
    src = (ijk - src_affine[:3, 3]) @ np.linalg.inv(src_affine[:3, :3]).T
    return ndimage.map_coordinates(mask.astype(np.uint8), src.T, order=0, cval=0).reshape(dst.shape) > 0


def test_hybrid_without_vertebra_map_lies_in_the_stage1_canal(sct_t1):
    assert sct_t1.vertebrae is None and sct_t1.source == "stage 1"
    ph = generate_hybrid_from_scan(sct_t1, 70000)
    assert np.allclose(ph.image.spacing, sct_t1.image.spacing)            # the scan's own 1 mm, not finer
    truth = ph.mask.array > 0
    assert truth.sum() > 500
    canal = _on_grid(sct_t1.canal > 0, sct_t1.image.affine, ph.image)
    near = ndimage.distance_transform_edt(~canal, sampling=ph.image.spacing) <= 4.0
    # the longitudinal channels and rings lie in the canal; only the foraminal and basivertebral veins leave it
    held = truth & ~_kinds(ph, ("intervertebral", "basivertebral"))
    assert near[held].mean() >= 0.9, near[held].mean()
    assert near[truth].mean() >= 0.75, near[truth].mean()
    assert len(ph.truth_calibre) >= 8 and {r[0] for r in ph.truth_calibre} <= {v.name for v in ph.verts}
    assert ph.info["canal_source"] == "stage 1" and ph.info["levels_named_by"].startswith("SCT labels")
    assert set(np.unique(ph.vertebrae.array)) - {0} == {v.verse_id for v in ph.verts}   # levels for measuring


def _kinds(ph, kinds) -> np.ndarray:
    from pipeline.synth.vessels import render_tubes

    sdf, _ = render_tubes([t for t in ph.tubes if t.kind in kinds], ph.image.shape, ph.image.affine)
    return sdf <= 0


def test_mr_hybrids_draw_both_polarities_deterministically(registry):
    shared("sct_testing_data/t2/t2.nii.gz")
    sc = scan_canal(registry["sct_t2"], find_canal)
    polarity = {seed: generate_hybrid_from_scan(sc, seed).info["vein_polarity"] for seed in range(70000, 70008)}
    assert {"bright", "dark"} <= set(polarity.values()), polarity
    a, b = generate_hybrid_from_scan(sc, 70001), generate_hybrid_from_scan(sc, 70001)
    assert np.array_equal(a.image.array, b.image.array) and np.array_equal(a.mask.array, b.mask.array)
    dark = next(s for s, p in polarity.items() if p == "dark")
    ph = generate_hybrid_from_scan(sc, dark)
    core = ph.fraction.array > 0.9
    before = sc.image.array.astype(np.float32)
    assert ph.image.shape == before.shape                                  # a small scan is kept whole
    assert np.median(ph.image.array[core]) < np.median(before[core])       # a flow void darkens the veins


def _fake_model(folder, scans):
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_text(json.dumps({"training_scans": scans}))
    return folder


def test_model_picker_never_returns_a_model_that_saw_the_scan_or_its_patient(tmp_path):
    from by_source import pick_model

    from pipeline.io.registry import ScanEntry

    entries = [ScanEntry(id="a1", modality="CT", hybrid=True, patient="A"),
               ScanEntry(id="a2", modality="CT", hybrid=True, patient="A"),
               ScanEntry(id="b", modality="MR", hybrid=True), ScanEntry(id="c", modality="MR", hybrid=True)]
    by_id = {e.id: e for e in entries}
    everything = _fake_model(tmp_path / "all", ["a1", "a2", "b"])
    loso = tmp_path / "loso"
    _fake_model(loso / "A" / "model", ["b"])
    _fake_model(loso / "b" / "model", ["a1", "a2"])
    for sid, fold in (("a1", "A"), ("a2", "A"), ("b", "b")):
        got = pick_model(by_id[sid], entries, [everything], loso)
        assert got == loso / fold / "model"
        seen = json.loads((got / "metadata.json").read_text())["training_scans"]
        assert not {e.id for e in entries if e.group == by_id[sid].group} & set(seen)
    assert pick_model(by_id["a1"], entries, [everything]) is None          # "no model that never saw it"
    assert pick_model(by_id["c"], entries, [everything], loso) == everything  # never seen: the first given
    half = _fake_model(tmp_path / "half", ["a2"])                            # saw the other scan of a1's patient
    assert pick_model(by_id["a1"], entries, [half]) is None


def test_vein_visibility_is_the_veins_contrast_to_noise_against_their_surround():
    rng = np.random.default_rng(0)
    base = rng.normal(100.0, 10.0, (40, 40, 40))
    mask = np.zeros(base.shape, bool)
    mask[18:22, 18:22, :] = True                       # a 4-voxel-wide vein along the last axis
    bright = base + 30.0 * mask                        # 30 units above a surround of SD 10: CNR about 3
    assert 2.6 < vein_visibility(bright, mask) < 3.4
    assert vein_visibility(base, mask) < 0.3           # a vein of the surround's own intensity: invisible
    assert vein_visibility(base - 30.0 * mask, mask) == pytest.approx(vein_visibility(bright, mask), rel=0.2)
    assert np.isnan(vein_visibility(base, np.zeros(base.shape, bool)))


def test_visibility_table_puts_every_case_in_one_visibility_row():
    from by_source import _key, visibility_table

    model = ROOT / "models" / "plexus"
    cases = [{"case_id": f"c{k}", "scan": s, "modality": mod, "vein_polarity": pol, "vein_cnr": cnr, "models": [model]}
             for k, (s, mod, pol, cnr) in enumerate([("a", "MR", "bright", 2.0), ("a", "MR", "dark", 0.1),
                                                     ("b", "CT", None, 0.5), ("b", "CT", None, 0.05)])]
    results = {"baseline": {c["case_id"]: {"dice": 0.1} for c in cases},
               _key(model): {c["case_id"]: {"dice": d} for c, d in zip(cases, (0.8, 0.0, 0.4, 0.2))}}
    text = visibility_table(cases, results)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ") and "---" not in line}
    assert "| 1 | a | 2.00 | 0.800 / 0.100 |" in rows["visible (CNR >= 1)"]
    assert "| 1 | b | 0.50 | 0.400 / 0.100 |" in rows["faint (0.3 <= CNR < 1)"]
    assert "| 2 | a, b | 0.08 | 0.100 / 0.100 |" in rows["invisible (CNR < 0.3)"]
    assert "| 2 | b |" in rows["CT (venous phase)"] and "0.300 / 0.100" in rows["CT (venous phase)"]


def _channel_offsets(ph, entry) -> np.ndarray:
    """mm from each point of the hybrid's four longitudinal channels to the scan's canal reference label (cord,
    CSF or canal), over the reference's own height less 3 mm at each end."""
    lab = read_image(entry.canal_ref.path)
    ref = np.argwhere(np.isin(lab.array, entry.canal_ref.ids)) @ lab.affine[:3, :3].T + lab.affine[:3, 3]
    lo, hi = ref[:, 2].min() + 3.0, ref[:, 2].max() - 3.0
    pts = np.concatenate([t.points for t in ph.tubes if t.kind in CHANNELS])
    pts = pts[(pts[:, 2] > lo) & (pts[:, 2] < hi)]
    return cKDTree(ref).query(pts)[0]


@pytest.mark.parametrize("scan_id", ["totalseg_ct", "totalseg_ct_sm", "dicom_ct", "tptbox_t2"])
def test_hybrid_channels_stay_beside_the_scans_canal_reference(registry, scan_id, monkeypatch):
    """A hybrid's channels run in the real canal: within a canal's radius of the scan's own labelled cord / CSF.

    It catches a canal placed from a vertebra the field of view cut to a fragment (TotalSegmentator CT's T11 put
    the top of the plexus 28 mm behind the spine): the old rule (``min_fraction=0``) fails it."""
    entry = registry[scan_id]
    shared(str(entry.image.relative_to(ROOT.parent / "shared" / "data")))
    d = _channel_offsets(generate_hybrid_from_scan(scan_canal(entry), 70000), entry)
    assert len(d) > 100 and np.percentile(d, 95) < 5.0, (scan_id, np.percentile(d, [50, 95, 100]))
    if scan_id == "totalseg_ct":
        old = canal_sections.find_canal
        monkeypatch.setattr("pipeline.synth.hybrid.find_canal",
                            lambda v, affine: old(v, affine=affine, min_fraction=0.0))
        d_old = _channel_offsets(generate_hybrid_from_scan(scan_canal(entry), 70000), entry)
        assert np.percentile(d_old, 95) > 8.0
