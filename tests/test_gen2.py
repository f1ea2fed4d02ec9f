"""bench/gen2, the independent evaluation-only phantom generator: deterministic, truth consistent with the geometry,
the plexus where the anatomy puts it, storage order irrelevant in the world, and no code from pipeline.synth."""

from __future__ import annotations

import ast
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from gen2 import GEN2_RANGES, build_case, generate_case  # noqa: E402
from gen2.case import KINDS  # noqa: E402
from gen2.veins import CHANNELS  # noqa: E402

from pipeline.core.volume import reorient  # noqa: E402
from pipeline.io.formats import read_image, read_label_map  # noqa: E402

SMALL = {"lumbar": ["L3", "L4", "L5"], "thoracic": ["T8", "T9", "T10"], "cervical": ["C4", "C5", "C6"]}


def small(seed: int, modality: str = "CT", region: str = "lumbar", **kw):
    kw.setdefault("spacing", (1.1, 1.1))
    return build_case(seed, modality, region, levels=SMALL[region], **kw)


def test_deterministic_per_seed_and_seeds_differ():
    a, b, c = small(3), small(3), small(4)
    for va, vb in ((a.image, b.image), (a.mask, b.mask), (a.vertebrae, b.vertebrae)):
        assert np.array_equal(va.array, vb.array) and np.allclose(va.affine, vb.affine)
    assert a.truth == b.truth and a.meta == b.meta
    assert a.image.shape != c.image.shape or not np.array_equal(a.image.array, c.image.array)
    assert a.truth != c.truth


@pytest.mark.parametrize("region,modality", [("lumbar", "CT"), ("thoracic", "MR"), ("cervical", "CT")])
def test_truth_channels_levels_and_diameters(region, modality):
    case = small(11, modality, region)
    levels = {r[0] for r in case.truth}
    assert levels <= set(case.meta["levels"]) and len(levels) >= 2
    for lev in levels:
        assert {r[1] for r in case.truth if r[0] == lev} == set(CHANNELS)
    engorged = set(case.meta["drawn"]["plexus"]["engorged_levels"])
    for lev, ch, d, n in case.truth:
        hi = GEN2_RANGES.engorged_max_mm if lev in engorged else GEN2_RANGES.diameter_limits_mm[1]
        assert GEN2_RANGES.diameter_limits_mm[0] - 1e-9 <= d <= hi + 1e-9, (lev, ch, d)
        assert n >= 3
    ids = set(np.unique(case.vertebrae.array)) - {0}
    from pipeline.core.levels import NAME_TO_VERSE
    assert ids == {NAME_TO_VERSE[n] for n in case.meta["levels"]}


@pytest.mark.parametrize("region", ["lumbar", "thoracic", "cervical"])
def test_mask_in_canal_and_foramina_never_in_bodies(region):
    case = small(21, "CT", region)
    mask, ex = case.extras["mask_ras"], case.extras
    assert mask.sum() > 100
    assert (ex["canal_region"] & mask).sum() >= 0.8 * mask.sum()
    in_body = mask & ex["body"]
    assert np.all(ex["plexus_kind"][in_body] == KINDS.index("basivertebral"))
    assert (ex["plexus_kind"][mask] == KINDS.index("basivertebral")).any()  # and basivertebral veins do enter


def _world_centroid(vol):
    idx = np.argwhere(vol.array > 0).astype(float)
    pts = idx @ vol.affine[:3, :3].T + vol.affine[:3, 3]
    return pts.mean(0)


def test_storage_orientation_leaves_the_world_unchanged():
    cases = {o: small(31, "MR", "lumbar", orientation=o) for o in ("RAS", "LPS", "LAS", "PIR")}
    for o, c in cases.items():
        assert "".join(c.mask.axcodes) == o and c.meta["orientation"] == o
    ras = cases["RAS"]
    for o in ("LPS", "LAS"):  # the same voxels (slices along S), re-stored: identical in the world
        back = reorient(cases[o].mask, "RAS")
        assert np.allclose(back.affine, ras.mask.affine) and np.array_equal(back.array, ras.mask.array)
        assert np.array_equal(reorient(cases[o].image, "RAS").array, ras.image.array)
    c0 = _world_centroid(ras.mask)
    for o in ("LPS", "PIR"):  # PIR: slices along R, another grid, the same anatomy
        assert np.linalg.norm(_world_centroid(cases[o].mask) - c0) < 0.6
    assert cases["PIR"].truth == ras.truth


def test_no_module_imports_pipeline_synth():
    files = sorted((ROOT / "bench" / "gen2").glob("*.py"))
    assert len(files) >= 5
    for f in files:
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            for n in names:
                assert not n.startswith("pipeline.synth"), f"{f.name} imports {n}"
                assert "synth" not in n.split("."), f"{f.name} imports {n}"


def test_generate_case_writes_a_folder_evaluate_reads(tmp_path):
    from pipeline.evaluation.evaluate import evaluate

    out = generate_case(5, "MR", tmp_path / "truth" / "case5", region="lumbar")
    meta = json.loads((out / "phantom.json").read_text())
    assert {"generator", "seed", "modality", "region", "levels", "spacing_mm", "orientation"} <= set(meta)
    assert meta["generator"] == "gen2" and meta["seed"] == 5 and meta["levels"][-1] == "S1"
    img, mask, vert = read_image(out / "image.nii.gz"), read_label_map(out / "plexus_mask.nii.gz"), \
        read_label_map(out / "vertebrae.nii.gz")
    assert img.array.dtype == np.int16 and mask.shape == img.shape == vert.shape
    assert np.allclose(img.spacing, meta["spacing_mm"], atol=1e-4) and "".join(img.axcodes) == meta["orientation"]
    with open(out / "truth_calibre.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["level", "channel", "median_diameter_mm", "n_points"]
    pred = tmp_path / "pred" / "case5"
    pred.mkdir(parents=True)
    (pred / "segmentation.nii.gz").write_bytes((out / "plexus_mask.nii.gz").read_bytes())
    res = evaluate(tmp_path / "pred", tmp_path / "truth")
    s = res["summary"]
    assert s["dice"] == 1.0 and s["calibre_pairs"] == len(rows)
    assert s["calibre_missed"] <= 0.25 * len(rows) and s["calibre_mae_mm"] < 0.8  # the truth mask measures near truth


def test_cli(tmp_path):
    r = subprocess.run([sys.executable, "-m", "gen2", "--out", str(tmp_path), "--cases", "1", "--seed", "7",
                        "--region", "cervical"], cwd=ROOT / "bench", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (case,) = tmp_path.iterdir()
    assert json.loads((case / "phantom.json").read_text())["modality"] == "CT"
