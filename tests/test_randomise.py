"""Domain-randomised training data (issue 20): the synthesis is deterministic per seed and covers its ranges, label
maps come from phantoms and real scans, a training step runs on randomised samples, and the leave-one-scan-out
split never puts a patient's scan on both sides."""

from __future__ import annotations

import json
from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest
import torch

from pipeline.core.errors import InputError
from pipeline.synth import preset_config
from pipeline.synth.labelmaps import (
    CSF_LABEL,
    LABEL_MAP_VERSION,
    PLEXUS,
    SCAN_CLASSES,
    LabelCase,
    is_current,
    load_label_case,
    phantom_label_case,
    save_label_case,
)
from pipeline.synth.randomise import RANGES, RandomisationRanges, draw, randomise, render
from pipeline.train.config import AugmentConfig, load_config
from pipeline.train.loop import train
from pipeline.train.randomised import RandomisedStream, label_patch, real_image
from pipeline.train.scans import eligible, loso_folds, read_registry, training_scans
from tests.conftest import ROOT

SHARED = ROOT.parent / "shared" / "data"


def _toy(shape=(40, 40, 40)) -> tuple[np.ndarray, np.ndarray]:
    """Two tissues and a 2.4 mm vein along z (fraction from the exact distance)."""
    labels = np.full(shape, 3, np.uint8)
    labels[:, shape[1] // 2:] = 7
    x, y = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    d = np.hypot(x - shape[0] / 2, y - shape[1] / 3)
    frac = np.clip(1.5 - d + 0.5, 0, 1)[..., None].repeat(shape[2], 2).astype(np.float32)
    labels[frac >= 0.5] = PLEXUS
    return labels, frac


def test_the_same_seed_gives_the_same_image_and_another_seed_another():
    labels, frac = _toy()
    a = randomise(labels, frac, spacing=(0.8, 0.8, 0.8), centres={}, rng=np.random.default_rng(5))
    b = randomise(labels, frac, spacing=(0.8, 0.8, 0.8), centres={}, rng=np.random.default_rng(5))
    c = randomise(labels, frac, spacing=(0.8, 0.8, 0.8), centres={}, rng=np.random.default_rng(6))
    assert a.dtype == np.float32 and a.shape == labels.shape
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)
    assert 0.0 <= a.min() and a.max() <= 1.0


def test_draws_cover_every_range():
    rng = np.random.default_rng(0)
    d = [draw(rng) for _ in range(800)]
    modes = [x.vein_mode for x in d]
    assert abs(modes.count("bright") / 800 - RANGES.p_vein_bright) < 0.06
    assert abs(modes.count("dark") / 800 - RANGES.p_vein_dark) < 0.06
    assert modes.count("faint") > 40
    bright = [x.vein_contrast for x in d if x.vein_mode == "bright"]
    dark = [x.vein_contrast for x in d if x.vein_mode == "dark"]
    lo, hi = RANGES.vein_contrast
    assert min(bright) < lo + 0.05 and max(bright) > hi - 0.05 and max(dark) < 0 and min(dark) < -(hi - 0.05)
    acq = np.array([x.acquisition_mm for x in d if x.acquisition_mm is not None])
    assert abs(len(acq) / 800 - RANGES.p_low_resolution) < 0.06
    assert acq.max() > RANGES.slice_mm[1] - 0.2 and acq.min() < RANGES.resolution_mm[0] + 0.1
    noise = [x.noise_sd for x in d]
    assert min(noise) < 0.005 and max(noise) > RANGES.noise_sd[1] - 0.005
    assert 0.2 < np.mean([x.rician for x in d]) < 0.6
    assert {x.n_tubes for x in d} == set(range(RANGES.extra_tubes[0], RANGES.extra_tubes[1] + 1))
    for flag, p in (("plate", RANGES.p_plate), ("flow", RANGES.p_flow), ("source_contrast", RANGES.p_source_contrast)):
        assert abs(np.mean([getattr(x, flag) for x in d]) - p) < 0.06, flag
    assert abs(np.mean([x.ringing_keep is not None for x in d]) - RANGES.p_ringing) < 0.05
    assert abs(np.mean([x.ghost is not None for x in d]) - RANGES.p_motion) < 0.05
    gam = np.log([x.gamma for x in d])
    assert abs(gam.std() - RANGES.gamma_sd) < 0.05


