"""plexus measure on phantoms: accuracy against truth, orientation invariance, levels, edge cases, CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.core.errors import InputError
from pipeline.io import Volume, reorient, write_image
from pipeline.postprocess.clean import drop_far_from_bone
from pipeline.postprocess.measure import COLUMNS, MeasureOptions, measure
from pipeline.synth import PhantomConfig, generate_phantom
from pipeline.synth.vessels import CHANNELS


@pytest.fixture(scope="module")
def phantom():
    return generate_phantom(PhantomConfig(levels=("L3", "S1"), spacing=(0.8, 0.8, 0.8), seed=2024,
                                          fov_lr=35, fov_back=35, fov_front=40))


@pytest.fixture(scope="module")
def result(phantom):
    return measure(phantom.mask, vertebrae=phantom.vertebrae)


def _table(rows):
    return {(r["level"], r["channel"]): r for r in rows}


def test_every_level_and_channel_is_measured_close_to_truth(phantom, result):
    table = _table(result.rows)
    errors = []
    for level, channel, d_true, _ in phantom.truth_calibre:
        row = table[(level, channel)]
        assert row["n_points"] > 5, (level, channel)
        errors.append(row["median_diameter_mm"] - d_true)
    errors = np.abs(errors)
    assert errors.mean() < 0.15 and errors.max() < 0.4, errors


def test_rows_have_the_documented_columns_and_levels(phantom, result):
    assert all(list(r) == COLUMNS for r in result.rows)
    levels = {r["level"] for r in result.rows}
    assert {v.name for v in phantom.verts} <= levels
    assert result.summary["n_loops"] >= len(phantom.verts)  # the venous rings survive as loops
    assert result.summary["levels_source"] == "vertebra map"


@pytest.mark.parametrize("axcodes", ["LPS", "PIR"])
def test_same_result_whatever_the_storage_orientation(phantom, result, axcodes):
    other = measure(reorient(phantom.mask, axcodes), vertebrae=reorient(phantom.vertebrae, axcodes))
    a, b = _table(result.rows), _table(other.rows)
    for key in a:
        if key[1] in CHANNELS and key[0] != "NA":
            assert abs(a[key]["median_diameter_mm"] - b[key]["median_diameter_mm"]) < 0.05, key


def test_without_vertebrae_levels_are_na_and_channels_still_found(phantom):
    res = measure(phantom.mask)
    assert {r["level"] for r in res.rows} == {"NA"}
    chans = {r["channel"] for r in res.rows if r["n_points"] > 0}
    assert set(CHANNELS) <= chans


def test_channels_are_patient_sides_not_array_axes(phantom):
    """Left/right come from the world frame: mirror the array and its affine together -> same answer."""
    flipped = reorient(phantom.mask, "LAS")
    res = measure(flipped, vertebrae=reorient(phantom.vertebrae, "LAS"))
    for b in res.branches:
        if b.data["channel"].endswith("left"):
            assert np.median(b.points[:, 0]) < np.median(np.concatenate([x.points[:, 0] for x in res.branches])) + 1


def test_empty_and_speck_masks_give_warning_and_empty_table(tmp_path, capsys):
    aff = np.diag([0.8, 0.8, 0.8, 1])
    empty = Volume(np.zeros((30, 30, 30), np.uint8), aff, {"warnings": [], "path": "empty"})
    res = measure(empty)
    assert res.rows == [] and any("no voxel has label 1" in w for w in res.warnings)
    specks = empty.with_array(np.zeros((30, 30, 30), np.uint8))
    specks.array[5, 5, 5] = specks.array[20, 20, 20] = 1
    res = measure(specks)
    assert res.rows == [] and any("nothing left" in w for w in res.warnings)
    path = write_image(specks, tmp_path / "specks.nii.gz")
    assert main(["measure", str(path), "-o", str(tmp_path / "out")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "out" / "calibre.csv")))
    assert rows == []
    meas = json.loads((tmp_path / "out" / "measurements.json").read_text())
    assert meas["warnings"]


def test_vertebra_map_on_another_grid_is_a_clear_error(tmp_path, phantom, capsys):
    vert = phantom.vertebrae
    other = Volume(vert.array[:-3], vert.affine, {"warnings": [], "path": "v"})
    with pytest.raises(InputError, match="grid differs"):
        measure(phantom.mask, vertebrae=other)
    m = write_image(phantom.mask, tmp_path / "mask.nii.gz")
    v = write_image(other, tmp_path / "vert.nii.gz")
    assert main(["measure", str(m), "--vertebrae", str(v), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "vert.nii.gz" in err[0] and "grid differs" in err[0]


def test_vertebra_map_of_the_same_grid_in_another_storage_order_is_accepted(phantom, result):
    """Other tools store the same grid in their own axis order (TotalSegmentator: LAS for an LPS series)."""
    other = measure(phantom.mask, vertebrae=reorient(phantom.vertebrae, "PSL"))
    assert [(r["level"], r["channel"], r["median_diameter_mm"]) for r in other.rows] == \
        [(r["level"], r["channel"], r["median_diameter_mm"]) for r in result.rows]


def test_other_labels_are_ignored_with_a_warning(phantom):
    arr = phantom.mask.array.astype(np.uint8) * 3
    res = measure(phantom.mask.with_array(arr), options=None)
    assert any("no voxel has label 1" in w for w in res.warnings)
    from pipeline.postprocess.measure import MeasureOptions

    res = measure(phantom.mask.with_array(arr), options=MeasureOptions(label=3))
    assert res.rows and res.summary["n_branches"] > 10


def test_cli_measure_writes_every_file(tmp_path):
    from tests.conftest import SAMPLE_DATA

    case = SAMPLE_DATA / "ct_phantom"
    out = tmp_path / "m"
    code = main(["measure", str(case / "plexus_mask.nii.gz"), "--vertebrae", str(case / "vertebrae.nii.gz"),
                 "--image", str(case / "image.nii.gz"), "-o", str(out)])
    assert code == 0
    for name in ("calibre.csv", "calibre.schema.csv", "centerlines.json", "measurements.json", "qc.png"):
        assert (out / name).stat().st_size > 0, name
    cl = json.loads((out / "centerlines.json").read_text())
    assert cl["frame"] == "RAS" and cl["branches"]
    b = cl["branches"][0]
    assert len(b["points"]) == len(b["diameter"]) == len(b["level"]) == len(b["flags"])
    truth = {(r["level"], r["channel"]): float(r["median_diameter_mm"])
             for r in csv.DictReader(open(case / "truth_calibre.csv"))}
    got = {(r["level"], r["channel"]): float(r["median_diameter_mm"]) for r in csv.DictReader(open(out / "calibre.csv"))
           if r["median_diameter_mm"]}
    assert set(truth) <= set(got)
    assert np.mean([abs(got[k] - truth[k]) for k in truth]) < 0.15


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.6, 0.8, 2.5)])
def test_parts_are_kept_exactly_when_some_voxel_comes_within_the_gap(spacing):
    """The coarse-then-exact distance gives the same parts as a full distance transform, right at the limit."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    shape = (70, 60, 40)
    def blobs(sigma, z):  # smooth noise above z standard deviations
        f = ndimage.gaussian_filter(rng.random(shape), sigma)
        return (f - f.mean()) / f.std() > z

    bone, mask = blobs(4, 1.8), blobs(1.5, 2.2)
    mask &= ~bone
    dist = ndimage.distance_transform_edt(~bone, sampling=spacing)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    gaps = ndimage.minimum(dist, labels, np.arange(1, n + 1))
    limit = float(np.median(gaps))  # half the parts on either side, many near the limit
    expect = np.isin(labels, np.arange(1, n + 1)[gaps <= limit])
    kept, n_dropped, _ = drop_far_from_bone(mask, bone, spacing=spacing, max_gap_mm=limit)
    assert n_dropped == int((gaps > limit).sum()) > 0
    np.testing.assert_array_equal(kept, expect)


