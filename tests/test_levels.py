"""Vertebral levels from a bone mask, named from the sacrum or a hint (no vertebra map)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.core.levels import NAME_TO_VERSE
from pipeline.io import Volume, read_label_map, reorient
from pipeline.postprocess.anatomy import CanalFrame, _axes
from pipeline.postprocess.measure import MeasureOptions, measure
from pipeline.postprocess.vertebrae import field_extent, find_bodies, name_bodies, parse_anchor, vertebra_map
from tests.conftest import SAMPLE_DATA


def _frame() -> CanalFrame:
    """A straight canal along world z through x = y = 0 (s = z)."""
    s = np.arange(-400.0, 400.0, 1.0)
    centre = np.stack([0 * s, 0 * s, s], 1)
    T = np.tile([0.0, 0.0, 1.0], (len(s), 1))
    A, L = _axes(T)
    return CanalFrame(s, centre, T, A, L)


def _spine(n_lumbar_above: int, sacrum_mm: float, z_bottom: float, z_top: float, spacing=(1.0, 1.0, 1.0)):
    """Bone of ``n_lumbar_above`` bodies (24 mm, discs 10 mm) over a fused sacrum, cut to z in [z_bottom, z_top].

    Returns the bone Volume (RAS) and the true body centres (z), cranial first; the sacrum's top is at z = 0.
    """
    sp = np.asarray(spacing)
    lo, hi = np.array([-45.0, -40.0, z_bottom]), np.array([45.0, 80.0, z_top])
    shape = tuple(int(v) for v in np.floor((hi - lo) / sp) + 1)
    aff = np.diag([*sp, 1.0])
    aff[:3, 3] = lo
    ijk = np.indices(shape).reshape(3, -1).T
    x, y, z = ((aff[:3, :3] @ ijk.T).T + aff[:3, 3]).T
    body_xy = (np.abs(x) < 20) & (np.abs(y - 35) < 14)
    arch_xy = (np.hypot(x, y) > 10) & (np.hypot(x, y) < 16) & (y < 5)      # posterior elements around the canal
    spans = [(-sacrum_mm, 0.0)] + [(10.0 + 34 * k, 34.0 + 34 * k) for k in range(n_lumbar_above)]
    bone = np.zeros(len(z), bool)
    for a, b in spans:
        inz = (z >= a) & (z <= b)
        bone |= inz & body_xy
        bone |= inz & arch_xy & (z <= b - 4)
    centres = [0.5 * (a + b) for a, b in spans[1:]][::-1]
    return Volume(bone.reshape(shape).astype(np.uint8), aff, {"warnings": []}), centres


def _named(vol: Volume, **kw):
    frame = _frame()
    ras = reorient(vol, "RAS")
    bodies, s, idx = find_bodies(ras.array > 0, ras.affine, frame)
    return name_bodies(bodies, field_extent(ras.shape, ras.affine, frame), **kw), (ras, s, idx)


@pytest.mark.parametrize("axcodes, spacing", [("RAS", (1.0, 1.0, 1.0)), ("LPS", (0.8, 0.8, 1.5)),
                                              ("PIR", (1.2, 0.7, 0.7))])
def test_sacrum_anchors_the_names_in_any_storage(axcodes, spacing):
    vol, centres = _spine(4, 70, -60, 150, spacing)
    named, (ras, s, idx) = _named(reorient(vol, axcodes))
    assert named.anchor == "sacrum" and named.names == ["L2", "L3", "L4", "L5", "S1"]
    assert named.confidence > 0.9 and not named.warnings
    got = named.centroids()
    for name, c in zip(["L2", "L3", "L4", "L5"], centres):
        assert abs(got[name] - c) < 2.0, (name, got[name], c)
    vmap = vertebra_map(ras.shape, idx, s, named)
    assert set(np.unique(vmap)) == {0} | {NAME_TO_VERSE[n] for n in named.names}
    assert (vmap[ras.array > 0] > 0).mean() > 0.95  # posterior elements are labelled with their body


def test_bone_far_from_the_canal_is_no_vertebra():
    """A model's "bone" far out (the skin of a whole-body field of view) takes no level in the vertebra map, and the
    bodies found do not change; the spine's own posterior elements keep theirs."""
    vol, _ = _spine(4, 70, -60, 150, (1.0, 1.0, 1.0))
    ref, (_, s_ref, idx_ref) = _named(vol)
    arr = np.pad(vol.array, ((0, 0), (0, 60), (0, 0)))  # the field grown 60 mm to the front (y up to 140 mm)
    arr[40:50, 180:185, 80:120] = 1   # a plate 100-105 mm in front of the canal: not a vertebra
    far = np.zeros(arr.shape, bool)
    far[40:50, 180:185, 80:120] = True
    named, (ras, s, idx) = _named(Volume(arr, vol.affine, dict(vol.meta)))
    assert named.names == ref.names and named.s_range == ref.s_range
    assert len(idx) == len(idx_ref) and not far[tuple(idx.T)].any()
    vmap = vertebra_map(ras.shape, idx, s, named)
    assert not vmap[far].any() and (vmap[(arr > 0) & ~far] > 0).mean() > 0.95


