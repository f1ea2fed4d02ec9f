"""Centrelines and calibre on analytic shapes of known radius, in several storage orientations and spacings."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from pipeline.postprocess.calibre import JUNCTION, MERGED, measure_calibre
from pipeline.postprocess.centreline import extract_centrelines
from pipeline.postprocess.clean import clean_mask
from tests.shapes import line, rasterise, tube


def _graph(mask_vol, field=None):
    import edt

    m = mask_vol.array > 0
    dist = edt.edt(m, anisotropy=tuple(mask_vol.spacing))
    g = extract_centrelines(m, mask_vol.affine, distance_mm=dist)
    measure_calibre(g, m.astype(np.float32) if field is None else field.array, mask_vol.affine, distance_mm=dist)
    return g


def _clean_diameters(g):
    return np.concatenate([b.data["diameter_mm"][(b.data["flags"] & JUNCTION) == 0] for b in g.branches])


@pytest.mark.parametrize("axcodes, spacing", [("RAS", (0.5, 0.5, 0.5)), ("LPS", (0.4, 0.4, 0.8)),
                                              ("PIR", (0.6, 0.6, 1.2))])
def test_oblique_straight_tube_diameter(axcodes, spacing):
    r = 1.6
    mask, _ = rasterise([tube(line([0, 0, 0], [12, 9, 40]), r)], spacing=spacing, axcodes=axcodes)
    g = _graph(mask)
    assert len(g.branches) == 1
    b = g.branches[0]
    inner = slice(len(b.points) // 5, -len(b.points) // 5)
    d = b.data["diameter_mm"][inner]
    assert abs(np.median(d) - 2 * r) < 0.1, np.median(d)
    assert abs(np.median(b.data["inscribed_diameter_mm"][inner]) - 2 * r) < 0.45
    # the centreline lies on the true axis: distance from the line through (0,0,0) and (12,9,40)
    u = np.array([12, 9, 40.0]) / np.linalg.norm([12, 9, 40.0])
    off = b.points[inner] - (b.points[inner] @ u)[:, None] * u
    assert np.median(np.linalg.norm(off, axis=1)) < 0.25
    assert abs(b.length - np.linalg.norm([12, 9, 40.0])) < 3 * r + 1  # thinning shortens capped ends


def test_curved_tube_diameter_and_length():
    t = np.linspace(0, np.pi, 300)
    R, r = 20.0, 1.2
    pts = np.stack([R * np.cos(t), R * np.sin(t), 5 * t], 1)   # a helix turn: curvature and torsion
    mask, _ = rasterise([tube(pts, r)], spacing=(0.4, 0.4, 0.4))
    g = _graph(mask)
    assert len(g.branches) == 1
    d = g.branches[0].data["diameter_mm"]
    assert abs(np.median(d[20:-20]) - 2 * r) < 0.1
    true_len = np.linalg.norm(np.diff(pts, axis=0), axis=1).sum()
    assert abs(g.branches[0].length - true_len) < 2 * r + 1


def test_y_junction_has_three_branches_and_unbiased_arms():
    a, b = 2.0, 1.2
    tubes = [tube(line([0, 0, -25], [0, 0, 0]), a), tube(line([0, 0, 0], [0, 0, 25]), a),
             tube(line([0, 0, 0], [18, 0, 12]), b)]
    mask, _ = rasterise(tubes, spacing=(0.5, 0.5, 0.5))
    g = _graph(mask)
    assert (g.degree >= 3).sum() == 1 and len(g.branches) == 3
    junction = g.nodes[np.argmax(g.degree)]
    assert np.linalg.norm(junction - [0, 0, 0]) < 2.0
    for br in g.branches:
        far = np.linalg.norm(br.points - junction, axis=1) > 6
        expect = 2 * b if abs(br.points[-1][0] - br.points[0][0]) > 8 else 2 * a
        assert abs(np.median(br.data["diameter_mm"][far]) - expect) < 0.12
        assert (br.data["flags"] & JUNCTION).any()


def test_two_touching_parallel_tubes_are_not_one_wide_vessel():
    r = 1.5
    tubes = [tube(line([0, 0, 0], [0, 0, 40]), r), tube(line([2 * r, 0, 0], [2 * r, 0, 40]), r)]
    mask, _ = rasterise(tubes, spacing=(0.3, 0.3, 0.5))
    g = _graph(mask)
    d = _clean_diameters(g)
    # a merged section would read as sqrt(2) x 2r: the figure-8 is split at its neck
    assert abs(np.median(d) - 2 * r) < 0.2, np.median(d)
    assert any((b.data["flags"] & MERGED).any() for b in g.branches)


def test_ring_keeps_its_loop():
    t = np.linspace(0, 2 * np.pi, 400)
    ring = np.stack([9 * np.cos(t), 6 * np.sin(t), np.zeros_like(t)], 1)
    tubes = [tube(ring, 1.0), tube(line([9, 0, -20], [9, 0, 20]), 1.6), tube(line([-9, 0, -20], [-9, 0, 20]), 1.6)]
    mask, _ = rasterise(tubes, spacing=(0.4, 0.4, 0.4))
    g = _graph(mask)
    n_loops = len(g.branches) - int((g.degree > 0).sum()) + 1
    assert n_loops == 1, "the ring must stay a loop (a tree skeleton would cut it)"
    assert (g.degree >= 3).sum() == 2
    ring_br = [b for b in g.branches if abs(b.points[:, 2]).max() < 3 and b.length > 10]
    assert ring_br and all(abs(np.median(b.data["diameter_mm"]) - 2.0) < 0.2 for b in ring_br)


def test_probability_map_gives_sub_voxel_calibre():
    r = 0.9  # thin vein at 1 mm voxels
    mask, frac = rasterise([tube(line([0, 0, 0], [3, 4, 40]), r)], spacing=(1.0, 1.0, 1.0))
    g = _graph(mask, field=frac)
    d = g.branches[0].data["diameter_mm"]
    assert abs(np.median(d[len(d) // 5:-len(d) // 5]) - 2 * r) < 0.12


def test_clean_removes_specks_and_fills_holes():
    m = np.zeros((30, 30, 30), bool)
    m[5:20, 5:20, 5:20] = True
    m[10, 10, 10] = False           # a hole
    m[25, 25, 25] = True            # a speck
    out, rep = clean_mask(m, spacing=(1, 1, 1), min_volume_mm3=4, max_hole_mm3=2)
    assert out[10, 10, 10] and not out[25, 25, 25]
    assert rep.n_removed == 1 and rep.removed_volume_mm3 == 1 and rep.filled_volume_mm3 == 1
    with pytest.raises(ValueError, match="min_volume_mm3"):
        clean_mask(m, spacing=(1, 1, 1), min_volume_mm3=-1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_equals_a_plain_labelling_on_random_masks(seed):
    """Specks and holes found by counting only the labels that are not the surrounding space equal a plain
    ``scipy.ndimage.label`` + ``bincount`` reference: random blobs on an anisotropic grid, stored in Fortran order,
    with the mask filling the corner voxel in one case (so the corner's label is no background)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    m = ndimage.gaussian_filter(rng.random((40, 33, 27)), 1.2) > 0.49  # specks and pockets in each case
    m[0, 0, 0] = seed == 2
    m = np.asfortranarray(m)
    sp = (0.8, 1.1, 1.4)
    out, rep = clean_mask(m, spacing=sp, min_volume_mm3=6.0, max_hole_mm3=3.0)
    vox = float(np.prod(sp))
    lab, n = ndimage.label(m, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    ref = m & (sizes[lab] * vox >= 6.0)
    bg, _ = ndimage.label(~ref)  # 6-connected
    bsizes = np.bincount(bg.ravel())
    edge = np.unique(np.concatenate([bg[[0, -1]].ravel(), bg[:, [0, -1]].ravel(), bg[:, :, [0, -1]].ravel()]))
    hole = (bg > 0) & (bsizes[bg] * vox <= 3.0) & ~np.isin(bg, edge)
    assert rep.n_removed == int(((sizes[1:] * vox) < 6.0).sum()) > 0
    assert hole.any() and (seed != 2 or ref[0, 0, 0])
    np.testing.assert_array_equal(out, ref | hole)
    assert rep.removed_volume_mm3 == pytest.approx(float((m & ~ref).sum() * vox))
    assert rep.filled_volume_mm3 == pytest.approx(float(hole.sum() * vox))


def test_a_mask_is_told_from_a_probability_map_in_any_memory_order():
    from pipeline.postprocess.calibre import _is_binary

    rng = np.random.default_rng(4)
    mask = (rng.random((60, 50, 400)) > 0.7).astype(np.float32)  # 6 M voxels: several blocks
    prob = np.clip(mask * rng.uniform(0.4, 1.0, mask.shape), 0, 1).astype(np.float32)
    assert _is_binary(mask) and _is_binary(np.asfortranarray(mask)) and _is_binary(np.zeros((3, 4, 5), np.float32))
    assert not _is_binary(prob) and not _is_binary(np.asfortranarray(prob))
    sparse = np.zeros((60, 50, 400), np.float32)
    sparse[-1, -1, -3:] = [1.0, 1.0, 0.6]  # the only positives lie in the last block
    assert not _is_binary(sparse)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_calibre_sampling_threads_work_in_a_forked_child():
    """The sampling threads are started once per process: a forked child (a DataLoader worker) must start its
    own, not wait forever on the parent's, which do not exist there."""
    from pipeline.postprocess.calibre import _sample

    rng = np.random.default_rng(0)
    field = rng.random((20, 20, 20)).astype(np.float32)
    coords = rng.random((3, 50_000)) * 19  # enough for the two-thread path
    expected = _sample(field, coords, 1)  # starts the parent's threads
    pid = os.fork()
    if pid == 0:  # the child: exit 0 when the samples match
        os._exit(0 if np.array_equal(_sample(field, coords, 1), expected) else 3)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("calibre sampling hung in a forked child")


def test_distance_map_equals_scipy_on_an_anisotropic_mask():
    from scipy import ndimage

    from pipeline.postprocess.clean import distance_mm

    rng = np.random.default_rng(7)
    mask = ndimage.binary_opening(rng.random((23, 17, 31)) > 0.35)
    mask[:, :, 0] = True  # touches the border: beyond it counts as background unless black_border=False
    sp = (0.7, 1.1, 2.3)
    np.testing.assert_allclose(distance_mm(mask, spacing=sp), ndimage.distance_transform_edt(
        np.pad(mask, 1), sampling=sp)[1:-1, 1:-1, 1:-1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(distance_mm(mask, spacing=sp, black_border=False),  # scipy: no border at all
                               ndimage.distance_transform_edt(mask, sampling=sp), rtol=1e-5, atol=1e-5)
