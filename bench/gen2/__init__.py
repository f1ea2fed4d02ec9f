"""gen2: a second spine-phantom generator, written apart from ``pipeline.synth``, for evaluation only.

The shipped segmentation model was trained on ``pipeline.synth`` phantoms, so fresh seeds of that generator are
not held out. gen2 shares none of its code: its own anatomy (signed-distance vertebrae in a straightened,
curved spine frame), its own plexus geometry and calibre model, its own tube renderer (exact distance and
supersampled occupancy), its own CT and MR models (spin-echo signal, shaped CT noise, non-central chi MR noise,
polynomial and coil bias). Only the output folder format, the level names and the NIfTI writer are shared, so
that ``plexus evaluate`` and ``plexus measure`` read its cases as they read any phantom's::

    from gen2 import generate_case, GEN2_RANGES
    generate_case(seed, "CT", out_dir, region="lumbar")

Never train on gen2 cases: they are what "held out" means.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from pipeline.io.write import write_image

from .case import Case, build_case
from .ranges import GEN2_RANGES, Gen2Ranges

__all__ = ["GEN2_RANGES", "Case", "Gen2Ranges", "build_case", "generate_case", "write_case"]


def write_case(case: Case, out_dir: str | Path) -> Path:
    """Write a built case's files into ``out_dir`` (created); return the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_image(case.image, out / "image.nii.gz")
    write_image(case.mask, out / "plexus_mask.nii.gz")
    write_image(case.vertebrae, out / "vertebrae.nii.gz")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["level", "channel", "median_diameter_mm", "n_points"])
    for level, channel, d, n in case.truth:
        w.writerow([level, channel, f"{d:.4f}", n])
    (out / "truth_calibre.csv").write_text(buf.getvalue())
    (out / "phantom.json").write_text(json.dumps(case.meta, indent=2, default=float))
    return out


def generate_case(seed: int, modality: str, out_dir: str | Path, *, region: str | None = None) -> Path:
    """Draw, render and write one gen2 case; return ``out_dir``.

    Parameters
    ----------
    seed : int
        Everything about the case follows from it (region when ``region`` is None, levels, shape, plexus,
        voxel size, storage orientation, tissue values, noise).
    modality : {'CT', 'MR'}
    out_dir : path
        Receives ``image.nii.gz``, ``plexus_mask.nii.gz``, ``vertebrae.nii.gz``, ``truth_calibre.csv`` and
        ``phantom.json``.
    region : {'cervical', 'thoracic', 'lumbar'}, optional
        Drawn from the seed when None; lumbar spans include S1.
    """
    return write_case(build_case(seed, modality, region), out_dir)
