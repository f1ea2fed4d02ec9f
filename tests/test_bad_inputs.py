"""Every bad input gives one clear line naming the file and the problem (exit code 2 from the CLI)."""

from __future__ import annotations

import gzip
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from pipeline.cli import main
from pipeline.core.errors import InputError
from pipeline.io import read_image


def _nifti(path, arr, affine=None):
    nib.save(nib.Nifti1Image(arr, np.eye(4) if affine is None else affine), str(path))
    return path


def _zero_spacing_nifti(path):
    """A NIfTI whose header says one voxel dimension is 0 mm, as some broken converters write it."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((8, 8, 8))
    hdr.set_data_dtype(np.float32)
    hdr["pixdim"][1:4] = [1.0, 0.0, 1.0]
    hdr["qform_code"], hdr["sform_code"], hdr["vox_offset"] = 1, 0, 352
    with open(path, "wb") as fh:
        fh.write(hdr.binaryblock + b"\x00" * 4 + np.zeros(512, np.float32).tobytes())
    return path


def _bad_files(tmp):
    """(path, expected message fragment) for each kind of bad input."""
    good = _nifti(tmp / "good.nii.gz", np.random.default_rng(0).normal(size=(20, 20, 20)).astype(np.float32))
    data = good.read_bytes()
    (tmp / "truncated.nii.gz").write_bytes(data[: len(data) // 2])
    (tmp / "empty.nii.gz").write_bytes(b"")
    (tmp / "garbage.nii.gz").write_bytes(b"this is not an image at all" * 20)
    (tmp / "emptydir").mkdir()
    return [
        (tmp / "missing.nii.gz", "no such file"),
        (tmp / "empty.nii.gz", "empty file"),
        (tmp / "truncated.nii.gz", "truncated or corrupt"),
        (tmp / "garbage.nii.gz", "unrecognised file format"),
        (tmp / "emptydir", "no DICOM"),
        (_nifti(tmp / "flat.nii.gz", np.zeros((20, 20), np.float32)), "2-D image"),
        (_nifti(tmp / "oneslice.nii.gz", np.zeros((20, 20, 1), np.float32)), "single slice"),
        (_nifti(tmp / "fourd.nii.gz", np.zeros((8, 8, 8, 3), np.float32)), "4-D image with 3 volumes"),
        (_nifti(tmp / "nan.nii.gz", np.full((8, 8, 8), np.nan, np.float32)), "NaN"),
        (_zero_spacing_nifti(tmp / "zerospacing.nii"), "zero or negative voxel spacing"),
    ]


def test_each_bad_input_raises_input_error_naming_the_file(tmp_path):
    for path, fragment in _bad_files(tmp_path):
        with pytest.raises(InputError) as info:
            read_image(path)
        msg = str(info.value)
        assert str(path) in msg, msg
        assert fragment in msg, msg
        assert "\n" not in msg


def test_cli_exits_2_with_one_line(tmp_path, capsys):
    for path, fragment in _bad_files(tmp_path):
        code = main(["info", str(path)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2
        assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err


def test_cli_subprocess_exit_code_and_no_traceback(tmp_path):
    bad = tmp_path / "truncated.nii.gz"
    bad.write_bytes(gzip.compress(b"\x5c\x01" + b"\x00" * 100)[:40])
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "info", str(bad)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert str(bad) in proc.stderr


def test_first_volume_of_4d_on_request(tmp_path):
    arr = np.arange(8 * 8 * 8 * 2, dtype=np.float32).reshape(8, 8, 8, 2)
    vol = read_image(_nifti(tmp_path / "fourd.nii.gz", arr), first_volume=True)
    np.testing.assert_array_equal(vol.array, arr[..., 0])
    assert any("first volume" in w for w in vol.meta["warnings"])


def test_some_nan_voxels_are_replaced_with_a_warning(tmp_path):
    arr = np.ones((8, 8, 8), np.float32)
    arr[0, 0, :3] = np.nan
    vol = read_image(_nifti(tmp_path / "somenan.nii.gz", arr))
    assert np.isfinite(vol.array).all()
    assert any("3 NaN/Inf voxels" in w for w in vol.meta["warnings"])


def test_huge_declared_image_is_refused_before_allocation(tmp_path):
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((2000, 2000, 2000))
    hdr.set_data_dtype(np.int16)
    path = tmp_path / "huge.nii"
    with open(path, "wb") as fh:  # header only: the data would be 16 GB
        fh.write(hdr.binaryblock)
        fh.write(b"\x00" * 4)
    with pytest.raises(InputError, match="2000x2000x2000"):
        read_image(path)


def test_sheared_affine_is_refused(tmp_path):
    aff = np.eye(4)
    aff[0, 1] = 0.5
    with pytest.raises(InputError, match="sheared"):
        read_image(_nifti(tmp_path / "shear.nii.gz", np.zeros((8, 8, 8), np.float32), aff))
