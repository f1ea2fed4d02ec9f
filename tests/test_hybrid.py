"""Hybrid phantoms: the real canal found from a vertebra map, and a synthetic plexus inserted into a scan.

A phantom serves as the "real" scan where the truth is needed (its canal is known exactly); the team's real
scans (../shared/data) check the canal against a labelled spinal canal and the whole generator end to end.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pipeline.io import read_image, reorient, write_image
from pipeline.io.vertebrae import read_vertebrae
from pipeline.synth import PhantomConfig, generate_phantom
from pipeline.synth.canal import find_canal
from pipeline.synth.hybrid import HybridConfig, generate_hybrid
from pipeline.synth.vessels import CHANNELS
from tests.conftest import ROOT, shared


@pytest.fixture(scope="module")
def host():
    """A lumbar CT phantom stored sagittally (PIR) with anisotropic 1.0 x 1.0 x 1.5 mm voxels."""
    return generate_phantom(PhantomConfig(modality="CT", levels=("L2", "S1"), spacing=(1.0, 1.0, 1.5), orientation="PIR",
                                          seed=77, fov_lr=40, fov_back=40, fov_front=45))


def test_canal_found_where_the_phantom_put_it(host):
    secs = find_canal(host.vertebrae.array, affine=host.vertebrae.affine)
    assert [s.name for s in secs] == [v.name for v in host.verts]
    for sec, v in zip(secs, host.verts):
        u, vv, _ = host.axis.to_straight(sec.centre[None])
        assert sec.found_by == "ring"
        assert abs(u[0]) < 1.0 and abs(vv[0]) < 2.0, (sec.name, u, vv)
        assert sec.canal_width == pytest.approx(v.canal_width, rel=0.12)
        assert sec.canal_ap == pytest.approx(v.canal_ap, rel=0.2)
        assert (sec.body_centre - sec.centre) @ sec.anterior > v.canal_ap / 2      # the body lies in front


def test_a_vertebra_cut_to_a_fragment_by_the_field_is_left_out(host):
    """The tip of a spinous process at the scan's edge is no vertebra: its canal would lie behind the spine."""
    vmap = host.vertebrae.array.copy()
    top = host.verts[0].verse_id
    own = np.argwhere(vmap == top)
    back = (own @ host.vertebrae.affine[:3, :3].T)[:, 1]            # RAS y: the most posterior 5 % stay
    vmap[tuple(own[back > np.percentile(back, 5)].T)] = 0
    assert 20 <= (vmap == top).sum() < 0.2 * (host.vertebrae.array == host.verts[1].verse_id).sum()
    secs = find_canal(vmap, affine=host.vertebrae.affine)
    assert [s.name for s in secs] == [v.name for v in host.verts[1:]]
    for sec, v in zip(secs, host.verts[1:]):
        u, vv, _ = host.axis.to_straight(sec.centre[None])
        assert abs(u[0]) < 1.0 and abs(vv[0]) < 2.0, (sec.name, u, vv)
        assert sec.found_by == "ring" and sec.canal_width == pytest.approx(v.canal_width, rel=0.12)
    kept = find_canal(vmap, affine=host.vertebrae.affine, min_fraction=0.0)      # the old rule took the fragment
    assert kept[0].name == host.verts[0].name
    with pytest.raises(ValueError, match="min_fraction"):
        find_canal(vmap, affine=host.vertebrae.affine, min_fraction=1.0)


def test_canal_needs_two_vertebrae(host):
    one = np.where(host.vertebrae.array == host.verts[0].verse_id, host.verts[0].verse_id, 0)
    with pytest.raises(ValueError, match="at least two vertebrae"):
        find_canal(one, affine=host.vertebrae.affine)


@pytest.fixture(scope="module")
def hybrid(host):
    return generate_hybrid(host.image, host.vertebrae, HybridConfig(modality="CT", seed=3, spacing=1.0))


def test_channels_run_inside_the_real_canal(host, hybrid):
    truth = {v.name: v for v in host.verts}
    for tube in hybrid.tubes:
        if tube.kind not in CHANNELS:
            continue
        u, v, s = host.axis.to_straight(tube.points)
        levels = [truth[n] for n in _nearest(s, host.verts)]
        half_w = np.array([x.canal_width / 2 for x in levels])
        half_ap = np.array([x.canal_ap / 2 for x in levels])
        in_view = (s > host.verts[0].s_centre) & (s < host.verts[-1].s_centre)
        inside = (np.abs(u) <= half_w + 1.0) & (np.abs(v) <= half_ap + 1.5)
        assert inside[in_view].mean() > 0.95, tube.name


