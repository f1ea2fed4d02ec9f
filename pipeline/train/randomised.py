"""Domain-randomised samples for ``plexus train`` (``data.randomised``): label maps made once into the run's cache,
images synthesised on the fly.

Sample ``i`` is a pure function of ``(seed, i)`` as in :class:`.data.SampleStream`: with probability
``data.randomised.probability`` a label-map patch (plexus-centred with ``train.pos_fraction``), flipped, rotated
and scaled, then :func:`pipeline.synth.randomise.randomise` makes its image; otherwise the stream's rendered
cases (phantoms, hybrids, the user's own scans) give it. A patch of a real scan's map takes, with
``data.randomised.p_real_image``, that hybrid's own image instead (:func:`real_image`): the real texture, noise and
neighbours of the scan, with the plexus drawn in.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from ..core.volume import Volume, same_grid
from ..io.formats import read_image
from ..io.vertebrae import read_vertebrae
from ..synth import preset_config
from ..synth.labelmaps import (
    LabelCase,
    is_current,
    load_label_case,
    phantom_label_case,
    save_label_case,
    scan_label_case,
)
from ..synth.randomise import RANGES, RandomisationRanges, randomise
from .config import AugmentConfig, TrainConfig
from .scans import randomised_scans

log = logging.getLogger("plexus")


def label_case_files(cfg: TrainConfig, cache: Path) -> list[Path]:
    """Make (once) the label maps of ``data.randomised`` into ``cache/labels`` and return their files."""
    src = cfg.data.randomised
    if src is None:
        return []
    spacing = float(np.min(cfg.preprocess["spacing"]))
    out = []
    if src.phantoms is not None:
        for k in range(src.phantoms.count):
            seed = src.phantoms.seed + k
            path = cache / "labels" / f"phantom_{seed:06d}.npz"
            if not is_current(path):
                preset = src.phantoms.presets[k % len(src.phantoms.presets)]
                save_label_case(phantom_label_case(preset_config(preset, seed=seed), spacing=spacing), path)
            out.append(path)
    for entry in randomised_scans(cfg):
        vol = None
        for k in range(src.per_scan):
            seed = src.seed + k
            path = cache / "labels" / f"{entry.id}_{seed:06d}.npz"
            # a cache of an older label-map version, or written before the hybrid image was kept where the run
            # trains on it, is remade
            if not is_current(path, with_image=src.p_real_image > 0 and entry.image is not None):
                if vol is None:  # a map without its image (VerSe's mask) gets a blank one: bone and the rest
                    vmap = read_vertebrae(entry.vertebrae)
                    image = read_image(entry.image) if entry.image is not None else \
                        Volume(np.zeros(vmap.shape, np.float32), vmap.affine, {"modality": entry.modality})
                    vol = (image, same_grid(image, vmap, "vertebra map", "image"))
                n_classes = src.n_classes if entry.image is not None else 2
                case = scan_label_case(vol[0], vol[1], modality=entry.modality, seed=seed, scan_id=entry.id,
                                       spacing=spacing, n_classes=n_classes, keep_image=entry.image is not None)
                save_label_case(case, path)
            out.append(path)
    return out


def _affine(aug: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """A random 3x3 output->input voxel map: left-right flip, small rotation and scaling."""
    m = np.eye(3)
    if rng.random() < aug.flip_lr:
        m[0, 0] = -1
    if rng.random() < aug.affine:
        for ax in range(3):
            a = np.deg2rad(rng.uniform(-aug.rotate_deg, aug.rotate_deg))
            i, j = [k for k in range(3) if k != ax]
            rot = np.eye(3)
            rot[i, i] = rot[j, j] = np.cos(a)
            rot[i, j], rot[j, i] = -np.sin(a), np.sin(a)
            m = rot @ m
        m = m * rng.uniform(1 - aug.scale, 1 + aug.scale)
    return m


def label_patch(case: LabelCase, patch: tuple[int, int, int], rng: np.random.Generator, *, pos: float,
                aug: AugmentConfig, with_image: bool = False) -> tuple[np.ndarray, ...]:
    """A random patch of a label case: (labels, fraction, classes), each of shape ``patch``, and its ``image``
    patch after them when ``with_image`` (the case must keep one)."""
    shape = np.array(case.labels.shape)
    vessels = np.flatnonzero(case.classes.ravel() == 1) if rng.random() < pos else np.empty(0, int)
    if vessels.size:
        centre = np.array(np.unravel_index(vessels[rng.integers(vessels.size)], case.labels.shape), float)
    else:
        centre = rng.uniform(0, 1, 3) * (shape - 1)
    m = _affine(aug, rng)
    half = (np.array(patch) - 1) / 2
    offset = centre - m @ half
    args = dict(matrix=m, offset=offset, output_shape=tuple(patch), mode="nearest")
    labels = ndimage.affine_transform(case.labels, order=0, **args)
    fraction = ndimage.affine_transform(case.fraction, order=1, **args)
    classes = ndimage.affine_transform(case.classes, order=0, **args)
    if with_image:
        return labels, fraction, classes, ndimage.affine_transform(case.image, order=1, **args)
    return labels, fraction, classes


def real_image(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A real hybrid's image patch ([0, 1]) lightly jittered: a gamma (log-normal, sd 0.2), a contrast and offset
    change (x 0.85-1.15, +-0.05) and, one time in three, Gaussian noise (sd up to 0.03); clipped to [0, 1]."""
    out = np.clip(img, 0, 1) ** float(np.exp(rng.normal(0, 0.2)))
    out = out * rng.uniform(0.85, 1.15) + rng.uniform(-0.05, 0.05)
    if rng.random() < 1 / 3:
        out = out + rng.uniform(0, 0.03) * rng.standard_normal(out.shape)
    return np.clip(out, 0, 1).astype(np.float32)


