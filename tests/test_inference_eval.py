"""Segmenting with a model folder lands on the input grid; plexus evaluate scores predictions against truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.inference import pick_device, segment, stitch_device
from pipeline.io import reorient, write_image
from pipeline.synth import PhantomConfig, generate_phantom, save_phantom
from pipeline.train.model_io import load_model


@pytest.fixture(scope="module")
def smoke_model(smoke_model_dir):
    return load_model(smoke_model_dir)


@pytest.mark.parametrize("axcodes", ["RAS", "PIR"])
def test_segmentation_is_on_the_input_grid(smoke_model, axcodes):
    model, meta = smoke_model
    ph = generate_phantom(PhantomConfig(levels=("L5", "S1"), spacing=(1.2, 1.2, 1.5), seed=9, fov_lr=20,
                                        fov_back=20, fov_front=25))
    img = reorient(ph.image, axcodes)
    seg = segment(img, model, meta, keep_probabilities=True)
    assert seg.labels.shape == img.shape
    np.testing.assert_array_equal(seg.labels.affine, img.affine)
    assert seg.labels.array.dtype == np.uint8 and set(np.unique(seg.labels.array)) <= {0, 1, 2}
    assert seg.probabilities.shape == (3, *img.shape)
    np.testing.assert_allclose(seg.probabilities.sum(0), 1.0, atol=1e-3)
    np.testing.assert_array_equal(seg.labels.array, seg.probabilities.argmax(0))  # the most probable class


def test_windows_are_stitched_on_the_gpu_only_when_the_whole_output_fits():
    import torch

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert stitch_device(cpu, (400, 400, 700), 3) == cpu
    whole_body = (361, 361, 750)  # a 512 x 512 x 600 CT on the 0.8 mm grid: about 1 GB of float32 per class
    assert stitch_device(gpu, whole_body, 3, free_bytes=130 * 2**30) == gpu
    assert stitch_device(gpu, whole_body, 3, free_bytes=6 * 2**30) == cpu  # a small card: a window at a time


def test_cuda_without_a_gpu_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="no CUDA device"):
        pick_device("cuda")
    assert pick_device("auto").type == "cpu"


def test_evaluate_scores_perfect_and_empty_predictions(tmp_path, capsys):
    ph = generate_phantom(PhantomConfig(levels=("L5", "S1"), spacing=(1.0, 1.0, 1.0), seed=31, fov_lr=25,
                                        fov_back=25, fov_front=30))
    save_phantom(ph, tmp_path / "truth" / "case_a")
    save_phantom(ph, tmp_path / "truth" / "case_b")
    write_image(ph.mask, tmp_path / "pred" / "case_a" / "segmentation.nii.gz")
    write_image(ph.mask.with_array(np.zeros(ph.mask.shape, np.uint8)), tmp_path / "pred" / "case_b.nii.gz")
    assert main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "truth")]) == 0
    assert "2 cases" in capsys.readouterr().out
    res = json.loads((tmp_path / "pred" / "evaluation_summary.json").read_text())
    a, b = res["cases"]
    assert a["dice"] == 1.0 and a["cldice"] == 1.0 and a["hd95_mm"] == 0.0
    assert a["calibre_mae_mm"] < 0.15
    assert b["dice"] == 0.0 and b["centreline_recall"] == 0.0
    assert (tmp_path / "pred" / "evaluation_calibre.csv").read_text().count("\n") > 8


def test_flip_tta_follows_the_model_folder_unless_asked(smoke_model):
    model, meta = smoke_model
    ph = generate_phantom(PhantomConfig(levels=("L5", "S1"), spacing=(1.4, 1.4, 1.6), seed=12, fov_lr=20,
                                        fov_back=20, fov_front=25))
    with_tta = {**meta, "inference": {**meta["inference"], "tta": True}}
    default = segment(ph.image, model, with_tta, keep_probabilities=True).probabilities
    flipped = segment(ph.image, model, meta, tta=True, keep_probabilities=True).probabilities
    plain = segment(ph.image, model, with_tta, tta=False, keep_probabilities=True).probabilities
    np.testing.assert_allclose(default, flipped, atol=1e-6)
    assert np.abs(default - plain).max() > 1e-4  # the flip pass changes the probabilities