def test_six_lumbar_vertebrae_on_request():
    named, _ = _named(_spine(4, 70, -60, 150)[0], lumbar_count=6)
    assert named.names == ["L3", "L4", "L5", "L6", "S1"]


def test_without_the_sacrum_levels_are_na_with_a_warning_unless_a_hint_names_one():
    vol, centres = _spine(4, 70, 20, 150)          # cut through the lowest lumbar body: no sacrum in view
    named, _ = _named(vol)
    assert named.anchor == "none" and set(named.names) == {"NA"} and not named.centroids()
    assert "neither the sacrum nor C2 is in view" in named.warnings[0]
    hinted, _ = _named(vol, hint=("L3", centres[1] + 3.0))
    assert hinted.names[:3] == ["L2", "L3", "L4"] and hinted.anchor == "hint L3"


def test_a_free_caudal_end_with_field_below_counts_as_the_sacrum():
    vol, _ = _spine(3, 30, -60, 130)               # a short sacrum ending free, 30 mm of field below it
    named, _ = _named(vol)
    assert named.anchor == "sacrum" and named.names[-2:] == ["L5", "S1"]
    cut, _ = _spine(3, 30, -35, 130)               # the same, ending 5 mm above the border: could be a cut L5
    assert _named(cut)[0].anchor == "none"


def test_anchor_text_is_checked():
    assert parse_anchor("l3@120.5") == ("L3", 120.5)
    for bad in ("L3", "L3@top", "@12"):
        with pytest.raises(ValueError, match="--anchor"):
            name = parse_anchor(bad)[0]
            if not name:
                raise ValueError("--anchor: empty name")


def test_measure_names_levels_from_the_phantoms_bone_with_a_hint():
    mask = read_label_map(SAMPLE_DATA / "ct_phantom" / "plexus_mask.nii.gz")
    truth = read_label_map(SAMPLE_DATA / "ct_phantom" / "vertebrae.nii.gz")
    bone = truth.with_array((truth.array > 0).astype(np.uint8))
    l4 = np.argwhere(truth.array == NAME_TO_VERSE["L4"]).mean(0)
    z = float((truth.affine[:3, :3] @ l4 + truth.affine[:3, 3])[2])
    ref = measure(mask, vertebrae=truth)
    got = measure(mask, bone=bone, options=MeasureOptions(anchor=f"L4@{z:.1f}"))
    assert got.summary["levels_source"] == "bone mask (anchor: hint L4)"
    assert {(r["level"], r["channel"]) for r in got.rows} == {(r["level"], r["channel"]) for r in ref.rows}
    agree = (got.vertebrae.array == truth.array)[truth.array > 0].mean()
    assert agree > 0.97, agree