@pytest.mark.parametrize("mode, sign", [("bright", 1), ("dark", -1)])
def test_veins_come_out_bright_or_dark_against_the_tissue_around(mode, sign):
    labels, frac = _toy()
    base = draw(np.random.default_rng(1))
    choice = replace(base, vein_mode=mode, vein_contrast=sign * 0.4, n_tubes=0, plate=False, flow=False,
                     acquisition_mm=None, bias=0.0, noise_sd=0.01, ringing_keep=None, ghost=None, gamma=1.0,
                     window_top=None)
    img = render(labels, frac, spacing=(0.8,) * 3, centres={}, choice=choice)
    vein = img[frac > 0.9].mean()
    around = img[(frac == 0) & (labels == 3)].mean()  # the tissue the vein runs in
    assert sign * (vein - around) > 0.1


def test_ranges_are_checked_up_front():
    with pytest.raises(ValueError, match="noise_sd"):
        RandomisationRanges(noise_sd=(0.1, 0.05))
    with pytest.raises(ValueError, match="p_vein_bright"):
        RandomisationRanges(p_vein_bright=0.8, p_vein_dark=0.3)
    labels, frac = _toy()
    with pytest.raises(ValueError, match="spacing"):
        randomise(labels, frac, spacing=(0.8, 0.8), centres={}, rng=np.random.default_rng(0))


@pytest.fixture(scope="module")
def phantom_case():
    return phantom_label_case(preset_config("lumbar-ct", seed=11, levels=("L4", "L5")), spacing=1.2)


def test_phantom_label_maps_hold_the_tissues_the_plexus_and_the_bone(phantom_case, tmp_path):
    c = phantom_case
    assert c.spacing == (1.2, 1.2, 1.2) and c.source == "phantom:11"
    present = set(np.unique(c.labels).tolist())
    assert {CSF_LABEL, PLEXUS} <= present
    assert np.array_equal(c.labels == PLEXUS, c.classes == 1)
    assert (c.classes == 2).sum() > 1000 and np.mean(c.fraction[c.classes == 1] >= 0.4) > 0.95
    back = load_label_case(save_label_case(c, tmp_path / "c.npz"))
    assert np.array_equal(back.labels, c.labels) and back.centres == c.centres and back.case_id == c.case_id


def test_a_label_map_cache_of_an_older_version_is_remade(phantom_case, tmp_path):
    """A training cache written before a label-map fix (no version, or another one) is not reused."""
    path = save_label_case(phantom_case, tmp_path / "c.npz")
    assert is_current(path) and not is_current(path, with_image=True)     # a phantom's map keeps no image
    assert not is_current(tmp_path / "absent.npz")
    with np.load(path) as z:
        old = {k: z[k] for k in z.files if k != "version"}
    np.savez_compressed(tmp_path / "v1.npz", **old)                        # as written before versions
    np.savez_compressed(tmp_path / "v9.npz", **old, version=LABEL_MAP_VERSION + 7)
    assert not is_current(tmp_path / "v1.npz") and not is_current(tmp_path / "v9.npz")
    assert load_label_case(tmp_path / "v1.npz").case_id == phantom_case.case_id     # still readable


def test_label_patches_keep_labels_and_classes_together(phantom_case):
    aug = AugmentConfig(flip_lr=1.0, affine=1.0)
    for seed in range(4):
        lab, frac, cls = label_patch(phantom_case, (32, 32, 32), np.random.default_rng(seed), pos=1.0, aug=aug)
        assert lab.shape == frac.shape == cls.shape == (32, 32, 32)
        assert np.array_equal(lab == PLEXUS, cls == 1)
        assert (cls == 1).any()  # plexus-centred


def test_the_stream_is_a_pure_function_of_the_index(phantom_case):
    class Fallback(torch.utils.data.Dataset):
        def __getitem__(self, i):
            return {"image": torch.full((1, 8, 8, 8), float(i)), "label": torch.zeros((1, 8, 8, 8), dtype=torch.long)}

    s = RandomisedStream([phantom_case], Fallback(), probability=0.5, patch=(32, 32, 32), pos=0.7,
                         aug=AugmentConfig(), seed=3, length=20)
    items = [s[i] for i in range(12)]
    assert torch.equal(s[5]["image"], items[5]["image"])
    shapes = {tuple(x["image"].shape) for x in items}
    assert shapes == {(1, 32, 32, 32), (1, 8, 8, 8)}  # both kinds of sample
    with pytest.raises(ValueError, match="probability"):
        RandomisedStream([phantom_case], None, probability=0.5, patch=(32,) * 3, pos=0.7, aug=AugmentConfig(),
                         seed=0, length=1)


