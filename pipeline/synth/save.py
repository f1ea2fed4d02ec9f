"""Write a phantom case to a folder, and the named presets of ``plexus synth``.

Files of a case folder (all on one grid; world frame RAS, mm):

=========================  =========================================================================
``image.nii.gz``           CT (HU, int16) or MR (arbitrary units, int16)
``plexus_mask.nii.gz``     uint8, 1 = plexus (voxels at least half inside a vein)
``plexus_fraction.nii.gz`` float32 in [0, 1], the fraction of each voxel inside a vein
``vertebrae.nii.gz``       uint8 vertebra map, VerSe convention (1-7 C, 8-19 T, 20-25 L, 26 S1)
``centerlines_truth.json`` every vessel: points (RAS mm), radius (mm), level, kind
``truth_calibre.csv``      true median diameter per (level, channel) of the longitudinal channels
``phantom.json``           the config and seed that made the case, and the vertebrae with body centres
=========================  =========================================================================
"""

from __future__ import annotations

import csv
import io as _io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from .. import __version__
from ..core.atomic import write_text
from ..io.write import write_image
from .phantom import Phantom, PhantomConfig, config_dict, point_levels

LEVEL_RULE = "a point takes the level of the vertebra whose body centre is nearest along the spine axis"

PRESETS: dict[str, dict] = {
    # small cases shipped in sample_data/
    "sample-ct": dict(modality="CT", levels=("L3", "S1"), spacing=(0.9, 0.9, 0.9), orientation="LPS",
                      fov_lr=42.0, fov_back=40.0, fov_front=48.0, sacrum_mm=30.0),
    "sample-mr": dict(modality="MR", levels=("T11", "L2"), spacing=(0.9, 0.9, 1.3), orientation="PIR",
                      fov_lr=42.0, fov_back=40.0, fov_front=48.0),
    # typical research scans
    "lumbar-ct": dict(modality="CT", levels=("L1", "S1"), spacing=(0.8, 0.8, 1.0)),
    "lumbar-mr": dict(modality="MR", levels=("L1", "S1"), spacing=(0.8, 0.8, 1.2), orientation="PIR"),
    "cervical-mr": dict(modality="MR", levels=("C2", "T1"), spacing=(0.7, 0.7, 1.0), orientation="PSR"),
    "thoracic-ct": dict(modality="CT", levels=("T4", "T12"), spacing=(0.8, 0.8, 1.0)),
    "full-spine-mask": dict(modality="CT", levels=("C1", "S1"), spacing=(0.8, 0.8, 0.8), render_image=False,
                            fov_lr=80.0, fov_back=80.0, fov_front=90.0),
}


def preset_config(name: str, **overrides) -> PhantomConfig:
    """A :class:`PhantomConfig` from a named preset, with keyword overrides."""
    if name not in PRESETS:
        raise ValueError(f"preset: unknown {name!r}; choose from {', '.join(PRESETS)}")
    return PhantomConfig(**{**PRESETS[name], **overrides})


def truth_json(ph: Phantom) -> dict:
    vessels = []
    for t in ph.tubes:
        vessels.append({"name": t.name, "kind": t.kind, "plexus": t.plexus,
                        "points": np.round(t.points, 4).tolist(), "radius": np.round(t.radius, 4).tolist(),
                        "level": point_levels(t.s, ph.verts)})
    return {"frame": "RAS", "units": "mm", "level_rule": LEVEL_RULE, "vessels": vessels}


def save_phantom(ph: Phantom, out_dir: str | Path) -> Path:
    """Write every file of ``ph`` into ``out_dir`` (created); return the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if ph.image is not None:
        write_image(ph.image, out / "image.nii.gz")
    write_image(ph.mask, out / "plexus_mask.nii.gz")
    write_image(ph.fraction, out / "plexus_fraction.nii.gz")
    if ph.image is not None:
        write_image(ph.vertebrae, out / "vertebrae.nii.gz")
    write_text(out / "centerlines_truth.json", json.dumps(truth_json(ph)))
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["level", "channel", "median_diameter_mm", "n_points"])
    for level, channel, d, n in ph.truth_calibre:
        w.writerow([level, channel, f"{d:.4f}", n])
    write_text(out / "truth_calibre.csv", buf.getvalue())
    meta = {"generator": f"plexus {__version__}", "config": config_dict(ph.config), "level_rule": LEVEL_RULE,
            "vertebrae": [{"name": v.name, "verse_id": v.verse_id, "body_centre_ras": ph.body_centres[v.name]}
                          for v in ph.verts], **ph.info}
    write_text(out / "phantom.json", json.dumps(meta, indent=2))
    return out


def with_seed(cfg: PhantomConfig, seed: int) -> PhantomConfig:
    return replace(cfg, seed=seed)
