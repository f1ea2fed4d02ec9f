"""Vertebra maps: a label map of any convention (VerSe, TotalSegmentator, SPIDER) or a folder of
TotalSegmentator's per-structure masks, read into VerSe ids (the levels' vocabulary is :mod:`pipeline.core.levels`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..core.levels import NAME_TO_VERSE, detect_convention, to_verse
from ..core.volume import Volume
from .formats import read_label_map


def read_vertebrae(path: str | Path, convention: str = "auto") -> Volume:
    """A vertebra map in VerSe ids from a label map file of ``convention``, or from a folder of TotalSegmentator's
    per-structure masks (``vertebrae_L3.nii.gz``, ``sacrum.nii.gz``... all on one grid).

    Parameters
    ----------
    path : str or Path
        A label map file, or a folder of TotalSegmentator masks.
    convention : {'auto', 'verse', 'totalsegmentator', 'spider'}
        Label ids of the file (``auto``: TotalSegmentator when ids 29-50 are present, SPIDER when its canal label
        100 is, else VerSe).

    Returns
    -------
    Volume
        (I, J, K) uint8 VerSe ids (1-7 C1-C7, 8-19 T1-T12, 20-25 L1-L6, 26 S1, 28 T13; 0 elsewhere);
        ``meta['convention']`` says what was read.
    """
    path = Path(path)
    if path.is_dir():
        masks = sorted(f for f in path.iterdir() if f.name.startswith(("vertebrae_", "sacrum.")))
        if not masks:
            raise InputError(path, "folder holds no TotalSegmentator vertebra masks "
                                   "(vertebrae_*.nii.gz, sacrum.nii.gz)")
        out = None
        names = {f.name.split(".")[0]: f for f in masks}
        for stem, f in names.items():
            level = stem.split("_", 1)[1] if stem.startswith("vertebrae_") else "S1"
            if level not in NAME_TO_VERSE or (stem == "sacrum" and "vertebrae_S1" in names):
                continue
            m = read_label_map(f)
            if out is None:
                out, ref = np.zeros(m.shape, np.uint8), m
            elif m.shape != ref.shape or not np.allclose(m.affine, ref.affine, atol=1e-3):
                raise InputError(f, f"mask grid differs from {names[next(iter(names))].name}'s")
            out[(m.array > 0) & (out == 0)] = NAME_TO_VERSE[level]
        return ref.with_array(out, convention="totalsegmentator masks", path=str(path))
    vol = read_label_map(path)
    used = detect_convention(vol.array) if convention == "auto" else convention
    return vol.with_array(to_verse(vol.array, used), convention=used)