def test_sample_phantom_levels_without_a_map_match_the_truth_and_need_the_sacrum():
    """The sample CT shows the sacrum: every vertebra is named right from the bone alone. Cut above the sacrum,
    the levels are NA with a warning instead of a guess."""
    mask = read_label_map(SAMPLE_DATA / "ct_phantom" / "plexus_mask.nii.gz")
    truth = read_label_map(SAMPLE_DATA / "ct_phantom" / "vertebrae.nii.gz")
    bone = truth.with_array((truth.array > 0).astype(np.uint8))
    ref = measure(mask, vertebrae=truth)
    got = measure(mask, bone=bone)
    assert got.summary["levels_source"] == "bone mask (anchor: sacrum)"
    assert [b["level"] for b in got.summary["levels_from_bone"]["bodies"]] == ["L3", "L4", "L5", "S1"]
    for v in np.unique(truth.array[truth.array > 0]):
        vals, counts = np.unique(got.vertebrae.array[truth.array == v], return_counts=True)
        assert vals[np.argmax(counts)] == v and counts.max() / counts.sum() > 0.95, v
    assert [(r["level"], r["channel"]) for r in got.rows] == [(r["level"], r["channel"]) for r in ref.rows]
    for a, b in zip(got.rows, ref.rows):  # the found map differs from the truth by a few boundary voxels
        assert np.isclose(a["median_diameter_mm"], b["median_diameter_mm"], atol=0.05, equal_nan=True), (a, b)
    # the same scan cut 10 mm below the L5/S1 disc: no sacrum in view
    ras_mask, ras_bone = reorient(mask, "RAS"), reorient(bone, "RAS")
    s1 = reorient(truth, "RAS").array == NAME_TO_VERSE["S1"]
    k0 = int(np.argwhere(s1)[:, 2].max()) - int(round(20 / ras_mask.spacing[2]))
    cut = [Volume(x.array[:, :, k0:], x.affine @ np.diag([1, 1, 1, 1.0]) @ _shift(k0), {"warnings": []})
           for x in (ras_mask, ras_bone)]
    plain = measure(cut[0], bone=cut[1])
    assert plain.summary["levels_source"] == "none (levels are NA)"
    assert any("neither the sacrum nor C2 is in view" in w for w in plain.warnings)
    assert {r["level"] for r in plain.rows} == {"NA"}


def _shift(k0: int) -> np.ndarray:
    m = np.eye(4)
    m[2, 3] = k0
    return m


def test_cli_measure_with_bone_writes_the_vertebra_map(tmp_path, capsys):
    from pipeline.cli import main

    d = SAMPLE_DATA / "ct_phantom"
    truth = read_label_map(d / "vertebrae.nii.gz")
    l3 = np.argwhere(truth.array == NAME_TO_VERSE["L3"]).mean(0)
    z = float((truth.affine[:3, :3] @ l3 + truth.affine[:3, 3])[2])
    assert main(["-q", "measure", str(d / "plexus_mask.nii.gz"), "-o", str(tmp_path), "--bone",
                 str(d / "vertebrae.nii.gz"), "--anchor", f"L3@{z:.1f}"]) == 0
    found = read_label_map(tmp_path / "vertebrae.nii.gz")
    assert found.shape == truth.shape and np.allclose(found.affine, truth.affine)
    assert (found.array == truth.array)[truth.array > 0].mean() > 0.97
    with pytest.raises(SystemExit) as info:  # a usage error, refused when the command line is read
        main(["measure", str(d / "plexus_mask.nii.gz"), "-o", str(tmp_path), "--bone", str(d / "vertebrae.nii.gz"),
              "--anchor", "L3"])
    assert info.value.code == 2
    assert "argument --anchor: expected NAME@Z" in capsys.readouterr().err


def test_real_ct_levels_from_the_sacrum_match_totalsegmentator():
    """A real lumbar CT (3 mm) with TotalSegmentator's vertebra labels: bodies found from the bone alone, named
    from the real sacrum, agree with TotalSegmentator's names for every whole vertebra (T12..S1)."""
    from pipeline.core.levels import level_name, to_verse
    from pipeline.postprocess.anatomy import canal_frame
    from tests.conftest import shared

    seg = reorient(read_label_map(shared("totalsegmentator/example_seg_fast_force_split.nii.gz")), "RAS")
    a = seg.array
    centre = [np.r_[np.argwhere(a[:, :, k] == 79).mean(0), k] for k in range(a.shape[2]) if (a[:, :, k] == 79).sum() > 2]
    pts = (seg.affine[:3, :3] @ np.array(centre).T).T + seg.affine[:3, 3]   # the spinal cord: the canal axis
    tan = np.gradient(pts, axis=0)
    frame = canal_frame(pts, tan / np.linalg.norm(tan, axis=1, keepdims=True))
    bone = np.isin(a, list(range(25, 51)))                                   # every vertebra label is bone
    bodies, s, idx = find_bodies(bone, seg.affine, frame)
    named = name_bodies(bodies, field_extent(a.shape, seg.affine, frame))
    assert named.anchor == "sacrum" and named.names == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    found = vertebra_map(a.shape, idx, s, named)
    truth = to_verse(a, "totalsegmentator")
    for v in [NAME_TO_VERSE[n] for n in named.names]:
        vals, counts = np.unique(found[truth == v], return_counts=True)
        assert vals[np.argmax(counts)] == v, (level_name(v), dict(zip(vals.tolist(), counts.tolist())))
        assert counts[vals == v][0] / counts.sum() > 0.9