class RandomisedStream(torch.utils.data.Dataset):
    """Sample ``i``: a randomised label-map patch with probability ``probability``, else ``fallback[i]``."""

    def __init__(self, cases: list[LabelCase], fallback: torch.utils.data.Dataset | None, *, probability: float,
                 patch: tuple[int, int, int], pos: float, aug: AugmentConfig, seed: int, length: int,
                 ranges: RandomisationRanges = RANGES, p_real_image: float = 0.0):
        if not cases and probability > 0:
            raise ValueError("cases: randomised training needs at least one label map")
        if fallback is None and probability < 1:
            raise ValueError("probability: below 1 needs rendered cases to fall back on")
        if not 0 <= p_real_image <= 1:
            raise ValueError(f"p_real_image: expected a probability in [0, 1], got {p_real_image}")
        self.cases, self.fallback, self.p, self.p_real = cases, fallback, probability, p_real_image
        self.patch, self.pos, self.aug, self.seed, self.length, self.ranges = patch, pos, aug, seed, length, ranges

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, 7, int(i)])
        if rng.random() >= self.p:
            return self.fallback[i]
        case = self.cases[int(rng.integers(len(self.cases)))]
        if case.image is not None and rng.random() < self.p_real:  # the real scan's own look, the plexus drawn in
            *_, classes, img = label_patch(case, self.patch, rng, pos=self.pos, aug=self.aug, with_image=True)
            img = real_image(img, rng)
        else:
            labels, fraction, classes = label_patch(case, self.patch, rng, pos=self.pos, aug=self.aug)
            img = randomise(labels, fraction, spacing=case.spacing, centres=case.centres, rng=rng, ranges=self.ranges)
        return {"image": torch.from_numpy(img)[None].float(), "label": torch.from_numpy(classes.astype(np.int64))[None]}


def load_label_cases(files: list[Path]) -> list[LabelCase]:
    cases = [load_label_case(f) for f in files]
    log.info("%d label maps for randomised training (%s; %d with their real hybrid image)", len(cases),
             ", ".join(sorted({c.source.split(':')[0] for c in cases})), sum(c.image is not None for c in cases))
    return cases
