"""Shared fixtures: small phantoms (made once per session) and the team's real data in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
SHARED_SLICER = ROOT.parent / "shared" / "slicer"
SAMPLE_DATA = ROOT / "sample_data"

os.environ.setdefault("OMP_NUM_THREADS", "2")


def shared(rel: str) -> Path:
    """Path of a file in ../shared/data; skips the test with the reason when it is absent."""
    p = SHARED_DATA / rel
    if not p.exists():
        pytest.skip(f"real data not available: {p} is absent (the team's ../shared/data folder)")
    return p


def shared_slicer(rel: str) -> Path:
    p = SHARED_SLICER / rel
    if not p.exists():
        pytest.skip(f"Slicer reference files not available: {p} is absent (../shared/slicer)")
    return p


@pytest.fixture(scope="session")
def small_ct_phantom():
    """A short lumbar CT phantom (L4-S1, 1 mm, RAS) generated once."""
    from pipeline.synth import PhantomConfig, generate_phantom

    return generate_phantom(PhantomConfig(modality="CT", levels=("L4", "S1"), spacing=(1.0, 1.0, 1.0), seed=101,
                                          fov_lr=40, fov_back=40, fov_front=45))


@pytest.fixture(scope="session")
def smoke_model_dir(tmp_path_factory):
    """A model folder trained with configs/smoke.yaml (seconds): real weights, useless predictions."""
    from pipeline.train.config import load_config
    from pipeline.train.loop import train

    tmp = tmp_path_factory.mktemp("smoke_model")
    cfg = load_config(ROOT / "configs" / "smoke.yaml", [f"output.run_dir={tmp / 'run'}",
                                                        f"output.model_dir={tmp / 'model'}"])
    train(cfg)
    return tmp / "model"


@pytest.fixture(scope="session")
def scans(tmp_path_factory):
    """Three small phantom scans stored RAS, LPS and PIR, plus a corrupt one (``broken.nii.gz``)."""
    from pipeline.io import reorient, write_image
    from pipeline.synth import PhantomConfig, generate_phantom

    d = tmp_path_factory.mktemp("scans")
    for k, ax in enumerate(("RAS", "LPS", "PIR")):
        ph = generate_phantom(PhantomConfig(levels=("L5", "S1"), spacing=(1.4, 1.4, 1.6), seed=40 + k, fov_lr=20,
                                            fov_back=20, fov_front=25))
        write_image(reorient(ph.image, ax), d / f"case_{ax}.nii.gz")
    good = (d / "case_RAS.nii.gz").read_bytes()
    (d / "broken.nii.gz").write_bytes(good[: len(good) // 3])
    return d
