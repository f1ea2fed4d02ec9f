"""``plexus demo``: the main job on the shipped sample cases (``make demo``)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from .errors import InputError
from .export.qc import qc_picture
from .io import read_image, read_label_map
from .preprocess import PreprocessConfig, preprocess

log = logging.getLogger("plexus")


def sample_cases(sample_dir: Path) -> list[Path]:
    """Case folders of ``sample_dir`` (each holds an ``image.nii.gz``)."""
    cases = sorted(p.parent for p in Path(sample_dir).glob("*/image.nii.gz"))
    if not cases:
        raise InputError(sample_dir, "no sample cases (folders with image.nii.gz) found")
    return cases


def run_demo(sample_dir: Path, out_dir: Path) -> int:
    """Load, preprocess and picture every sample case; return the exit code."""
    for case in sample_cases(sample_dir):
        t0 = time.perf_counter()
        vol = read_image(case / "image.nii.gz")
        prep = preprocess(vol, PreprocessConfig())
        mask = read_label_map(case / "plexus_mask.nii.gz") if (case / "plexus_mask.nii.gz").exists() else None
        out = Path(out_dir) / case.name
        png = qc_picture(vol, out / "qc.png", mask=mask,
                         title=f"{case.name}: {prep.modality}, input {vol.shape} {''.join(vol.axcodes)} "
                               f"-> model grid {tuple(prep.image.shape[1:])} (ground-truth plexus outlined)")
        log.info("%s: %s %s, spacing %s mm -> model grid %s in %.1f s; QC picture %s", case.name, prep.modality,
                 vol.shape, tuple(round(float(s), 2) for s in vol.spacing), tuple(prep.image.shape[1:]),
                 time.perf_counter() - t0, png)
    return 0
