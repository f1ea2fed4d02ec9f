"""Vertebral level names and the label conventions of vertebra maps.

plexus names levels ``C1``..``C7``, ``T1``..``T12``, ``L1``..``L6``, ``S1`` (and ``NA`` when unknown).
Internally a vertebra map is always in the **VerSe** convention (also used by TPTBox/SPINEPS):
1-7 = C1-C7, 8-19 = T1-T12, 20-25 = L1-L6, 26 = sacrum/S1, 28 = T13.
"""

from __future__ import annotations

import numpy as np

NA = "NA"
VERSE_NAMES: dict[int, str] = {i: f"C{i}" for i in range(1, 8)}
VERSE_NAMES.update({i: f"T{i - 7}" for i in range(8, 20)})
VERSE_NAMES.update({i: f"L{i - 19}" for i in range(20, 26)})
VERSE_NAMES.update({26: "S1", 28: "T13"})
NAME_TO_VERSE = {v: k for k, v in VERSE_NAMES.items()}

# Order along the spine, cranial to caudal (T13 sits between T12 and L1).
ORDER = [f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 14)] + [f"L{i}" for i in range(1, 7)] + ["S1"]

# TotalSegmentator `total` task (v2): 25 sacrum, 26 vertebrae_S1, 27 L5 ... 31 L1, 32 T12 ... 43 T1,
# 44 C7 ... 50 C1.
TOTALSEG_TO_VERSE: dict[int, int] = {25: 26, 26: 26}
TOTALSEG_TO_VERSE.update({27 + k: 24 - k for k in range(5)})       # L5..L1
TOTALSEG_TO_VERSE.update({32 + k: 19 - k for k in range(12)})      # T12..T1
TOTALSEG_TO_VERSE.update({44 + k: 7 - k for k in range(7)})        # C7..C1

CONVENTIONS = ("auto", "verse", "totalsegmentator", "spider")

# SPIDER (lumbar MR, van der Graaf et al. 2024): vertebrae numbered from the bottom, L5 = 1, L4 = 2 ... (101-125:
# the same vertebrae partly in view); 100 = spinal canal; 201-225 = discs. Assumes five lumbar vertebrae.
_FROM_L5_UP = [f"L{i}" for i in range(5, 0, -1)] + [f"T{i}" for i in range(12, 0, -1)] + [f"C{i}" for i in range(7, 0, -1)]
SPIDER_TO_VERSE: dict[int, int] = {k + 1: NAME_TO_VERSE[n] for k, n in enumerate(_FROM_L5_UP[:25])}
SPIDER_TO_VERSE.update({100 + k: v for k, v in list(SPIDER_TO_VERSE.items())})
SPIDER_CANAL = 100
# TotalSegmentator `total` ids that VerSe does not use (29-50: L3..C1): their presence tells the two apart
_TOTALSEG_ONLY = set(range(29, 51))


def level_name(verse_id: int) -> str:
    """Name of a VerSe vertebra id (``20`` -> ``'L1'``); ``'NA'`` for an unknown id."""
    return VERSE_NAMES.get(int(verse_id), NA)


def level_rank(name: str) -> int:
    """Position of a level name cranial to caudal (``NA`` sorts last)."""
    return ORDER.index(name) if name in ORDER else len(ORDER)


def detect_convention(labels: np.ndarray) -> str:
    """``'totalsegmentator'`` when the map holds ids only TotalSegmentator's ``total`` task uses (29-50);
    ``'spider'`` when it holds SPIDER's spinal-canal label 100 (VerSe/TPTBox never use 100); else ``'verse'``
    (VerSe, TPTBox, SPINEPS and plexus's own maps). A SPIDER map without its canal label needs the convention
    named explicitly."""
    present = set(np.unique(np.asarray(labels)).astype(int).tolist())
    if present & _TOTALSEG_ONLY:
        return "totalsegmentator"
    return "spider" if SPIDER_CANAL in present else "verse"


def to_verse(labels: np.ndarray, convention: str) -> np.ndarray:
    """Convert a vertebra label map of ``convention`` into VerSe ids (other structures become 0).

    Parameters
    ----------
    labels : (I, J, K) int ndarray
    convention : {'auto', 'verse', 'totalsegmentator', 'spider'}
        ``'auto'``: see :func:`detect_convention`.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention: expected one of {CONVENTIONS}, got {convention!r}")
    labels = np.asarray(labels)
    if convention == "auto":
        convention = detect_convention(labels)
    if convention == "verse":
        keep = np.isin(labels, list(VERSE_NAMES))
        return np.where(keep, labels, 0).astype(np.uint8)
    if convention == "spider":
        lut = np.zeros(max(int(labels.max()) + 1, 226), dtype=np.uint8)
        for sp, vs in SPIDER_TO_VERSE.items():
            lut[sp] = vs
        return lut[np.clip(labels, 0, None)]
    lut = np.zeros(max(int(labels.max()) + 1, 51), dtype=np.uint8)
    for ts, vs in TOTALSEG_TO_VERSE.items():
        lut[ts] = vs
    if 26 in np.unique(labels):  # a separate S1 label exists: keep the rest of the sacrum out
        lut[25] = 0
    return lut[labels]
