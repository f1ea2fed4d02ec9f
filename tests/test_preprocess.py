"""Preprocessing puts images on the model grid; its inverse lands back on the input grid voxel for voxel."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from pipeline.io import Volume, reorient
from pipeline.preprocess.grid import resample
from pipeline.preprocess.transform import PreprocessConfig, build_transform, guess_modality, invert, preprocess


@pytest.fixture(scope="module")
def ct(small_ct_phantom):
    return small_ct_phantom


@pytest.mark.parametrize("axcodes", ["RAS", "LPS", "PIR"])
def test_inverse_returns_exactly_the_input_grid(ct, axcodes):
    vol = reorient(ct.image, axcodes)
    prep = preprocess(vol, PreprocessConfig(spacing=(1.3, 1.3, 1.3)))
    assert prep.modality == "CT"
    assert np.allclose(np.linalg.norm(prep.affine[:3, :3], axis=0), 1.3)
    assert nib.aff2axcodes(prep.affine) == ("R", "A", "S")
    assert 0.0 <= float(prep.image.min()) and float(prep.image.max()) <= 1.0
    back = invert(prep, np.ones((2, *prep.image.shape[1:]), dtype=np.float32), nearest=False)
    assert back.shape == (2, *vol.shape)


@pytest.mark.parametrize("axcodes", ["LPS", "PSR"])
def test_labels_survive_a_round_trip_through_a_finer_grid(ct, axcodes):
    """At half the input spacing every input voxel centre is a model voxel centre: the round trip is exact."""
    mask = reorient(ct.mask, axcodes)
    image = reorient(ct.image, axcodes)
    prep = preprocess(image, PreprocessConfig(spacing=tuple(float(s) / 2 for s in image.spacing),
                                              orientation="".join(image.axcodes), crop_margin_mm=None))
    # forward the labels with the same geometry: nearest sampling at model voxel centres
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in prep.image.shape[1:]], indexing="ij"), -1).reshape(-1, 3)
    xyz = nib.affines.apply_affine(prep.affine, ijk)
    src = np.rint(nib.affines.apply_affine(np.linalg.inv(mask.affine), xyz)).astype(int)
    src = np.clip(src, 0, np.array(mask.shape) - 1)
    on_model = mask.array[tuple(src.T)].reshape(prep.image.shape[1:])
    back = invert(prep, on_model[None].astype(np.int64), nearest=True)[0]
    np.testing.assert_array_equal(back, mask.array)


def test_identity_when_the_grid_already_matches(ct):
    vol = reorient(ct.image, "LPS")
    cfg = PreprocessConfig(spacing=tuple(float(s) for s in vol.spacing), orientation="LPS", crop_margin_mm=None)
    before = vol.array.copy()
    prep = preprocess(vol, cfg)
    np.testing.assert_array_equal(vol.array, before)  # the scan itself is left alone
    np.testing.assert_allclose(prep.affine, vol.affine, atol=1e-9)
    back = invert(prep, prep.image.numpy(), nearest=False)[0]
    np.testing.assert_allclose(back, prep.image.numpy()[0], atol=1e-6)


def test_world_position_of_a_blob_is_preserved_on_an_anisotropic_sagittal_grid(ct):
    vol = reorient(ct.image, "PIR")
    vol = Volume(vol.array, vol.affine @ np.diag([1.0, 1.0, 1.7, 1.0]), dict(vol.meta))  # anisotropic
    prep = preprocess(vol, PreprocessConfig(spacing=(0.9, 0.9, 0.9)))
    model = np.zeros(prep.image.shape, dtype=np.float32)
    c = np.array(prep.image.shape[1:]) // 2
    model[0, c[0] - 3:c[0] + 4, c[1] - 3:c[1] + 4, c[2] - 3:c[2] + 4] = 1.0
    world_model = nib.affines.apply_affine(prep.affine, c)
    back = invert(prep, model, nearest=False)[0]
    idx = np.argwhere(back > 0.5)
    world_back = nib.affines.apply_affine(vol.affine, idx).mean(0)
    np.testing.assert_allclose(world_back, world_model, atol=1.0)


def test_crop_removes_air_and_is_undone(ct):
    pad = 15
    arr = np.pad(ct.image.array, pad, constant_values=-1000)
    aff = ct.image.affine.copy()
    aff[:3, 3] -= aff[:3, :3] @ np.full(3, pad)
    vol = Volume(arr, aff, dict(ct.image.meta))
    prep = preprocess(vol, PreprocessConfig(spacing=(1.0, 1.0, 1.0), crop_margin_mm=4.0))
    assert np.all(np.array(prep.image.shape[1:]) < np.array(arr.shape) - 2 * pad + 2 * 4 + 2)
    back = invert(prep, np.ones((1, *prep.image.shape[1:]), np.float32), nearest=True)[0]
    assert back.shape == arr.shape
    assert back[:pad - 5].sum() == 0 and back[pad:-pad, pad:-pad, pad:-pad].all()


def _oblique(vol: Volume) -> Volume:
    c, s = np.cos(0.2), np.sin(0.2)
    rot = np.eye(4)
    rot[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    return Volume(vol.array, rot @ vol.affine, dict(vol.meta))


def _stored(vol: Volume, how: str) -> Volume:
    """The same voxels in another memory layout: Fortran-ordered int16 (as NIfTI files are read), or a view of an
    array stored in another axis order."""
    a = np.asarray(vol.array)
    arr = (np.asfortranarray(np.rint(a).astype(np.int16)) if how == "fortran-int16"
           else np.ascontiguousarray(a.transpose(2, 0, 1)).transpose(1, 2, 0))
    return Volume(arr, vol.affine, dict(vol.meta))


@pytest.mark.parametrize("case", ["RAS", "LPS-anisotropic", "PIR-MR", "oblique", "PSR-no-crop",
                                  "RAS-fortran-int16", "oblique-strided-view"])
def test_inference_preprocessing_equals_the_training_transforms(ct, case):
    """What the network sees at inference (arrays, :mod:`pipeline.resample`) is what MONAI's transforms gave it in
    training, and :func:`invert` lands where MONAI's ``Invertd`` does."""
    from monai.data import MetaTensor
    from monai.transforms import Invertd

    vol, cfg, modality = {
        "RAS": (ct.image, PreprocessConfig(), "CT"),
        "LPS-anisotropic": (reorient(Volume(ct.image.array, ct.image.affine @ np.diag([1.0, 1.0, 1.7, 1.0]),
                                            dict(ct.image.meta)), "LPS"), PreprocessConfig(spacing=(0.9, 0.9, 0.9)), "CT"),
        "PIR-MR": (reorient(ct.image, "PIR"), PreprocessConfig(spacing=(1.3, 1.3, 1.3)), "MR"),
        "oblique": (_oblique(ct.image), PreprocessConfig(), "CT"),
        "PSR-no-crop": (reorient(ct.image, "PSR"), PreprocessConfig(spacing=(0.7, 0.8, 1.1), crop_margin_mm=None), "CT"),
        "RAS-fortran-int16": (_stored(ct.image, "fortran-int16"), PreprocessConfig(spacing=(0.9, 1.1, 1.3)), "CT"),
        "oblique-strided-view": (_stored(_oblique(ct.image), "view"), PreprocessConfig(spacing=(0.8, 1.0, 1.2)), "CT"),
    }[case]
    if case.startswith("RAS-fortran"):
        assert np.isfortran(vol.array)
    transform = build_transform(cfg)
    ref = transform({"image": MetaTensor(torch.from_numpy(np.ascontiguousarray(vol.array, np.float32)[None]),
                                         affine=torch.as_tensor(vol.affine, dtype=torch.float64)),
                     "modality": modality})["image"]
    prep = preprocess(vol, cfg, modality)
    assert tuple(prep.image.shape) == tuple(ref.shape)
    np.testing.assert_allclose(prep.affine, ref.affine.numpy(), atol=1e-9)
    np.testing.assert_allclose(prep.image.numpy(), ref.numpy(), atol=1e-5)
    data = np.random.default_rng(0).random((2, *prep.image.shape[1:])).astype(np.float32)
    monai_back = Invertd(keys="pred", transform=transform, orig_keys="image", nearest_interp=False, to_tensor=True)(
        {"pred": MetaTensor(torch.from_numpy(data)), "image": ref})["pred"].numpy()
    np.testing.assert_allclose(invert(prep, data, nearest=False), monai_back, atol=1e-5)