def _nearest(s, verts):
    sc = np.array([v.s_centre for v in verts])
    return [verts[i].name for i in np.argmin(np.abs(s[:, None] - sc[None]), axis=1)]


def test_image_changes_only_at_the_veins(host, hybrid):
    src = reorient(host.image, "".join(hybrid.image.axcodes))
    # the hybrid's grid is a crop of the source's (1 mm in plane, 1.5 mm resampled to 1 mm): compare on shared voxels
    assert np.all(hybrid.image.spacing <= 1.0 + 1e-6)
    inv = np.linalg.inv(src.affine)
    ijk = np.argwhere(np.ones(hybrid.image.shape, bool))
    world = ijk @ hybrid.image.affine[:3, :3].T + hybrid.image.affine[:3, 3]
    src_ijk = world @ inv[:3, :3].T + inv[:3, 3]
    exact = np.all(np.abs(src_ijk - np.round(src_ijk)) < 1e-3, axis=1)
    a = hybrid.image.array.reshape(-1)[exact].astype(float)
    b = src.array[tuple(np.round(src_ijk[exact]).astype(int).T)].astype(float)
    from scipy import ndimage

    near = ndimage.binary_dilation(hybrid.fraction.array > 0, iterations=6).reshape(-1)[exact]
    assert np.abs(a - b)[~near].max() <= 1.0                       # the scan itself (its noise) is kept
    inside = hybrid.mask.array.reshape(-1)[exact] > 0
    assert (a - b)[inside].mean() > 40                              # veins brighter than what was there


def test_veins_stay_out_of_bone_except_basivertebral(hybrid):
    from pipeline.synth.vessels import render_tubes

    basi = [t for t in hybrid.tubes if t.kind == "basivertebral"]
    sdf_b, _ = render_tubes(basi, hybrid.mask.shape, hybrid.mask.affine)
    in_bone = (hybrid.mask.array > 0) & (hybrid.vertebrae.array > 0)
    assert in_bone.any()
    assert np.all(sdf_b[in_bone] <= 0)


def test_same_hybrid_whatever_the_storage_order(host, hybrid):
    other = generate_hybrid(reorient(host.image, "LPS"), reorient(host.vertebrae, "LPS"),
                            HybridConfig(modality="CT", seed=3, spacing=1.0))
    for a, b in zip(hybrid.tubes, other.tubes):
        assert a.name == b.name
        assert np.abs(a.points - b.points).max() < 0.3
    ta = {(r[0], r[1]): r[2] for r in hybrid.truth_calibre}
    tb = {(r[0], r[1]): r[2] for r in other.truth_calibre}
    common = set(ta) & set(tb)
    assert len(common) >= 0.9 * len(ta)
    assert max(abs(ta[k] - tb[k]) for k in common) < 0.15


