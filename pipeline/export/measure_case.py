"""One case of ``plexus measure``: read the files, measure, write every output and the QC picture."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..core.atomic import in_background
from ..core.errors import InputError
from ..core.volume import Volume, same_grid
from ..io.formats import read_image, read_label_map
from ..io.vertebrae import read_vertebrae
from ..io.write import write_image
from ..postprocess.measure import MeasureOptions, MeasureResult, measure
from .mrml import write_review_scene
from .qc import qc_picture
from .slicer import write_loader, write_markups, write_segmentation, write_vtp
from .tables import centerlines_dict, write_measurement_files

log = logging.getLogger("plexus")


def measure_case(mask_path: str | Path, out_dir: str | Path, *, image_path: str | Path | None = None,
                 vertebrae_path: str | Path | None = None, probabilities_path: str | Path | None = None,
                 bone_path: str | Path | None = None, bone_label: int | None = None,
                 options: MeasureOptions | None = None, first_volume: bool = False) -> MeasureResult:
    """Read the files, measure ``mask_path`` and write every output of a case into ``out_dir`` (``plexus measure``).

    Parameters
    ----------
    mask_path : str or Path
        The plexus mask (any readable format; label ``options.label``).
    out_dir : str or Path
        Where ``calibre.csv``, ``centerlines.json``, ``measurements.json``, ``qc.png`` and the Slicer files go.
    image_path, vertebrae_path, probabilities_path, bone_path : str or Path, optional
        The scan (QC picture), a vertebra map (levels), a plexus probability map (sub-voxel calibre), a bone label
        map (levels without a vertebra map; label ``bone_label``, default every label > 0), all on the mask's grid.
    options : MeasureOptions, optional
        See :func:`~pipeline.postprocess.measure.measure`.
    first_volume : bool
        A 4-D ``image_path`` gives its first volume (else it is refused, naming the flag).

    Returns
    -------
    MeasureResult
        As :func:`~pipeline.postprocess.measure.measure` returns it (diameters in mm).
    """
    mask = read_label_map(mask_path)
    options = options or MeasureOptions()
    vert = None
    if vertebrae_path:  # a label map of any convention, or a folder of TotalSegmentator masks -> VerSe ids
        vert = read_vertebrae(vertebrae_path, options.vertebrae_convention)
        options = replace(options, vertebrae_convention="verse")
    prob = read_image(probabilities_path) if probabilities_path else None
    image = read_image(image_path, first_volume=first_volume) if image_path else None
    bone = None
    if bone_path:  # levels from bone when no vertebra map is given (label ``bone_label``, or any label > 0)
        b = read_label_map(bone_path)
        bone = b.with_array(((b.array == bone_label) if bone_label is not None else (b.array > 0)).astype("uint8"))
    if image is not None and (image.shape != mask.shape):
        raise InputError(image_path, f"image grid {image.shape} differs from the mask's {mask.shape}")
    return measure_volumes(mask, out_dir, image=image, vertebrae=vert, probabilities=prob, bone=bone,
                           options=options, title=Path(mask_path).name)


def measure_volumes(mask: Volume, out_dir: str | Path, *, image: Volume | None = None, vertebrae: Volume | None = None,
                    probabilities: Volume | None = None, bone: Volume | None = None,
                    options: MeasureOptions | None = None, title: str = "",
                    canal: Volume | None = None) -> MeasureResult:
    """Measure ``mask`` and write every output of a case into ``out_dir``.

    ``calibre.csv`` (+ ``.schema.csv``), ``centerlines.json``, ``measurements.json``, ``qc.png`` and, for 3D Slicer,
    ``segmentation.seg.nrrd``, ``centerlines.mrk.json``, ``centerlines.vtp``, ``review.mrml`` (+ ``review/``) and
    ``load_in_slicer.py``; with ``bone``
    and no ``vertebrae``, also ``vertebrae.nii.gz``: the vertebra map found from the bone (VerSe ids).
    """
    options = options or MeasureOptions()
    if vertebrae is not None:  # the same grid stored in another axis order is re-stored like the mask
        vertebrae = same_grid(mask, vertebrae, "vertebra map")
    result = measure(mask, vertebrae=vertebrae, probabilities=probabilities, bone=bone, options=options, canal=canal)
    out = Path(out_dir)
    write_measurement_files(result, out)
    vertebrae = result.vertebrae if result.vertebrae is not None else vertebrae
    with in_background(_write_volumes, out, mask, options.label, result.vertebrae, vertebrae, canal):
        write_markups(out / "centerlines.mrk.json", result)
        write_vtp(out / "centerlines.vtp", result)
        pts = [b.points for b in result.branches]
        image_path = image.meta.get("path") if image is not None else None
        write_loader(out / "load_in_slicer.py", centre_ras=np.concatenate(pts).mean(0) if pts else None)
        shown = image if image is not None else mask
        qc_picture(shown, out / "qc.png", mask=mask.with_array((mask.array == options.label).astype("uint8")),
                   centerlines=[{"points": b["points"], "diameter": b["diameter"]}
                                for b in centerlines_dict(result)["branches"]],
                   calibre_rows=result.rows, title=f"{title or mask.path}: plexus calibre"
                   f" ({result.summary.get('levels_source', '')})", canal=canal)
    # after the .seg.nrrd
    write_review_scene(out, image=image_path if image_path and Path(image_path).exists() else None)
    for w in result.warnings:
        log.warning("warning: %s", w)
    return result


def _write_volumes(out: Path, mask: Volume, label: int, found: Volume | None, vertebrae: Volume | None,
                   canal: Volume | None = None) -> None:
    """The Slicer segmentation, and the vertebra map found from the bone (``found``) when there is one."""
    if found is not None:
        write_image(found, out / "vertebrae.nii.gz")
    write_segmentation(out / "segmentation.seg.nrrd", mask, label=label, vertebrae=vertebrae, canal=canal)