def test_resampling_is_exact_on_a_lattice_and_holds_the_edge_beyond_it():
    rng = np.random.default_rng(1)
    a = rng.random((30, 20, 10)).astype(np.float32)
    src = np.diag([1.2, 0.7, 2.0, 1.0])
    src[:3, 3] = [5.0, -3.0, 1.0]
    half = src @ np.diag([0.5, 0.5, 0.5, 1.0])  # every source voxel centre is one of its voxel centres
    fine = resample(a, src, half, (59, 39, 19), order=1, threads=3)
    np.testing.assert_allclose(fine[::2, ::2, ::2], a, atol=1e-6)
    np.testing.assert_allclose(fine[1::2, 0, 0], 0.5 * (a[1:, 0, 0] + a[:-1, 0, 0]), atol=1e-6)
    shifted = src.copy()
    shifted[:3, 3] -= src[:3, :3] @ [2.0, 0.0, 0.0]  # two voxels before the first: edge values
    out = resample(a, src, shifted, a.shape, order=0)
    np.testing.assert_array_equal(out[:3], np.broadcast_to(a[0], (3, *a.shape[1:])))
    with pytest.raises(ValueError, match="order"):
        resample(a, src, src, a.shape, order=3)


@pytest.mark.parametrize("layout", ["C", "Fortran", "transposed-view"])
def test_resampling_follows_the_memory_order_and_writes_into_a_view(layout):
    """Any memory layout of the source gives the same samples (walked in memory order, axes permuted inside), and
    ``out=`` fills a strided window of a larger volume without touching the rest."""
    rng = np.random.default_rng(2)
    a = rng.random((24, 31, 17)).astype(np.float32)
    src = np.array([[0.9, 0.05, 0.0, 2.0], [0.0, 1.1, 0.0, -1.0], [0.0, 0.1, 1.7, 3.0], [0, 0, 0, 1]])
    dst = np.diag([0.8, 1.3, 1.1, 1.0])
    dst[:3, 3] = [1.0, 0.5, 2.0]
    ref = resample(a, src, dst, (26, 19, 23), order=1)
    stored = {"C": a, "Fortran": np.asfortranarray(a),
              "transposed-view": np.ascontiguousarray(a.transpose(1, 2, 0)).transpose(2, 0, 1)}[layout]
    np.testing.assert_allclose(resample(stored, src, dst, (26, 19, 23), order=1), ref, atol=1e-6)
    big = np.full((30, 25, 40), 7.0, np.float32)
    window = big[2:28, 3:22, 10:33]
    assert resample(stored, src, dst, (26, 19, 23), order=1, out=window) is window
    np.testing.assert_allclose(window, ref, atol=1e-6)
    assert (big[:2] == 7).all() and (big[:, :, :10] == 7).all() and (big[:, 22:] == 7).all()
    with pytest.raises(ValueError, match="out"):
        resample(a, src, dst, (26, 19, 23), out=np.zeros((26, 19, 22), np.float32))


