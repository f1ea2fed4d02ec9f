"""One case of ``plexus infer``: stage 1 (the canal), stage 2 (the plexus network on the canal's crop), then the
measurement and exports written into ``OUT/<case_id>/`` atomically (:mod:`.folder`)."""

from __future__ import annotations

import errno
import json
import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..core.atomic import in_background, write_text
from ..core.errors import OutputError
from ..core.volume import Volume
from ..export.measure_case import measure_volumes
from ..export.qc import qc_picture
from ..inference.crop import crop_box
from ..inference.model import ModelMetadata
from ..inference.segmentation import CanalCrop, Segmentation, prepare_in_canal, segment_in_canal
from ..io.vertebrae import read_vertebrae
from ..io.write import write_image
from ..postprocess.measure import MeasureOptions
from ..preprocess.transform import guess_modality
from ..spine import CanalResult, find_canal
from ..spine.candidates import BONE_HU
from .cases import CaseInput
from .folder import DONE, owner_tag, publish
from .options import InferOptions

log = logging.getLogger("plexus")


def segment_case(image: Volume, prepared: CanalCrop, model: torch.nn.Module, meta: ModelMetadata, device: torch.device,
                 options: InferOptions) -> Segmentation:
    """The network part of a case (main process: it holds the model and the device): stage 2 on the crop that
    follows the canal (``prepared``: a :class:`~pipeline.inference.segmentation.CanalCrop`)."""
    return segment_in_canal(image, model, meta, prepared, device=device, tta=options.tta, overlap=options.overlap,
                            roi_mm=options.canal_margin)


def prepare_case(image: Volume, meta: ModelMetadata, options: InferOptions) -> CanalCrop | CanalResult:
    """Stage 1 on the whole scan, then the canal's crop on the model grid (or the canal alone: no spine in view)."""
    canal = find_spine(image, options.modality_name)
    if not canal.found:
        return canal
    return prepare_in_canal(image, canal, meta, modality=options.modality_name or canal.modality,
                            crop_margin_mm=options.crop_margin)


def find_spine(image: Volume, modality_name: str | None) -> CanalResult:
    """Stage 1 with the modality given, else guessed from the intensities; when the guess finds no spine, the other
    modality's rules are tried (a CT crop without air reads as MR)."""
    modality = modality_name or guess_modality(image)
    canal = find_canal(image, modality)
    if not canal.found and modality_name is None:
        other = find_canal(image, "MR" if modality == "CT" else "CT")
        if other.found:
            log.info("%s: modality guessed %s, but the spine is found as %s: read as %s", image.path, modality,
                     other.modality, other.modality)
            canal = other
    return canal


def write_no_spine(case: CaseInput, image, canal, out: Path) -> dict:
    """A case with no spine in view: no plexus, a folder holding its status and the reason (a re-run skips it)."""
    tmp = out / f".{case.case_id}.partial-{owner_tag()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        meas = {"case_id": case.case_id, "input": str(case.path), "status": canal.status, "reason": canal.reason,
                "modality": canal.modality, "stage1": canal.summary(), "total_volume_mm3": 0.0,
                "warnings": [f"{case.path}: {canal.status}: {canal.reason}; no plexus written"]}
        write_text(tmp / "measurements.json", json.dumps(meas, indent=2))
        qc_picture(image, tmp / "qc.png", mask=image.with_array(np.zeros(image.shape, np.uint8)), centerlines=[],
                   calibre_rows=[], title=f"{case.case_id}: {canal.status} ({canal.reason})")
        (tmp / DONE).write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
        publish(tmp, out / case.case_id)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"status": canal.status, "reason": canal.reason, "stage1_s": round(canal.seconds, 3)}


def _content_warnings(case: CaseInput, labels) -> list[str]:
    """Say so when the model found no plexus, or no spine at all (results of such a case mean little)."""
    bone_ml = float((labels.array == 2).sum()) * float(np.prod(labels.spacing)) / 1000.0
    plexus = bool((labels.array == 1).any())
    if bone_ml < 1.0:
        return [f"{case.path}: {'' if plexus else 'no plexus and '}no vertebral bone found "
                f"({bone_ml:.2f} ml); is there a spine in this scan?"]
    return [] if plexus else [f"{case.path}: no plexus found (the model found {bone_ml:.0f} ml of vertebral bone)"]


def _write_case(case: CaseInput, image, labels, prob_plexus, modality, model_name, tmp: Path,
                save_probabilities: bool, options=None, canal=None) -> None:
    prob = image.with_array(prob_plexus)
    options = options or MeasureOptions()
    vert = read_vertebrae(case.vertebrae, options.vertebrae_convention) if case.vertebrae else None
    options = replace(options, vertebrae_convention="verse") if vert is not None else options
    labels.meta["warnings"] = [*labels.meta.get("warnings", []), *_content_warnings(case, labels)]
    bone = None if vert is not None else _bone_for_levels(image, labels, canal, modality)  # levels from bone
    canal_vol = image.with_array(canal.canal, kind="canal") if canal is not None else None
    with in_background(_write_network_outputs, tmp, labels, prob if save_probabilities else None, canal_vol):
        measure_volumes(labels, tmp, image=image, vertebrae=vert, probabilities=prob, bone=bone, options=options,
                        title=case.case_id, canal=canal_vol)
    meas = json.loads((tmp / "measurements.json").read_text())
    meas.update({"case_id": case.case_id, "input": str(case.path), "modality": modality, "model": model_name,
                 "vertebrae": str(case.vertebrae) if case.vertebrae else None, "status": "ok"})
    if canal is not None:
        meas["stage1"] = canal.summary()
    write_text(tmp / "measurements.json", json.dumps(meas, indent=2, default=float))
    (tmp / DONE).write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))


def _bone_for_levels(image, labels, canal, modality: str):
    """The bone the levels are counted on: on CT the scan's own bone (stage 1's threshold) within 80 mm of the canal
    found (the whole vertebral bodies, which the network's crop cuts); else the network's bone class."""
    if canal is None or modality != "CT":
        return labels.with_array((labels.array == 2).astype(np.uint8))
    box = crop_box(canal.canal, image.affine, 80.0)
    bone = np.zeros(image.shape, np.uint8)
    bone[box] = np.asarray(image.array[box]) > BONE_HU
    return labels.with_array(bone)


def _write_network_outputs(tmp: Path, labels, prob, canal=None) -> None:
    """The label map on the input grid, the canal stage 1 found, and the plexus probability map when asked for."""
    write_image(labels, tmp / "segmentation.nii.gz")
    if canal is not None:
        write_image(canal, tmp / "canal.nii.gz")
    if prob is not None:
        write_image(prob, tmp / "probabilities.nii.gz")


def finish_case(case: CaseInput, image, labels, prob_plexus: np.ndarray, modality: str, model_name: str, out: Path,
                save_probabilities: bool, options=None, canal=None) -> dict:
    """Measure and export one segmented case into ``out/<case_id>/`` atomically (runs in a worker process)."""
    t1 = time.perf_counter()
    tmp = out / f".{case.case_id}.partial-{owner_tag()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        _write_case(case, image, labels, prob_plexus, modality, model_name, tmp, save_probabilities, options, canal)
        publish(tmp, out / case.case_id)
    except BaseException as exc:  # nothing of a failed or interrupted case is kept
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise OutputError(out, f"disk full while writing case {case.case_id}; the case was not kept") from None
        if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            raise OutputError(out, f"cannot write case {case.case_id} ({exc.strerror})") from None
        raise
    return {"postprocess_s": round(time.perf_counter() - t1, 3), "modality": modality}
