"""The registry of real scans (``configs/real_scans.yaml``): each scan by its ``id``, with its image, vertebra map,
canal reference label, modality, patient, and whether hybrids are made of it. Paths are resolved against the
registry's folder; a bad file is an :class:`~pipeline.core.errors.InputError` naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from ..core.errors import InputError


class CanalReference(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: Path
    ids: list[int]


class ScanEntry(BaseModel):
    """One real scan of the registry (paths resolved against the registry's folder)."""

    model_config = ConfigDict(extra="forbid")
    id: str
    image: Path | None = None
    vertebrae: Path | None = None
    canal_ref: CanalReference | None = None
    modality: Literal["CT", "MR"]
    hybrid: bool = False
    patient: str | None = None          # scans of one patient share it (default: the id); folds leave a patient out
    top_level: str | None = None        # the cranial vertebra in view, where no map or label names it

    @property
    def group(self) -> str:
        return self.patient or self.id

    def available(self) -> bool:
        """Whether every file the entry names exists (``../shared/data`` may be absent)."""
        paths = [p for p in (self.image, self.vertebrae) if p is not None]
        return bool(paths) and all(p.exists() for p in paths)


def read_registry(path: str | Path) -> list[ScanEntry]:
    """The scans of a registry file; an unknown key, a duplicate id or bad YAML is an error naming the file."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such scan registry")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        entries = [ScanEntry.model_validate(e) for e in raw.get("scans", [])]
    except (yaml.YAMLError, ValidationError) as exc:
        raise InputError(path, f"not a valid scan registry ({str(exc).splitlines()[0]})") from None
    ids = [e.id for e in entries]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise InputError(path, f"scan id {dup[0]!r} is listed twice")
    for e in entries:
        for attr in ("image", "vertebrae"):
            p = getattr(e, attr)
            if p is not None and not p.is_absolute():
                setattr(e, attr, (path.parent / p).resolve())
        if e.canal_ref is not None and not e.canal_ref.path.is_absolute():
            e.canal_ref.path = (path.parent / e.canal_ref.path).resolve()
    return entries