@pytest.mark.parametrize("nearest", [False, True])
def test_inverse_from_the_box_alone_equals_the_zero_padded_grid(nearest):
    """:func:`invert` samples the crop box (plus a plane of zeros where it stops short of the grid's edge) and only
    the input voxels that can see it; the result equals resampling the whole grid with the box in zeros, for a
    body that reaches some edges of the field and not others, stored LPS on an anisotropic grid."""
    from pipeline.preprocess.grid import reoriented_affine

    arr = np.full((40, 36, 30), -1000.0, np.float32)
    arr[:25, 8:30, 12:] = 40.0  # reaches the first x and the last z edge
    vol = reorient(Volume(arr, np.diag([0.9, 1.2, 1.6, 1.0]), {"modality": "CT"}), "LPS")
    prep = preprocess(vol, PreprocessConfig(spacing=(1.1, 0.9, 1.3), crop_margin_mm=3.0))
    assert any(b.start == 0 for b in prep.box) and any(b.start > 0 for b in prep.box)
    data = np.random.default_rng(3).random((2, *prep.image.shape[1:])).astype(np.float32)
    full = np.zeros((2, *prep.grid_shape), np.float32)
    full[(slice(None), *prep.box)] = data
    oriented = reoriented_affine(prep.input_affine, prep.input_shape, prep.ornt)
    shape = nib.orientations.apply_orientation(np.empty(prep.input_shape), prep.ornt).shape
    back = nib.orientations.ornt_transform(nib.orientations.io_orientation(oriented),
                                           nib.orientations.io_orientation(prep.input_affine))
    ref = np.stack([nib.orientations.apply_orientation(
        resample(f, prep.grid_affine, oriented, shape, order=0 if nearest else 1), back) for f in full])
    np.testing.assert_allclose(invert(prep, data, nearest=nearest), ref, atol=1e-6)


def test_a_scan_of_air_crops_to_nothing_and_inverts_to_zeros():
    vol = Volume(np.full((20, 24, 28), -1000.0, np.float32), np.eye(4), {"modality": "CT"})
    prep = preprocess(vol, PreprocessConfig(spacing=(1.0, 1.0, 1.0)))
    assert prep.image.numel() == 0
    back = invert(prep, np.zeros((2, *prep.image.shape[1:]), np.float32), nearest=False)
    assert back.shape == (2, 20, 24, 28) and not back.any()


def test_modality_guess_and_mr_normalisation():
    rng = np.random.default_rng(0)
    ct = Volume(rng.normal(-900, 50, (20, 20, 20)).astype(np.float32), np.eye(4), {"warnings": []})
    ct.array[5:15, 5:15, 5:15] = 40
    mr = Volume(np.abs(rng.normal(300, 100, (20, 20, 20))).astype(np.float32), np.eye(4), {"warnings": []})
    assert guess_modality(ct) == "CT" and guess_modality(mr) == "MR"
    prep = preprocess(mr, PreprocessConfig(spacing=(1, 1, 1), crop_margin_mm=None))
    assert prep.modality == "MR" and float(prep.image.max()) == pytest.approx(1.0)


def test_config_is_checked_and_round_trips():
    with pytest.raises(ValueError, match="spacing"):
        PreprocessConfig(spacing=(1, -1, 1))
    with pytest.raises(ValueError, match="ct_window"):
        PreprocessConfig(ct_window=(100, -100))
    cfg = PreprocessConfig(spacing=(0.7, 0.7, 1.0))
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