def _with_image(case: LabelCase) -> LabelCase:
    """``case`` with a 'real' image: 0.9 in the veins, 0.1 elsewhere (a hybrid whose veins are plain to see)."""
    return replace(case, image=np.where(case.classes == 1, 0.9, 0.1).astype(np.float32), source="scan")


def test_real_image_samples_take_the_hybrids_own_image(phantom_case, tmp_path):
    real = _with_image(phantom_case)
    back = load_label_case(save_label_case(real, tmp_path / "r.npz"))
    assert np.allclose(back.image, real.image, atol=1e-3)
    assert load_label_case(save_label_case(phantom_case, tmp_path / "p.npz")).image is None
    def stream():
        return RandomisedStream([real], None, probability=1.0, patch=(32, 32, 32), pos=1.0, aug=AugmentConfig(),
                                seed=1, length=8, p_real_image=1.0)

    s, again = stream(), stream()
    for i in range(4):
        img, lab = s[i]["image"][0].numpy(), s[i]["label"][0].numpy()
        assert torch.equal(s[i]["image"], again[i]["image"]) and 0 <= img.min() and img.max() <= 1  # per index
        # the hybrid's image, jittered: the veins stay far brighter than the rest (a synthesised image would not)
        assert img[lab == 1].mean() > img[lab == 0].mean() + 0.4
    # a map without an image (a phantom's) is always synthesised: p_real_image changes none of its samples
    args = dict(probability=1.0, patch=(32, 32, 32), pos=0.7, aug=AugmentConfig(), seed=2, length=4)
    a = RandomisedStream([phantom_case], None, p_real_image=1.0, **args)
    b = RandomisedStream([phantom_case], None, p_real_image=0.0, **args)
    assert all(torch.equal(a[i]["image"], b[i]["image"]) for i in range(3))
    with pytest.raises(ValueError, match="p_real_image"):
        RandomisedStream([real], None, p_real_image=1.5, **args)


def test_real_image_jitter_is_mild_and_stays_in_range():
    img = np.linspace(0, 1, 4096, dtype=np.float32).reshape(16, 16, 16)
    for seed in range(20):
        out = real_image(img, np.random.default_rng(seed))
        assert out.shape == img.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
        assert np.corrcoef(out.ravel(), img.ravel())[0, 1] > 0.9


def _registry(tmp_path) -> tuple:
    """A registry of fake scans: two of one patient, one other, one without an image."""
    vol = nib.Nifti1Image(np.zeros((8, 8, 8), np.uint8), np.eye(4))
    for n in ("a1", "a2", "b", "v"):
        nib.save(vol, tmp_path / f"{n}.nii.gz")
    text = """scans:
  - {id: a1, image: a1.nii.gz, vertebrae: a1.nii.gz, modality: CT, hybrid: true, patient: A}
  - {id: a2, image: a2.nii.gz, vertebrae: a2.nii.gz, modality: CT, hybrid: true, patient: A}
  - {id: b, image: b.nii.gz, modality: MR, hybrid: true}
  - {id: v, vertebrae: v.nii.gz, modality: CT}
"""
    path = tmp_path / "scans.yaml"
    path.write_text(text)
    return path, read_registry(path)


def test_leave_one_scan_out_never_puts_a_patient_on_both_sides(tmp_path):
    _, entries = _registry(tmp_path)
    folds = loso_folds(entries)
    assert [f[0] for f in folds] == ["A", "b"]
    for _, held, trained in folds:
        assert held and not set(held) & set(trained)
        groups = {e.group for e in entries if e.id in held}
        assert not groups & {e.group for e in entries if e.id in trained}
    a1 = next(e for e in entries if e.id == "a1")
    assert not eligible(["a2", "v"], a1, entries)       # saw the same patient's other scan
    assert eligible(["b", "v"], a1, entries)


def test_a_run_lists_the_real_scans_it_saw_and_refuses_unknown_exclusions(tmp_path):
    path, _ = _registry(tmp_path)
    smoke = ROOT / "configs" / "smoke.yaml"
    cfg = load_config(smoke, [f"data.randomised={{scans: {path}, exclude_scans: [a2]}}"])
    assert training_scans(cfg) == ["a1", "v"]           # b has no vertebra map: not a label-map source
    bad = load_config(smoke, [f"data.randomised={{scans: {path}, exclude_scans: [zz]}}"])
    with pytest.raises(InputError, match="'zz' is not a scan"):
        training_scans(bad)


