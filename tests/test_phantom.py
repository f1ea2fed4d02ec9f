"""The phantom generator: determinism, ground truth that matches its own masks, orientation and spacing."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from pipeline.core.levels import NAME_TO_VERSE
from pipeline.synth import PhantomConfig, generate_phantom, save_phantom
from pipeline.synth.vessels import CHANNELS


def _world_to_index(vol, xyz):
    return np.rint((np.linalg.inv(vol.affine) @ np.c_[xyz, np.ones(len(xyz))].T)[:3].T).astype(int)


def test_same_seed_same_case_other_seed_other_case():
    cfg = dict(levels=("L5", "S1"), fov_lr=30, fov_back=30, fov_front=35)
    a = generate_phantom(PhantomConfig(seed=7, **cfg))
    b = generate_phantom(PhantomConfig(seed=7, **cfg))
    c = generate_phantom(PhantomConfig(seed=8, **cfg))
    np.testing.assert_array_equal(a.image.array, b.image.array)
    np.testing.assert_array_equal(a.mask.array, b.mask.array)
    assert a.truth_calibre == b.truth_calibre
    assert a.truth_calibre != c.truth_calibre


def test_truth_table_covers_every_level_and_channel(small_ct_phantom):
    ph = small_ct_phantom
    keys = {(lv, ch) for lv, ch, _, _ in ph.truth_calibre}
    assert keys == {(v.name, c) for v in ph.verts for c in CHANNELS}
    for _, ch, d, n in ph.truth_calibre:
        assert n > 10
        assert (1.4 if ch.startswith("posterior") else 1.8) < d < 7.5


def test_mask_diameter_matches_recorded_radius(small_ct_phantom):
    """Inside the mask, the distance to the wall at a true centre point is the true radius (+- a voxel)."""
    ph = small_ct_phantom
    sp = ph.mask.spacing
    dist = ndimage.distance_transform_edt(ph.mask.array, sampling=sp)
    frac_sum = ph.fraction.array.sum() * np.prod(sp)
    assert abs(frac_sum - ph.mask.array.sum() * np.prod(sp)) / frac_sum < 0.1  # fraction and mask agree
    for tube in ph.tubes:
        if tube.kind not in CHANNELS:
            continue
        ijk = _world_to_index(ph.mask, tube.points)
        inside = np.all((ijk >= 0) & (ijk < ph.mask.shape), axis=1)
        d = dist[tuple(ijk[inside].T)]
        err = d - tube.radius[inside]
        assert abs(np.median(err)) < 0.5 * sp.max(), (tube.name, np.median(err))


def test_partial_volume_cross_section_area_matches_radius(small_ct_phantom):
    """The fraction map integrates to the true cross-section area of a longitudinal channel."""
    ph = small_ct_phantom
    tube = next(t for t in ph.tubes if t.kind == "anterior_left")
    ring_s = [v.s_centre for v in ph.verts] + [v.s_centre + v.height / 2 + v.disc_below / 2 for v in ph.verts]
    errs = []
    for k in range(5, len(tube.points) - 5, 7):
        if min(abs(tube.s[k] - s) for s in ring_s) < 4:
            continue  # junction with a ring or an intervertebral vein
        p, tan = tube.points[k], tube.points[k + 1] - tube.points[k - 1]
        ijk = np.linalg.inv(ph.fraction.affine) @ np.r_[p, 1.0]
        if np.any(ijk[:3] < 5) or np.any(ijk[:3] > np.array(ph.fraction.shape) - 6):
            continue  # the channels run on beyond the field of view
        tan /= np.linalg.norm(tan)
        e1 = np.cross(tan, [1.0, 0, 0]); e1 /= np.linalg.norm(e1)
        e2 = np.cross(tan, e1)
        g = np.arange(-4, 4.001, 0.1)
        U, V = np.meshgrid(g, g, indexing="ij")
        xyz = p + U[..., None] * e1 + V[..., None] * e2
        ijk = (np.linalg.inv(ph.fraction.affine) @ np.c_[xyz.reshape(-1, 3), np.ones(U.size)].T)[:3]
        f = ndimage.map_coordinates(ph.fraction.array, ijk, order=1).reshape(U.shape)
        lab, _ = ndimage.label(f > 0)
        f = f * (lab == lab[len(g) // 2, len(g) // 2])
        area = f.sum() * 0.01
        errs.append(2 * np.sqrt(area / np.pi) - 2 * tube.radius[k])
    assert len(errs) > 5
    assert abs(np.median(errs)) < 0.15, np.median(errs)


def test_vertebra_labels_agree_with_levels(small_ct_phantom):
    ph = small_ct_phantom
    vb = ph.vertebrae.array
    assert set(np.unique(vb)) - {0} == {NAME_TO_VERSE[v.name] for v in ph.verts}
    for v in ph.verts:
        ijk = _world_to_index(ph.vertebrae, np.array([ph.body_centres[v.name]]))[0]
        assert vb[tuple(ijk)] == v.verse_id, v.name
    # plexus lies in the canal, never inside bone
    assert not np.any((ph.mask.array > 0) & (vb > 0) & (ph.image.array > 600))


def test_levels_of_truth_points_follow_nearest_body_centre(small_ct_phantom):
    from pipeline.synth.save import truth_json

    ph = small_ct_phantom
    tj = truth_json(ph)
    assert tj["frame"] == "RAS" and "nearest" in tj["level_rule"]
    centres_s = np.array([v.s_centre for v in ph.verts])
    names = [v.name for v in ph.verts]
    checked = 0
    for vessel in tj["vessels"]:
        pts = np.array(vessel["points"])
        _, _, s = ph.axis.to_straight(pts)  # independent: solve each point's axis position again
        gaps = np.abs(s[:, None] - centres_s[None, :])
        for k in range(0, len(pts), 5):
            order = np.argsort(gaps[k])
            if gaps[k, order[1]] - gaps[k, order[0]] > 0.5:  # not on a boundary
                assert vessel["level"][k] == names[order[0]], (vessel["name"], k)
                checked += 1
    assert checked > 100


@pytest.mark.parametrize("orientation, spacing", [("LPS", (1.0, 1.0, 1.0)), ("PIR", (0.8, 0.8, 1.6))])
def test_storage_orientation_and_spacing_keep_world_geometry(orientation, spacing):
    base = dict(levels=("L5", "S1"), seed=3, fov_lr=30, fov_back=30, fov_front=35)
    ras = generate_phantom(PhantomConfig(spacing=spacing, **base))
    other = generate_phantom(PhantomConfig(spacing=spacing, orientation=orientation, **base))
    assert "".join(other.mask.axcodes) == orientation
    assert np.allclose(sorted(other.mask.spacing), sorted(spacing))
    # same world centroid of the plexus and same voxel count
    def centroid(vol):
        idx = np.argwhere(vol.array > 0)
        return (vol.affine @ np.c_[idx, np.ones(len(idx))].T)[:3].mean(1)
    np.testing.assert_allclose(centroid(other.mask), centroid(ras.mask), atol=1e-6)
    assert other.mask.array.sum() == ras.mask.array.sum()


def test_mr_phantom_has_rician_background_and_bright_veins():
    ph = generate_phantom(PhantomConfig(modality="MR", levels=("C5", "C7"), seed=4, fov_lr=30, fov_back=30, fov_front=35))
    img, m = ph.image.array.astype(float), ph.mask.array > 0
    assert img.min() >= 0
    assert np.median(img[m]) > 2 * np.median(img[~m])


def test_save_writes_every_file(tmp_path, small_ct_phantom):
    out = save_phantom(small_ct_phantom, tmp_path / "case")
    names = {p.name for p in out.iterdir()}
    assert {"image.nii.gz", "plexus_mask.nii.gz", "plexus_fraction.nii.gz", "vertebrae.nii.gz",
            "centerlines_truth.json", "truth_calibre.csv", "phantom.json"} <= names
    assert not [n for n in names if n.startswith(".")]


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="modality"):
        PhantomConfig(modality="PET")
    with pytest.raises(ValueError, match="spacing"):
        PhantomConfig(spacing=(1, 0, 1))
    with pytest.raises(ValueError, match="levels"):
        PhantomConfig(levels=("S1", "L1"))
    with pytest.raises(ValueError, match="orientation"):
        PhantomConfig(orientation="RRS")