def test_cli_writes_a_hybrid_case_and_refuses_a_scan_without_map(tmp_path, host):
    write_image(host.image, tmp_path / "scan.nii.gz")
    write_image(reorient(host.vertebrae, "RAS"), tmp_path / "vert.nii.gz")     # same grid, another storage order
    run = [sys.executable, "-m", "pipeline.cli", "synth", "-o", str(tmp_path / "out"), "--hybrid",
           str(tmp_path / "scan.nii.gz")]
    bad = subprocess.run(run, capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "--vertebrae" in bad.stderr.strip().splitlines()[-1]
    ok = subprocess.run(run + ["--vertebrae", str(tmp_path / "vert.nii.gz"), "--count", "2"], capture_output=True,
                        text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    for k in range(2):
        case = tmp_path / "out" / f"case_{k:03d}"
        for name in ("image.nii.gz", "plexus_mask.nii.gz", "vertebrae.nii.gz", "truth_calibre.csv", "phantom.json"):
            assert (case / name).exists(), name
    a = read_image(tmp_path / "out" / "case_000" / "plexus_mask.nii.gz").array
    b = read_image(tmp_path / "out" / "case_001" / "plexus_mask.nii.gz").array
    assert a.shape == b.shape and not np.array_equal(a, b)       # other seed, other plexus


def test_real_canal_matches_the_labelled_spinal_canal():
    """TPTBox cervical MR: the canal found from the vertebra map lies within 3 mm of the labelled canal (61)."""
    vert = read_vertebrae(shared("tptbox_samples/sample_mri/sub-mri_seg-vert_label-6_msk.nii.gz"))
    sub = read_image(shared("tptbox_samples/sample_mri/sub-mri_seg-subreg_label-6_msk.nii.gz"))
    canal = np.argwhere(sub.array == 61) @ sub.affine[:3, :3].T + sub.affine[:3, 3]
    secs = find_canal(vert.array, affine=vert.affine)
    assert [s.name for s in secs] == ["C5", "C6", "C7"]
    for sec in secs:
        near = np.abs((canal - sec.centre) @ sec.caudal) < 3
        offset = canal[near].mean(0) - sec.centre
        offset -= (offset @ sec.caudal) * sec.caudal
        assert np.linalg.norm(offset) < 3.0, sec.name


def test_real_ct_hybrid_covers_every_level():
    """TotalSegmentator lumbar CT (3 mm): resampled to 1 mm, every vertebra T12-S1 gets all four channels.

    The map's T11 is a 76-voxel fragment at the scan's top edge (a spinous process tip): it is left out, and the
    canal stays in the spine, where a canal placed from the fragment lay 28 mm behind T12's."""
    img = read_image(shared("totalsegmentator/example_ct.nii.gz"))
    vert = read_vertebrae(shared("totalsegmentator/spine_report/totalseg.nii.gz"))
    ph = generate_hybrid(img, vert, HybridConfig(modality="CT", seed=1))
    assert np.allclose(ph.image.spacing, 1.0)
    assert [v.name for v in ph.verts] == ["T12", "L1", "L2", "L3", "L4", "L5", "S1"]
    centres = np.array([c["centre_ras"] for c in ph.info["canal"]])
    assert np.all(np.abs(np.diff(centres[:, 1])) < 20.0)       # no section jumps out of the column
    levels = {r[0] for r in ph.truth_calibre}
    assert {"T12", "L1", "L2", "L3", "L4", "L5"} <= levels
    assert sum(c["found_by"].startswith("ring") for c in ph.info["canal"]) >= 6     # closed ring in the map
    d = [r[2] for r in ph.truth_calibre]
    assert 1.0 < min(d) and max(d) < 8.0
    # the veins stand out from the soft tissue around them, even beside the canal wall and blurred by 3 mm voxels
    from scipy import ndimage

    m, bone = ph.mask.array > 0, ph.vertebrae.array > 0
    ring = ndimage.binary_dilation(m, iterations=3) & ~ndimage.binary_dilation(m, iterations=1) & ~bone
    img = ph.image.array.astype(float)
    assert img[m & ~bone].mean() - img[ring].mean() > 40


def test_training_config_makes_hybrid_cases_once(tmp_path, host):
    from pipeline.train.config import load_config
    from pipeline.train.data import all_cases, preprocess_case

    write_image(host.image, tmp_path / "scan.nii.gz")
    write_image(host.vertebrae, tmp_path / "vert.nii.gz")
    cfg_path = tmp_path / "hybrid.yaml"
    cfg_path.write_text((ROOT / "configs" / "smoke.yaml").read_text())
    cfg = load_config(cfg_path, [f"output.run_dir={tmp_path / 'run'}",
                                 "data.hybrid=[{image: scan.nii.gz, vertebrae: vert.nii.gz, modality: CT, count: 2, seed: 9}]"])
    assert cfg.data.hybrid[0].image == tmp_path / "scan.nii.gz"          # relative to the config file
    cases = all_cases(cfg)
    hyb = [c for c in cases if c.case_id.startswith("hybrid_")]
    assert [c.case_id for c in hyb] == ["hybrid_scan_000009", "hybrid_scan_000010"]
    stamp = (hyb[0].image).stat().st_mtime_ns
    all_cases(cfg)                                                        # cached: not made again
    assert hyb[0].image.stat().st_mtime_ns == stamp
    d = preprocess_case(hyb[0], cfg)
    assert set(np.unique(d["label"].numpy())) == {0, 1, 2}
    missing = load_config(cfg_path, [f"output.run_dir={tmp_path / 'run2'}",
                                     "data.hybrid=[{image: nowhere.nii.gz, vertebrae: vert.nii.gz, modality: CT}]"])
    from pipeline.core.errors import InputError

    with pytest.raises(InputError, match="nowhere.nii.gz.*no such file"):
        all_cases(missing)


@pytest.mark.parametrize("name, config", [("plexus", "plexus.yaml"), ("plexus_base", "plexus_base.yaml"),
                                          ("plexus_phantom", "phantom.yaml"), ("plexus_hybrid", "phantom_hybrid.yaml")])
def test_shipped_models_load_and_match_their_configs(name, config):
    """Each shipped model folder loads, and the config it was trained with is the one in configs/ (data, model,
    preprocessing, training schedule): the models are reproducible from the repository."""
    import yaml

    from pipeline.inference.model import load_model

    model, meta = load_model(ROOT / "models" / name)
    used = yaml.safe_load(meta["training"]["config"])
    ours = yaml.safe_load((ROOT / "configs" / config).read_text())
    for key in ("model", "preprocess", "loss", "optim", "augment"):
        for k, v in (ours.get(key) or {}).items():      # every value the config sets is the one the model used
            assert used[key][k] == v, (key, k)
    assert used["train"]["iterations"] == ours["train"]["iterations"]
    assert used["data"]["synthetic"]["seed"] == ours["data"]["synthetic"]["seed"]
    hybrids = used["data"].get("hybrid") or []
    assert [(h["image"].split("data/")[-1], h["count"], h["seed"]) for h in hybrids] == \
        [(h["image"].split("data/")[-1], h["count"], h["seed"]) for h in ours["data"].get("hybrid") or []]
    assert used["data"].get("randomised") == ours["data"].get("randomised")
    if (ours["data"].get("randomised") or {}).get("scans"):   # the real scans it saw are listed, by registry id
        assert {"totalseg_ct", "tptbox_t2"} <= set(meta["training_scans"])
        assert not {"sct_t1", "sct_t2", "totalseg_mr"} & set(meta["training_scans"])
    elif name != "plexus_hybrid":
        assert meta["training_scans"] == []


def test_a_patient_rotated_in_the_scanner_gets_the_same_hybrid(host):
    """An oblique grid (the same voxels, the patient turned 12 degrees about the scanner's axis): the canal is found
    in each vertebra's own frame, so the plexus turns with the patient (within 0.8 mm between the end vertebrae)."""
    from pipeline.io import Volume

    a = np.deg2rad(12)
    rot = np.eye(4)
    rot[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    img, vert = (Volume(v.array, rot @ v.affine, dict(v.meta)) for v in (host.image, host.vertebrae))
    straight = generate_hybrid(host.image, host.vertebrae, HybridConfig(modality="CT", seed=2))
    turned = generate_hybrid(img, vert, HybridConfig(modality="CT", seed=2))
    assert not np.allclose(turned.image.affine[:3, :3], np.diag(np.diag(turned.image.affine[:3, :3])))
    for a_, b in zip(straight.tubes, turned.tubes):
        assert a_.name == b.name
        inside = (a_.s > straight.verts[0].s_centre) & (a_.s < straight.verts[-1].s_centre)
        if not inside.any():
            continue
        if a_.kind in CHANNELS:  # sampled every 0.5 mm from each hybrid's own first vertebra: compare at the same s
            other = np.stack([np.interp(a_.s[inside], b.s, b.points[:, d]) for d in range(3)], axis=1)
        else:
            other = b.points[inside]
        moved = (rot[:3, :3] @ a_.points[inside].T).T - other
        assert np.abs(moved).max() < 0.8, a_.name
    ta = {r[:2]: r[2] for r in straight.truth_calibre}
    tb = {r[:2]: r[2] for r in turned.truth_calibre}
    assert set(ta) == set(tb) and max(abs(ta[k] - tb[k]) for k in ta) < 0.05
    assert abs(int(straight.mask.array.sum()) - int(turned.mask.array.sum())) < 0.05 * straight.mask.array.sum()