def test_the_shipped_registry_is_valid():
    entries = read_registry(ROOT / "configs" / "real_scans.yaml")
    assert len({e.id for e in entries}) == len(entries) >= 8
    assert {e.modality for e in entries if e.hybrid} == {"CT", "MR"}


def test_config_ranges_change_the_generators_and_are_checked(tmp_path):
    cfg = load_config(ROOT / "configs" / "plexus.yaml", [
        "data.randomised.ranges={p_vein_bright: 0.4, p_vein_dark: 0.4, faint_contrast: [0.04, 0.2], extra_tubes: [1, 5]}"])
    r = cfg.data.randomised.randomisation_ranges()
    assert (r.p_vein_bright, r.p_vein_dark, r.faint_contrast, r.extra_tubes) == (0.4, 0.4, (0.04, 0.2), (1, 5))
    assert r.noise_sd == RANGES.noise_sd  # the rest stay the defaults
    assert load_config(ROOT / "configs" / "plexus.yaml").data.randomised.randomisation_ranges() == RANGES
    for bad, word in (("{p_vein_brite: 0.4}", "p_vein_brite"), ("{p_vein_bright: 0.8, p_vein_dark: 0.4}", "exceed"),
                      ("{vein_contrast: [0.5, 0.1]}", "vein_contrast")):
        with pytest.raises(InputError, match=word):
            load_config(ROOT / "configs" / "plexus.yaml", [f"data.randomised.ranges={bad}"])


def test_a_training_step_runs_on_randomised_data(tmp_path, monkeypatch):
    import pipeline.train.loop as loop

    seen = []

    class Spy(RandomisedStream):
        def __init__(self, *a, **kw):
            seen.append(kw["ranges"])
            super().__init__(*a, **kw)

    monkeypatch.setattr(loop, "RandomisedStream", Spy)
    cfg = load_config(ROOT / "configs" / "smoke.yaml", [
        f"output.run_dir={tmp_path / 'run'}", f"output.model_dir={tmp_path / 'model'}", "train.iterations=3",
        "train.val_every=3", "data.randomised={probability: 1.0, phantoms: {count: 1, presets: [lumbar-ct], seed: 77}, "
        "ranges: {p_vein_dark: 0.35}}"])
    result = train(cfg)
    assert [r.p_vein_dark for r in seen] == [0.35]  # the config's ranges reach the generator
    assert result["step"] == 3 and np.isfinite(result["val_dice"])
    assert (tmp_path / "run" / "cache" / "labels" / "phantom_000077.npz").exists()
    meta = json.loads((tmp_path / "model" / "metadata.json").read_text())
    assert meta["training_scans"] == []


@pytest.mark.skipif(not (SHARED / "tptbox_samples").exists(), reason=f"real data not available: {SHARED} is absent")
def test_a_real_scan_gives_a_label_map_of_its_own_anatomy():
    from pipeline.io.formats import read_image
    from pipeline.io.vertebrae import read_vertebrae
    from pipeline.synth.labelmaps import scan_label_case

    d = SHARED / "tptbox_samples" / "sample_mri"
    img = read_image(d / "sub-mri_label-6_T2w.nii.gz")
    vmap = read_vertebrae(d / "sub-mri_seg-vert_label-6_msk.nii.gz")
    c = scan_label_case(img, vmap, modality="MR", seed=3, scan_id="tptbox_t2", spacing=1.0, n_classes=6)
    assert isinstance(c, LabelCase) and c.source == "tptbox_t2"
    classes = set(np.unique(c.labels).tolist()) - {PLEXUS}
    assert classes == set(range(SCAN_CLASSES, SCAN_CLASSES + 6))
    assert (c.classes == 1).sum() > 100 and (c.classes == 2).sum() > 1000
    assert np.all((c.labels == PLEXUS) == (c.classes == 1))
    # the hybrid's own image is kept, normalised, on the map's grid (for data.randomised.p_real_image)
    assert c.image is not None and c.image.shape == c.labels.shape
    assert 0 <= c.image.min() and c.image.max() <= 1 and c.image.std() > 0.05
