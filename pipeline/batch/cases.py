"""Finding the cases of ``plexus infer``: files, DICOM series folders, folders of scans, globs and CSV/TXT lists,
each with its vertebra map when one is given; and the shard of them a job of an array takes."""

from __future__ import annotations

import csv
import glob
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import InputError
from ..io.formats import sniff

IMAGE_EXTS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")


@dataclass
class CaseInput:
    """One case of a batch: its id (the output folder's name), its scan, its vertebra map, or the problem found
    while listing the inputs."""

    case_id: str
    path: Path
    vertebrae: Path | None = None
    error: str | None = None          # a problem found while listing the inputs


def case_id_of(path: Path) -> str:
    """The case id of a scan: its file name without the image extension (a folder keeps its name)."""
    name = path.name
    for ext in IMAGE_EXTS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _is_dicom_dir(path: Path) -> bool:
    for f in sorted(path.iterdir())[:20]:
        if f.is_file():
            try:
                if sniff(f) == "dicom":
                    return True
            except InputError:
                continue
    return False


def discover(inputs: list[str], vertebrae: str | None = None) -> list[CaseInput]:
    """Cases from files, DICOM series folders, folders of scans, glob patterns and CSV/TXT lists.

    Parameters
    ----------
    inputs : list of str
        What ``plexus infer`` was given. A CSV list has the columns ``image[,case_id,vertebrae]`` (paths relative
        to the list).
    vertebrae : str, optional
        One vertebra map (a single case) or a folder of maps named by case id.

    Returns
    -------
    list of CaseInput
        In input order, with unique case ids (``_2``, ``_3``... appended); a problem found while listing (no such
        file, a glob matching nothing) is kept in the case's ``error``, reported when the case comes.
    """
    cases: list[CaseInput] = []
    for item in inputs:
        if any(ch in item for ch in "*?["):
            matches = sorted(glob.glob(item))
            if not matches:
                cases.append(CaseInput(case_id_of(Path(item)), Path(item), error="glob pattern matches nothing"))
            cases += [c for m in matches for c in discover([m])]
            continue
        p = Path(item)
        if not p.exists():
            cases.append(CaseInput(case_id_of(p), p, error="no such file or folder"))
        elif p.is_file() and p.suffix.lower() in (".csv", ".txt"):
            cases += _from_list(p)
        elif p.is_dir() and not _is_dicom_dir(p):
            for child in sorted(p.iterdir()):
                if child.name.startswith("."):
                    continue
                if child.is_dir() and _is_dicom_dir(child):
                    cases.append(CaseInput(child.name, child))
                elif child.is_file() and child.name.lower().endswith(IMAGE_EXTS[:-1]):
                    cases.append(CaseInput(case_id_of(child), child))
        else:
            cases.append(CaseInput(p.name if p.is_dir() else case_id_of(p), p))
    seen: dict[str, int] = {}
    for c in cases:  # unique case ids
        n = seen[c.case_id] = seen.get(c.case_id, 0) + 1
        if n > 1:
            c.case_id = f"{c.case_id}_{n}"
    if vertebrae:
        _match_vertebrae(cases, Path(vertebrae))
    return cases


def _from_list(path: Path) -> list[CaseInput]:
    out = []
    text = path.read_text().splitlines()
    if path.suffix.lower() == ".csv" and text and "image" in text[0]:
        for row in csv.DictReader(text):
            img = (path.parent / row["image"]).resolve()
            vert = (path.parent / row["vertebrae"]).resolve() if row.get("vertebrae") else None
            out.append(CaseInput(row.get("case_id") or case_id_of(img), img, vert,
                                 None if img.exists() else "no such file or folder"))
    else:
        for line in text:
            line = line.strip().split(",")[0]
            if line and not line.startswith("#"):
                img = (path.parent / line).resolve()
                out.append(CaseInput(case_id_of(img), img, error=None if img.exists() else "no such file or folder"))
    return out


def _match_vertebrae(cases: list[CaseInput], vert: Path) -> None:
    per_structure = vert.is_dir() and any(f.name.startswith("vertebrae_") for f in vert.iterdir())
    if vert.is_file() or per_structure:  # one map, or one case's TotalSegmentator masks
        if len(cases) != 1:
            raise InputError(vert, "one vertebra map given for several cases; give a folder of maps named by case id")
        cases[0].vertebrae = vert
        return
    if not vert.is_dir():
        raise InputError(vert, "no such file or folder")
    files = list(vert.iterdir())  # maps, or per-case folders of TotalSegmentator masks, named by case id
    for c in cases:
        exact = [f for f in files if case_id_of(f) == c.case_id]
        loose = [f for f in files if case_id_of(f).startswith(c.case_id)]
        c.vertebrae = c.vertebrae or (exact or loose or [None])[0]


def select_shard(cases: list[CaseInput], k: int, n: int) -> list[CaseInput]:
    """Shard ``k`` of ``n`` (1-based): every n-th case of the list sorted by case id, starting at the k-th.

    Deterministic for a given set of inputs whatever their order, so N jobs of a scheduler's array given the same
    inputs process every case exactly once between them.
    """
    if not 1 <= k <= n:
        raise ValueError(f"--shard: expected K/N with 1 <= K <= N, got {k}/{n}")
    ordered = sorted(cases, key=lambda c: (c.case_id, str(c.path)))
    return ordered[k - 1::n]
