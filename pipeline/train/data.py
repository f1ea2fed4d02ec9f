"""Training cases and the deterministic sample stream of a run.

Classes: 0 background, 1 epidural venous plexus, 2 vertebral bone. Cases come from a datalist (MSD-style
JSON or CSV ``image,label[,vertebrae]``), a folder pair, or synthetic phantoms (written once into the run's
cache). Labels may be NIfTI/NRRD label maps or Slicer ``.seg.nrrd`` files whose segment names are mapped to
classes by ``data.label_map``.

Sample ``i`` of a run is a pure function of ``(seed, i)``: which case, which patch and which augmentation.
A resumed run therefore sees exactly the samples it would have seen, whatever the number of workers.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    EnsureTyped,
    RandAffined,
    RandBiasFieldd,
    RandCropByLabelClassesd,
    RandFlipd,
    RandGaussianNoised,
    RandScaleIntensityd,
    RandShiftIntensityd,
    RandSimulateLowResolutiond,
)

from ..core.errors import InputError, UsageError
from ..core.volume import Volume, same_grid
from ..io.formats import read_image, read_label_map
from ..io.vertebrae import read_vertebrae
from ..io.write import write_image
from ..preprocess.transform import PreprocessConfig, build_transform, guess_modality
from ..synth import generate_phantom, preset_config, save_phantom
from ..synth.hybrid import HybridConfig, generate_hybrid
from .config import AugmentConfig, DataConfig, HybridSource, SyntheticSource, TrainConfig


@dataclass
class Case:
    """One labelled scan. ``truth_dir`` holds phantom truth (``truth_calibre.csv``) when known."""

    case_id: str
    image: Path
    label: Path
    vertebrae: Path | None = None
    modality: str | None = None
    truth_dir: Path | None = None


def _save_case(ph, folder: Path) -> None:
    """A generated case, its class map (plexus 1, bone 2) and the ``.done`` mark that makes it reusable."""
    save_phantom(ph, folder)
    classes = np.where(ph.mask.array > 0, 1, np.where(ph.vertebrae.array > 0, 2, 0)).astype(np.uint8)
    write_image(ph.mask.with_array(classes), folder / "classes.nii.gz")
    (folder / ".done").write_text("ok")


def synthetic_cases(src: SyntheticSource, cache: Path) -> list[Case]:
    """Generate (once) the phantoms of ``src`` into ``cache`` and return them as cases."""
    cases = []
    for k in range(src.count):
        folder = cache / f"synth_{src.seed + k:06d}"
        preset = src.presets[k % len(src.presets)]
        modality = src.modalities[k % len(src.modalities)]
        if not (folder / ".done").exists():
            cfg = preset_config(preset, modality=modality, spacing=tuple(src.spacings[k % len(src.spacings)]),
                                orientation=src.orientations[k % len(src.orientations)], seed=src.seed + k,
                                fov_lr=src.fov_mm[0], fov_back=src.fov_mm[1], fov_front=src.fov_mm[2],
                                sacrum_mm=src.sacrum_mm)
            ph = generate_phantom(cfg)
            _save_case(ph, folder)
        cases.append(Case(folder.name, folder / "image.nii.gz", folder / "classes.nii.gz",
                          folder / "vertebrae.nii.gz", modality, folder))
    return cases


def hybrid_cases(src: HybridSource, cache: Path) -> list[Case]:
    """Generate (once) ``src.count`` hybrid cases of a real scan into ``cache`` and return them as cases."""
    for path in (src.image, src.vertebrae):
        if not path.exists():
            raise InputError(path, "no such file (a data.hybrid source of the config)")
    cases, image, vmap = [], None, None
    for k in range(src.count):
        folder = cache / f"hybrid_{_case_id(src.image)}_{src.seed + k:06d}"
        if not (folder / ".done").exists():
            if image is None:
                image = read_image(src.image)
                vmap = same_grid(image, read_vertebrae(src.vertebrae, src.convention), "vertebra map", "image")
            cfg = HybridConfig(image=str(src.image), vertebrae=str(src.vertebrae), modality=src.modality,
                               seed=src.seed + k, spacing=src.spacing)
            ph = generate_hybrid(image, vmap, cfg)
            _save_case(ph, folder)
        cases.append(Case(folder.name, folder / "image.nii.gz", folder / "classes.nii.gz",
                          folder / "vertebrae.nii.gz", src.modality, folder))
    return cases


def listed_cases(data: DataConfig) -> list[Case]:
    """Cases of a datalist and/or a folder pair."""
    cases: list[Case] = []
    if data.datalist is not None:
        path = data.datalist
        if not path.exists():
            raise InputError(path, "no such datalist")
        if path.suffix == ".json":
            entries = json.loads(path.read_text()).get("training", [])
        else:
            entries = list(csv.DictReader(open(path)))
        for e in entries:
            if "image" not in e or "label" not in e:
                raise InputError(path, f"entry {e} lacks 'image' or 'label'")
            img = (path.parent / e["image"]).resolve()
            cases.append(Case(_case_id(img), img, (path.parent / e["label"]).resolve(),
                              (path.parent / e["vertebrae"]).resolve() if e.get("vertebrae") else None))
    if data.images is not None:
        for img in sorted(p for p in data.images.iterdir() if not p.name.startswith(".")):
            cid = _case_id(img)
            labels = [p for p in data.labels.iterdir() if _case_id(p) == cid]
            if not labels:
                raise InputError(img, f"no label with the same case id in {data.labels}")
            cases.append(Case(cid, img, labels[0]))
    return cases


def _case_id(path: Path) -> str:
    name = path.name
    for ext in (".nii.gz", ".seg.nrrd", ".nii", ".nrrd", ".mha", ".mhd"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def all_cases(cfg: TrainConfig) -> list[Case]:
    cases = listed_cases(cfg.data)
    if cfg.data.synthetic is not None:
        cases += synthetic_cases(cfg.data.synthetic, cfg.output.run_dir / "cache")
    for src in cfg.data.hybrid:
        cases += hybrid_cases(src, cfg.output.run_dir / "cache")
    if len(cases) < 2:
        raise UsageError("data: need at least two labelled cases (one for validation)")
    return cases


def split(cases: list[Case], fraction: float, seed: int) -> tuple[list[Case], list[Case]]:
    """Train/validation split by case, deterministic from ``seed``."""
    order = np.random.default_rng(seed).permutation(len(cases))
    n_val = max(1, int(round(fraction * len(cases))))
    val = [cases[i] for i in order[:n_val]]
    return [cases[i] for i in order[n_val:]], val


def load_classes(path: Path, label_map: dict[str, int]) -> Volume:
    """A class map (0/1/2); Slicer segmentations are mapped by segment name."""
    vol = read_label_map(path)
    segs = vol.meta.get("segments")
    if segs and label_map:
        out = np.zeros(vol.shape, np.uint8)
        for s in segs:
            if s["name"] in label_map:
                out[vol.array == s["label_value"]] = label_map[s["name"]]
        return vol.with_array(out)
    if vol.array.max() > 2:
        raise InputError(path, f"label map holds values up to {int(vol.array.max())}; expected classes 0-2 "
                               "(or give data.label_map for a .seg.nrrd)")
    return vol.with_array(vol.array.astype(np.uint8))


def load_case(case: Case, label_map: dict[str, int]) -> dict:
    """Image, classes (and vertebrae) of a case as MONAI MetaTensors on the image grid."""
    img = read_image(case.image)
    lab = load_classes(case.label, label_map)
    if lab.shape != img.shape:
        raise InputError(case.label, f"label grid {lab.shape} differs from the image's {img.shape}")
    d = {"image": _mt(img.array.astype(np.float32), img.affine), "label": _mt(lab.array, img.affine),
         "modality": case.modality or guess_modality(img), "case_id": case.case_id}
    if case.vertebrae is not None and case.vertebrae.exists():
        d["vertebrae"] = _mt(read_label_map(case.vertebrae).array.astype(np.int16), img.affine)
    return d


def _mt(a: np.ndarray, affine: np.ndarray) -> MetaTensor:
    return MetaTensor(torch.from_numpy(np.ascontiguousarray(a)[None]), affine=torch.as_tensor(affine, dtype=torch.float64))


def preprocess_case(case: Case, cfg: TrainConfig) -> dict:
    """A case on the model grid (the same transform as inference, labels nearest-neighbour)."""
    d = load_case(case, cfg.data.label_map)
    keys = ("label", "vertebrae") if "vertebrae" in d else ("label",)
    pre = PreprocessConfig.from_dict(cfg.preprocess)
    out = build_transform(pre, label_keys=keys)(d)
    out["label"] = out["label"].to(torch.uint8)
    return out


def augmentation(aug: AugmentConfig, patch: tuple[int, int, int], pos: float) -> Compose:
    """Random patch (plexus-centred with probability ``pos``) and augmentations of one sample."""
    keys = ["image", "label"]
    neg = (1.0 - pos) / 2
    rot = np.deg2rad(aug.rotate_deg)
    return Compose([
        RandCropByLabelClassesd(keys=keys, label_key="label", spatial_size=patch, ratios=[neg, pos, neg],
                                num_classes=3, num_samples=1, allow_smaller=True),
        RandFlipd(keys=keys, prob=aug.flip_lr, spatial_axis=0),
        RandAffined(keys=keys, prob=aug.affine, rotate_range=(rot, rot, rot), scale_range=(aug.scale,) * 3,
                    mode=("bilinear", "nearest"), padding_mode="border", spatial_size=patch),
        RandScaleIntensityd(keys="image", factors=0.1, prob=aug.intensity),
        RandShiftIntensityd(keys="image", offsets=0.05, prob=aug.intensity),
        RandGaussianNoised(keys="image", std=0.03, prob=aug.noise),
        RandBiasFieldd(keys="image", coeff_range=(0.0, 0.15), prob=aug.bias_field),
        RandSimulateLowResolutiond(keys="image", zoom_range=(0.6, 1.0), prob=aug.low_resolution),
        EnsureTyped(keys=keys, track_meta=False),
    ])


class SampleStream(torch.utils.data.Dataset):
    """Sample ``i`` = (case, patch, augmentation) drawn from ``np.random.default_rng([seed, i])``."""

    def __init__(self, cached: list[dict], aug: Compose, seed: int, length: int):
        self.cached, self.aug, self.seed, self.length = cached, aug, seed, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, int(i)])
        item = self.cached[int(rng.integers(len(self.cached)))]
        self.aug.set_random_state(seed=int(rng.integers(2**31 - 1)))
        out = self.aug({"image": item["image"], "label": item["label"]})
        out = out[0] if isinstance(out, list) else out
        return {"image": torch.as_tensor(out["image"]).float(), "label": torch.as_tensor(out["label"]).long()}
