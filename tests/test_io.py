"""Image I/O: round trips across formats and orientations, and real files of ../shared/data."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from pipeline.core.errors import InputError
from pipeline.io import Volume, read_image, read_label_map, write_image
from tests.conftest import shared, shared_slicer


def _volume(axcodes: str, spacing=(0.75, 1.25, 2.0), dtype=np.int16, oblique: bool = False) -> Volume:
    rng = np.random.default_rng(0)
    arr = rng.integers(-1000, 2000, size=(7, 9, 11)).astype(dtype)
    aff = np.diag([*spacing, 1.0])
    aff[:3, 3] = (-12.5, 30.25, -100.0)
    img = nib.Nifti1Image(arr, aff)
    ornt = nib.orientations.ornt_transform(nib.orientations.io_orientation(aff),
                                           nib.orientations.axcodes2ornt(tuple(axcodes)))
    img = img.as_reoriented(ornt)
    affine = img.affine.copy()
    if oblique:  # rotate 10 degrees about z: still orthogonal axes
        c, s = np.cos(np.radians(10)), np.sin(np.radians(10))
        affine = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]) @ affine
    return Volume(np.asanyarray(img.dataobj).copy(), affine, {"warnings": []})


@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".nrrd", ".mha"])
@pytest.mark.parametrize("axcodes", ["RAS", "LPS", "PIR", "SLA"])
def test_round_trip_keeps_array_and_affine(tmp_path, ext, axcodes):
    vol = _volume(axcodes)
    path = write_image(vol, tmp_path / f"img{ext}")
    back = read_image(path)
    assert back.array.dtype == vol.array.dtype
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-5)  # NIfTI stores float32
    assert back.axcodes == tuple(axcodes)
    assert not list(tmp_path.glob(".*partial*")), "temporary file left behind"


@pytest.mark.parametrize("ext", [".nrrd", ".mha"])
def test_oblique_round_trip_is_exact_in_text_formats(tmp_path, ext):
    vol = _volume("LPS", oblique=True)
    back = read_image(write_image(vol, tmp_path / f"img{ext}"))
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-9)
    np.testing.assert_array_equal(back.array, vol.array)


def test_format_is_sniffed_from_content(tmp_path):
    vol = _volume("RAS")
    p = write_image(vol, tmp_path / "img.nrrd")
    wrong = tmp_path / "actually_nrrd.nii.gz"
    wrong.write_bytes(p.read_bytes())
    np.testing.assert_array_equal(read_image(wrong).array, vol.array)


def test_spacing_and_axcodes_properties():
    vol = _volume("PIR", spacing=(0.5, 0.7, 3.0))
    assert vol.axcodes == ("P", "I", "R")
    np.testing.assert_allclose(sorted(vol.spacing), [0.5, 0.7, 3.0])


# ----------------------------------------------------------------------------------------- real files
def test_dicom_jpeg2000_series_matches_reference_grid():
    vol = read_image(shared("dicom_totalseg_example_ct"))
    ref = nib.load(shared("totalsegmentator/example_seg_dicom.nii.gz"))
    assert vol.shape == ref.shape == (512, 512, 20)
    assert vol.meta["modality"] == "CT" and vol.meta["format"] == "dicom"
    assert "1.2.840.10008.1.2.4.90" in vol.meta["transfer_syntax"]  # JPEG 2000 lossless, decoded
    assert vol.array.min() == -1024 and vol.array.max() == 1839
    np.testing.assert_allclose(vol.spacing, [0.9765625, 0.9765625, 2.0], atol=1e-6)
    # same world position of every corner voxel, whatever each tool's storage order
    corners = np.array([[i, j, k, 1] for i in (0, 511) for j in (0, 511) for k in (0, 19)], dtype=float)
    ours = {tuple(np.round((vol.affine @ c)[:3], 2)) for c in corners}
    theirs = {tuple(np.round((ref.affine @ c)[:3], 2)) for c in corners}
    assert ours == theirs
    # and the bone of the reference vertebra labels is bright in our image at the same world points
    seg = np.asanyarray(ref.dataobj)
    ijk = np.argwhere(seg == 32)[::500]
    xyz = nib.affines.apply_affine(ref.affine, ijk)
    ours_ijk = np.rint(nib.affines.apply_affine(np.linalg.inv(vol.affine), xyz)).astype(int)
    hu = vol.array[tuple(ours_ijk.T)]
    assert np.median(hu) > 100, "vertebra T12 should be bone in HU"


def test_dicom_sagittal_oblique_mr_matches_dicom2nifti():
    vol = read_image(shared("dicom_dicom2nifti_mr_sagittal/001"))
    ref = nib.load(shared("dicom_dicom2nifti_mr_sagittal/001_ground_truth.nii.gz"))
    assert vol.shape == ref.shape
    ref_arr = np.asanyarray(ref.dataobj).astype(np.float32)
    # compare voxel values at the same world points (storage order may differ)
    ijk = np.stack(np.meshgrid(*[np.arange(0, n, 17) for n in vol.shape], indexing="ij"), -1).reshape(-1, 3)
    xyz = nib.affines.apply_affine(vol.affine, ijk)
    rijk = np.rint(nib.affines.apply_affine(np.linalg.inv(ref.affine), xyz)).astype(int)
    assert np.all((rijk >= 0) & (rijk < np.array(ref.shape))), "grids do not cover the same world points"
    np.testing.assert_array_equal(vol.array[tuple(ijk.T)], ref_arr[tuple(rijk.T)])
    assert "".join(vol.axcodes)[:2] == "PI"


def test_single_dicom_slice_is_refused_with_reason():
    with pytest.raises(InputError, match="only one slice"):
        read_image(shared("dicom_pydicom_ct_small/CT_small.dcm"))


@pytest.mark.parametrize("rel, axcodes, shape", [
    ("sct_testing_data/t2/t2.nii.gz", "PSR", (60, 55, 52)),
    ("sct_testing_data/t1/t1w.nii.gz", "RAS", (42, 76, 77)),
    ("tptbox_samples/sample_mri/sub-mri_label-6_T2w.nii.gz", "PIR", (68, 52, 67)),
    ("totalsegmentator/example_mr_sm.nii.gz", "LPS", (117, 91, 20)),
    ("totalsegmentator/example_ct_sm.nii.gz", "RAS", (122, 101, 30)),
])
def test_real_nifti_geometry(rel, axcodes, shape):
    vol = read_image(shared(rel))
    assert "".join(vol.axcodes) == axcodes
    assert vol.shape == shape


def test_verse_float64_mask_reads_as_labels_with_centroids():
    path = shared("verse_sample_mask_only/sub-verse004_seg-vert_msk.nii.gz")
    vol = read_label_map(path)
    assert vol.array.dtype.kind == "u"
    assert set(np.unique(vol.array)) - {0} == set(range(16, 25))
    assert "".join(vol.axcodes) == "PIR"
    # the VerSe centroid JSON gives body centroids in PIR voxel units: ours (whole vertebra, arch included)
    # sit at the same height and side, and 5-20 voxels posterior of the body's
    ctd = json.loads(shared("verse_sample_mask_only/sub-verse004_seg-subreg_ctd.json").read_text())
    assert ctd[0]["direction"] == ["P", "I", "R"]
    for entry in ctd[1:]:
        d = np.argwhere(vol.array == entry["label"]).mean(0) - np.array([entry["X"], entry["Y"], entry["Z"]])
        assert 5 < d[0] < 20 and abs(d[1]) < 5 and abs(d[2]) < 1.5, (entry, d)


def test_slicer_seg_nrrd_reads_segments():
    vol = read_label_map(shared_slicer("slicerio/Segmentation.seg.nrrd"))
    names = [s["name"] for s in vol.meta["segments"]]
    assert "ribs" in names and len(names) == 7
    assert vol.shape == (128, 128, 34)
    assert "".join(vol.axcodes) == "LPS" or vol.axcodes[2] == "S"


def test_slicer_overlapping_seg_nrrd_is_merged_with_warning():
    vol = read_label_map(shared_slicer("slicerio/SegmentationOverlapping.seg.nrrd"))
    assert vol.shape == (128, 128, 34)
    assert len(vol.meta["segments"]) == 8
    assert any("several layers" in w for w in vol.meta["warnings"])
    assert set(np.unique(vol.array)) <= set(range(9))


@pytest.mark.parametrize("axcodes", ["LPS", "PIR", "SAL"])
def test_reorient_keeps_every_world_point(axcodes):
    from pipeline.io import reorient

    vol = _volume("RAS", spacing=(0.7, 1.1, 2.3))
    out = reorient(vol, axcodes)
    assert "".join(out.axcodes) == axcodes
    back = reorient(out, "RAS")
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-12)
    # the voxel at each world point holds the same value
    ijk = np.argwhere(np.ones(vol.shape, bool))[::37]
    xyz = nib.affines.apply_affine(vol.affine, ijk)
    oijk = np.rint(nib.affines.apply_affine(np.linalg.inv(out.affine), xyz)).astype(int)
    np.testing.assert_array_equal(out.array[tuple(oijk.T)], vol.array[tuple(ijk.T)])


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64])
def test_fortran_order_copies_values_and_layout(dtype):
    from pipeline.core.layout import fortran_order

    rng = np.random.default_rng(3)
    c = (rng.random((301, 37, 157)) * 200).astype(dtype)  # over a megabyte: the tiled copy; no side a tile multiple
    assert c.nbytes >= 1 << 20
    for a in (c, c[::-1, 2:, ::3], c.transpose(2, 0, 1), c[:, 0]):  # C order, strided views, a 2-D slice
        out = fortran_order(a)
        assert out.flags.f_contiguous and out.dtype == a.dtype and out.shape == a.shape
        np.testing.assert_array_equal(out, a)
    f = np.asfortranarray(c)
    assert fortran_order(f) is f  # already Fortran order: no copy


@pytest.mark.parametrize("ext", [".nii.gz", ".nrrd", ".mha"])
def test_large_c_ordered_volume_round_trips(tmp_path, ext):
    vol = _volume("LPS")
    rng = np.random.default_rng(4)
    big = Volume(np.ascontiguousarray(rng.integers(-1000, 2000, size=(131, 67, 127)).astype(np.int16)),
                 vol.affine, {"warnings": []})  # 2.2 MB, C order: written through the tiled Fortran copy
    back = read_image(write_image(big, tmp_path / f"big{ext}"))
    np.testing.assert_array_equal(back.array, big.array)
    np.testing.assert_allclose(back.affine, big.affine, atol=1e-5)
