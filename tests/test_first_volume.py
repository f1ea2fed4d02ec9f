"""``--first-volume``: a 4-D image (a time series, several echoes) read as its first volume by the commands that
read scans; without the flag, the one-line error that names the flag."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from pipeline.cli import main
from pipeline.io import write_image


@pytest.fixture(scope="module")
def four_d(tmp_path_factory):
    """A small CT phantom (mask and scan) and the scan stored as two volumes: the scan, then its negative."""
    from pipeline.synth import PhantomConfig, generate_phantom

    d = tmp_path_factory.mktemp("fourd")
    ph = generate_phantom(PhantomConfig(levels=("L5", "S1"), spacing=(1.4, 1.4, 1.6), seed=61, fov_lr=20,
                                        fov_back=20, fov_front=25))
    write_image(ph.mask, d / "mask.nii.gz")
    arr = np.asarray(ph.image.array, dtype=np.int16)
    nib.save(nib.Nifti1Image(np.stack([arr, -arr], axis=-1), ph.image.affine), str(d / "scan4d.nii.gz"))
    return d, ph


def test_info_reads_the_first_volume_on_request(four_d, capsys):
    d, ph = four_d
    assert main(["info", str(d / "scan4d.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert "scan4d.nii.gz: 4-D image with 2 volumes; pass --first-volume to use the first" in err
    assert main(["info", str(d / "scan4d.nii.gz"), "--first-volume"]) == 0
    out = capsys.readouterr()
    assert f"shape:     {tuple(ph.image.shape)}" in out.out and "first volume" in out.err
    assert f"range:     {float(ph.image.array.min()):.1f}" in out.out  # the first volume, not the negative


def test_measure_reads_the_first_volume_of_its_image(four_d, tmp_path, capsys):
    d, _ = four_d
    args = ["-q", "measure", str(d / "mask.nii.gz"), "-o", str(tmp_path / "m"), "--image", str(d / "scan4d.nii.gz")]
    assert main(args) == 2
    assert "pass --first-volume" in capsys.readouterr().err
    assert main([*args, "--first-volume"]) == 0
    assert (tmp_path / "m" / "qc.png").exists() and (tmp_path / "m" / "calibre.csv").exists()


def test_infer_reads_the_first_volume(four_d, smoke_model_dir, tmp_path):
    d, ph = four_d
    args = ["-q", "infer", str(d / "scan4d.nii.gz"), "--model", str(smoke_model_dir)]
    assert main([*args, "-o", str(tmp_path / "plain")]) == 1
    run = json.loads((tmp_path / "plain" / "run.json").read_text())
    assert "pass --first-volume" in run["failures"][0]["error"]
    assert main([*args, "-o", str(tmp_path / "first"), "--first-volume"]) == 0
    seg = nib.load(str(tmp_path / "first" / "scan4d" / "segmentation.nii.gz"))
    assert seg.shape == tuple(ph.image.shape)
