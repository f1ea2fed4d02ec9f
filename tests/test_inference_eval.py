"""Segmenting with a model folder lands on the input grid; plexus evaluate scores predictions against truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.inference.model import load_model
from pipeline.inference.predictor import pick_device, stitch_device
from pipeline.inference.segmentation import segment
from pipeline.io import reorient, write_image
from pipeline.synth import PhantomConfig, generate_phantom, save_phantom


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


def test_flip_tta_is_the_mean_with_the_mirrored_prediction(smoke_model):
    """The flip pass averages the prediction with the mirrored image's prediction mirrored back (on the CPU the
    mirror is a NumPy view, not a copy: checked against torch.flip)."""
    import torch

    from pipeline.inference.predictor import predict

    model, meta = smoke_model
    x = torch.rand((1, 1, 23, 19, 29), generator=torch.Generator().manual_seed(5))
    x[:, :, :8] += 2.0  # nothing symmetric about it
    cpu = torch.device("cpu")
    plain = predict(x, model, meta, device=cpu, tta=False)
    mirrored = predict(torch.flip(x, dims=[2]), model, meta, device=cpu, tta=False)
    both = predict(x, model, meta, device=cpu, tta=True)
    assert plain.shape == (1, 3, 23, 19, 29)
    np.testing.assert_allclose(plain.sum(1).numpy(), 1.0, atol=1e-5)
    np.testing.assert_allclose(both.numpy(), (0.5 * (plain + torch.flip(mirrored, dims=[2]))).numpy(), atol=1e-6)
    assert (both - plain).abs().max() > 1e-4


def test_softmax_background_and_labels_in_slabs_equal_the_whole_volume_forms():
    import torch

    from pipeline.inference.predictor import argmax_labels, background_and_labels, softmax_in_slabs

    logits = torch.randn((1, 4, 13, 7, 11), generator=torch.Generator().manual_seed(2)) * 5
    ref = torch.softmax(logits, dim=1)
    got = softmax_in_slabs(logits.clone(), voxels=100)  # slabs of one or two planes, a last short one
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-6)
    rng = np.random.default_rng(1)
    prob = (rng.random((4, 13, 7, 11)) * 0.4).astype(np.float32)
    prob[1:, 3] = 0.0  # a plane with no foreground: background 1
    prob[1, 5, :, :] = prob[2, 5, :, :] = 0.45  # ties between classes 1 and 2: the first wins
    prob[1:, 7] = 0.6  # foreground over 1: background clipped to 0
    prob[1:, 9] = np.array([0.375, 0.25, 0.0])[:, None, None]  # background 0.375 exactly: a tie of classes 0 and 1
    expected_bg = np.clip(1.0 - prob[1:].sum(0), 0.0, 1.0)
    expected = np.concatenate([expected_bg[None], prob[1:]]).argmax(0)
    for voxels in (50, 1 << 18):
        back = prob.copy()
        labels = background_and_labels(back, voxels=voxels)
        np.testing.assert_array_equal(back[0], expected_bg)
        np.testing.assert_array_equal(labels, expected)
        assert labels.dtype == np.uint8
    for c in (1, 2, 3):
        np.testing.assert_array_equal(argmax_labels(prob[:c]), prob[:c].argmax(0))
