"""The real scans a run trains on (of the registry, :mod:`pipeline.io.registry`), and the leave-one-scan-out folds.

A scan is known by its ``id`` everywhere: the training config names the ones it leaves out, the model folder's
``metadata.json`` lists the ones it saw (``training_scans``), and a benchmark scores a model on a scan only when
the scan is not in that list.
"""

from __future__ import annotations

from ..core.errors import InputError
from ..io.registry import ScanEntry, read_registry
from .config import TrainConfig

__all__ = ["ScanEntry", "eligible", "loso_folds", "randomised_scans", "read_registry", "training_scans"]


def randomised_scans(cfg: TrainConfig, entries: list[ScanEntry] | None = None) -> list[ScanEntry]:
    """The real scans whose label maps a run's randomised source uses: those of the registry with a vertebra map,
    not excluded, whose files exist (a missing one is an error: a run never silently trains on less)."""
    src = cfg.data.randomised
    if src is None or src.scans is None:
        return []
    entries = read_registry(src.scans) if entries is None else entries
    known = {e.id for e in entries}
    unknown = sorted(set(src.exclude_scans) - known)
    if unknown:
        raise InputError(src.scans, f"data.randomised.exclude_scans: {unknown[0]!r} is not a scan of the registry")
    used = [e for e in entries if e.vertebrae is not None and e.id not in src.exclude_scans]
    for e in used:
        for p in (e.image, e.vertebrae):
            if p is not None and not p.exists():
                raise InputError(p, f"no such file (scan {e.id!r} of the registry; exclude it or fetch ../shared/data)")
    return used


def training_scans(cfg: TrainConfig) -> list[str]:
    """Ids of the real scans a run sees in training: its randomised scans and the scans of its hybrid sources
    (matched to the registry by image path; a hybrid source outside the registry is named by its path)."""
    src = cfg.data.randomised
    entries = read_registry(src.scans) if src is not None and src.scans is not None else []
    ids = [e.id for e in randomised_scans(cfg, entries)]
    by_path = {e.image.resolve(): e.id for e in entries if e.image is not None}
    ids += [by_path.get(h.image.resolve(), str(h.image)) for h in cfg.data.hybrid]
    return sorted(set(ids))


def loso_folds(entries: list[ScanEntry]) -> list[tuple[str, list[str], list[str]]]:
    """Leave-one-scan-out, by patient: for every patient with hybrids, (the patient, its scans held out, the
    scans trained on). Two scans of one patient are never split between training and test."""
    folds = []
    for group in dict.fromkeys(e.group for e in entries if e.hybrid):
        held = [e.id for e in entries if e.group == group]
        folds.append((group, held, [e.id for e in entries if e.group != group]))
    return folds


def eligible(model_scans: list[str], scan: ScanEntry, entries: list[ScanEntry]) -> bool:
    """Whether a model that saw ``model_scans`` in training may be scored on ``scan``: it saw no scan of its patient."""
    same = {e.id for e in entries if e.group == scan.group} | {scan.id}
    return not same & set(model_scans)