def test_vertebra_map_conventions_are_detected_and_converted(tmp_path):
    from pipeline.core.levels import detect_convention, to_verse
    from pipeline.io.vertebrae import read_vertebrae

    verse = read_label_map(SAMPLE_DATA / "ct_phantom" / "vertebrae.nii.gz")     # L3, L4, L5, S1
    a = verse.array
    lumbar = np.isin(a, [22, 23, 24])
    # SPIDER: numbered from the bottom, L5 = 1; 100 = spinal canal; no sacrum label
    spider = np.where(lumbar, 25 - a.astype(int), 0)                     # L5 (24) -> 1, L4 -> 2, L3 -> 3
    spider[0, 0, :3] = 100
    assert detect_convention(spider) == "spider"
    np.testing.assert_array_equal(to_verse(spider, "auto"), np.where(lumbar, a, 0))
    # TotalSegmentator `total`: L3 = 29 ... S1 = 26, plus organs with low ids that VerSe would misread
    ts = np.select([a == 22, a == 23, a == 24, a == 26], [29, 28, 27, 26], 0)
    ts[0, 0, :2] = 5  # liver
    assert detect_convention(ts) == "totalsegmentator" and detect_convention(a) == "verse"
    np.testing.assert_array_equal(to_verse(ts, "auto"), a)
    # a folder of TotalSegmentator per-structure masks
    from pipeline.io import write_image

    folder = tmp_path / "masks"
    for name, v in (("vertebrae_L3", 22), ("vertebrae_L4", 23), ("vertebrae_L5", 24), ("vertebrae_S1", 26)):
        write_image(verse.with_array((a == v).astype(np.uint8)), folder / f"{name}.nii.gz")
    got = read_vertebrae(folder)
    np.testing.assert_array_equal(got.array, a)
    assert got.meta["convention"] == "totalsegmentator masks"


def test_plexus_infer_names_the_sample_levels_from_the_models_own_bone(tmp_path):
    """No vertebra map: the shipped model's bone class, the sacrum in view, every vertebra named right."""
    from pipeline.cli import main

    d = SAMPLE_DATA / "ct_phantom"
    assert main(["-q", "infer", str(d / "image.nii.gz"), "-o", str(tmp_path), "--no-tta",
                 "--model", str(SAMPLE_DATA.parent / "models" / "plexus_phantom")]) == 0
    import json

    meas = json.loads((tmp_path / "image" / "measurements.json").read_text())
    assert meas["levels_source"] == "bone mask (anchor: sacrum)"
    truth = read_label_map(d / "vertebrae.nii.gz")
    found = read_label_map(tmp_path / "image" / "vertebrae.nii.gz")
    for v in np.unique(truth.array[truth.array > 0]):
        vals, counts = np.unique(found.array[truth.array == v], return_counts=True)
        named = {int(a): int(c) for a, c in zip(vals, counts) if a}
        assert max(named, key=named.get) == v, (v, named)


def _cervical(orientation, spacing, cranial_mm, levels=("C1", "C6"), seed=5):
    from pipeline.synth import PhantomConfig, generate_phantom

    return generate_phantom(PhantomConfig(modality="MR", levels=levels, spacing=spacing, orientation=orientation,
                                          seed=seed, cranial_mm=cranial_mm, fov_lr=40, fov_back=40, fov_front=45))


@pytest.mark.parametrize("orientation, spacing", [("PSR", (0.7, 0.7, 1.0)), ("LPS", (0.8, 0.8, 0.8)),
                                                  ("RAS", (0.6, 0.6, 1.2))])
