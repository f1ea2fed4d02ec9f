"""One case of ``plexus measure``: read the files, measure, write every output and the QC picture."""

from __future__ import annotations

import logging
from pathlib import Path

from .export.qc import qc_picture
from .export.tables import centerlines_dict, write_measurement_files
from .io import read_image, read_label_map
from .postprocess.measure import MeasureOptions, MeasureResult, measure

log = logging.getLogger("plexus")


def measure_case(mask_path: str | Path, out_dir: str | Path, *, image_path: str | Path | None = None,
                 vertebrae_path: str | Path | None = None, probabilities_path: str | Path | None = None,
                 options: MeasureOptions | None = None) -> MeasureResult:
    """Measure ``mask_path`` and write ``calibre.csv``, ``centerlines.json``, ``measurements.json``, ``qc.png``."""
    options = options or MeasureOptions()
    mask = read_label_map(mask_path)
    vert = read_label_map(vertebrae_path) if vertebrae_path else None
    prob = read_image(probabilities_path) if probabilities_path else None
    image = read_image(image_path) if image_path else None
    if image is not None and (image.shape != mask.shape):
        from .errors import InputError

        raise InputError(image_path, f"image grid {image.shape} differs from the mask's {mask.shape}")
    result = measure(mask, vertebrae=vert, probabilities=prob, options=options)
    out = Path(out_dir)
    write_measurement_files(result, out)
    shown = image if image is not None else mask
    qc_picture(shown, out / "qc.png", mask=mask.with_array((mask.array == options.label).astype("uint8")),
               centerlines=[{"points": b["points"], "diameter": b["diameter"]}
                            for b in centerlines_dict(result)["branches"]],
               calibre_rows=result.rows, title=f"{Path(mask_path).name}: plexus calibre"
               f" ({result.summary.get('levels_source', '')})")
    for w in result.warnings:
        log.warning("warning: %s", w)
    return result