def test_parts_of_the_mask_far_from_any_vertebra_are_dropped_with_a_warning(phantom, result):
    import edt

    arr = phantom.mask.array.copy()
    gap = edt.edt(phantom.vertebrae.array == 0, anisotropy=tuple(float(x) for x in phantom.mask.spacing))
    c = np.unravel_index(np.argmax(gap[2:-2, 2:-2, 2:-2]), tuple(n - 4 for n in arr.shape))
    c = np.array(c) + 2                      # a 3 x 3 x 3 blob where the field is farthest from any vertebra
    assert gap[tuple(c)] > 25
    arr[c[0] - 1:c[0] + 2, c[1] - 1:c[1] + 2, c[2] - 1:c[2] + 2] = 1
    got = measure(phantom.mask.with_array(arr), vertebrae=phantom.vertebrae)
    assert got.summary["far_from_spine"]["parts_dropped"] == 1
    assert any("never come within 15 mm of a vertebra" in w for w in got.warnings)
    assert [(r["level"], r["channel"], r["median_diameter_mm"]) for r in got.rows] == \
        [(r["level"], r["channel"], r["median_diameter_mm"]) for r in result.rows]
    kept = measure(phantom.mask.with_array(arr), vertebrae=phantom.vertebrae,
                   options=MeasureOptions(max_gap_to_bone_mm=0))
    assert "far_from_spine" not in kept.summary or kept.summary["far_from_spine"]["parts_dropped"] == 0