def test_c2_with_its_dens_anchors_the_names_from_the_top(orientation, spacing):
    """C1 has no body; the dens of C2 rises through it. With the top of that column in view (field above it), the
    levels are counted down from C2 and every vertebra of the map is named right."""
    ph = _cervical(orientation, spacing, cranial_mm=25)
    bone = ph.vertebrae.with_array((ph.vertebrae.array > 0).astype(np.uint8))
    got = measure(ph.mask, bone=bone)
    assert got.summary["levels_source"] == "bone mask (anchor: C2)"
    assert [b["level"] for b in got.summary["levels_from_bone"]["bodies"]] == ["C1", "C2", "C3", "C4", "C5", "C6"]
    truth = ph.vertebrae.array
    for v in np.unique(truth[truth > 0]):
        vals, counts = np.unique(got.vertebrae.array[truth == v], return_counts=True)
        assert vals[np.argmax(counts)] == v and counts.max() / counts.sum() > 0.9, v
    assert not got.warnings


def test_c2_column_cut_by_the_field_is_no_anchor():
    """The same anatomy with the field ending at the top of the dens column: no anchor holds; and a cervical column
    whose lowest body ends free is not taken for the sacrum (its bodies are not lumbar-sized)."""
    ph = _cervical("RAS", (0.9, 0.9, 0.9), cranial_mm=0, levels=("C1", "C5"), seed=8)
    bone = ph.vertebrae.with_array((ph.vertebrae.array > 0).astype(np.uint8))
    got = measure(ph.mask, bone=bone)
    assert got.summary["levels_source"] == "none (levels are NA)"
    assert {r["level"] for r in got.rows} == {"NA"}


def test_sacrum_and_c2_in_view_agree_or_warn():
    """A whole spine C1-S1: the counts from both ends agree. With one thoracic body missing from the bone mask,
    they disagree by one: the sacrum names the levels and a warning says so."""
    from pipeline.synth import PhantomConfig, generate_phantom

    ph = generate_phantom(PhantomConfig(modality="CT", levels=("C1", "S1"), spacing=(1.0, 1.0, 1.0), seed=11,
                                        cranial_mm=25, sacrum_mm=30, fov_lr=30, fov_back=30, fov_front=45))
    frame_vol = reorient(ph.vertebrae, "RAS")
    bone = frame_vol.array > 0
    named, _ = _named_along(ph, bone, frame_vol)
    assert named.anchor == "sacrum" and not named.warnings
    assert named.names[:2] == ["C1", "C2"] and named.names[-1] == "S1" and len(named.names) == 25
    gone = bone & (frame_vol.array != NAME_TO_VERSE["T6"])
    named, _ = _named_along(ph, gone, frame_vol)
    assert named.anchor == "sacrum" and named.names[-1] == "S1"
    assert any("disagree by 1" in w for w in named.warnings) and named.confidence <= 0.5


def _named_along(ph, bone, vol):
    """Bodies of ``bone`` (on ``vol``'s grid) named along the phantom's true canal axis."""
    from pipeline.postprocess.anatomy import spine_frame

    frame = spine_frame(vol.array, vol.affine)
    bodies, s, idx = find_bodies(bone, vol.affine, frame)
    return name_bodies(bodies, field_extent(vol.shape, vol.affine, frame)), (s, idx)


@pytest.mark.parametrize("k", [1, 2, 7, 26])
def test_nearest_body_by_binary_search_equals_the_full_table(k):
    """Each voxel's nearest body centre along the axis, found by a binary search, equals the argmin of the full
    voxels x bodies table, ties (a voxel half-way, two bodies at one position) going to the first body."""
    from pipeline.postprocess.vertebrae import _nearest

    rng = np.random.default_rng(k)
    centres = rng.normal(size=k) * 60.0
    if k > 1:
        centres[1] = centres[0]
    s = rng.normal(size=20000) * 90.0
    s[:50] = centres[rng.integers(0, k, 50)]
    s[50:100] = 0.5 * (centres[0] + centres[-1])
    np.testing.assert_array_equal(_nearest(s, centres), np.argmin(np.abs(s[:, None] - centres[None]), axis=1))
