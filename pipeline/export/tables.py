"""The measurement files of a case: ``calibre.csv`` (+ Slicer ``.schema.csv``), ``centerlines.json``,
``measurements.json``. Their names and columns are a contract documented in the README."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from .. import __version__
from ..core.atomic import write_text
from ..postprocess.calibre import flag_names
from ..postprocess.measure import COLUMNS, MeasureResult

_UNITS = {"length_mm": "mm", "volume_mm3": "mm3", "canal_area_mm2": "mm2", "plexus_canal_fraction": "1"}
_LONG = {"level": "Vertebral level (C1..S1, NA when unknown)",
         "channel": "anterior/posterior left/right longitudinal channel, or transverse",
         "n_points": "Centreline points with an undisturbed cross-section",
         "length_mm": "Centreline length", "median_diameter_mm": "Median area-equivalent diameter",
         "mean_diameter_mm": "Mean area-equivalent diameter", "min_diameter_mm": "Minimum area-equivalent diameter",
         "max_diameter_mm": "Maximum area-equivalent diameter",
         "median_inscribed_diameter_mm": "Median maximal inscribed diameter", "volume_mm3": "Vessel volume",
         "canal_area_mm2": "Vertebral canal cross-section area at this level (median along the spine axis)",
         "plexus_canal_fraction": "Share of the vertebral canal at this level that the plexus fills (0..1)"}


def _fmt(v) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def calibre_csv_text(rows: list[dict], *, first: dict | None = None, last: dict | None = None) -> str:
    """CSV text of calibre rows (``first``: leading columns such as ``case_id``; ``last``: trailing ones such as
    the case's ``status``)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    lead, tail = list(first or {}), list(last or {})
    w.writerow(lead + COLUMNS + tail)
    for r in rows:
        w.writerow([first[k] for k in lead] + [_fmt(r[c]) for c in COLUMNS] + [last[k] for k in tail])
    return buf.getvalue()


def read_calibre_csv(path: str | Path) -> list[dict]:
    """The rows of a ``calibre.csv`` (or a phantom's ``truth_calibre.csv``), typed as :func:`calibre_csv_text` wrote
    them.

    Parameters
    ----------
    path : str or Path
        The CSV file.

    Returns
    -------
    list of dict
        One dict per row: ``level`` and ``channel`` as str, ``n_points`` as int, every other column as float in
        its unit (mm, mm2, mm3, 1; NaN where the cell is empty).
    """
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for k, v in r.items():
            if k == "n_points":
                r[k] = int(v)
            elif k not in ("level", "channel"):
                r[k] = float(v) if v else float("nan")
    return rows


def schema_csv_text() -> str:
    """Slicer table schema (``calibre.schema.csv``): column types, descriptions and units."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["columnName", "type", "nullValue", "longName", "description", "unitLabel", "unitCodeValue",
                "unitCodingSchemeDesignator", "unitCodeMeaning"])
    for c in COLUMNS:
        typ = "string" if c in ("level", "channel") else "int" if c == "n_points" else "double"
        unit = _UNITS.get(c, "mm" if c.endswith("_mm") else "")
        ucum = {"mm": ("mm", "UCUM", "millimeter"), "mm3": ("mm3", "UCUM", "cubic millimeter"),
                "mm2": ("mm2", "UCUM", "square millimeter"), "1": ("1", "UCUM", "ratio")}.get(unit, ("", "", ""))
        w.writerow([c, typ, "" if typ == "string" else "nan" if typ == "double" else "0", _LONG[c], _LONG[c], unit, *ucum])
    return buf.getvalue()


def centerlines_dict(result: MeasureResult) -> dict:
    branches = []
    for k, b in enumerate(result.branches):
        d = b.data
        branches.append({
            "id": k, "channel": d["channel"], "start_node": int(b.start), "end_node": int(b.end),
            "length_mm": round(b.length, 3), "points": np.round(b.points, 3).tolist(),
            "diameter": np.round(d["diameter_mm"], 3).tolist(), "area": np.round(d["area_mm2"], 3).tolist(),
            "inscribed_diameter": np.round(d["inscribed_diameter_mm"], 3).tolist(),
            "level": [str(x) for x in d["level"]], "flags": [flag_names(int(f)) for f in d["flags"]]})
    nodes = [{"id": i, "position": np.round(p, 3).tolist(), "degree": int(g)}
             for i, (p, g) in enumerate(zip(result.nodes, result.degree))]
    return {"frame": "RAS", "units": "mm", "generator": f"plexus {__version__}",
            "flags": {"junction": "section cuts a branching vessel too (value from clean sections around it)",
                      "end": "near a free end of the vessel", "border": "section leaves the image or its "
                      "sampling disc, may under- or over-estimate", "empty": "no vessel found at the point"},
            "branches": branches, "nodes": nodes}


def write_measurement_files(result: MeasureResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``calibre.csv``, ``calibre.schema.csv``, ``centerlines.json`` and ``measurements.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"calibre": out / "calibre.csv", "schema": out / "calibre.schema.csv",
             "centerlines": out / "centerlines.json", "measurements": out / "measurements.json"}
    write_text(paths["calibre"], calibre_csv_text(result.rows))
    write_text(paths["schema"], schema_csv_text())
    write_text(paths["centerlines"], json.dumps(centerlines_dict(result)))
    summary = {"generator": f"plexus {__version__}", **result.summary, "warnings": result.warnings}
    write_text(paths["measurements"], json.dumps(summary, indent=2, default=float))
    return paths


def format_table(rows: list[dict]) -> str:
    """The calibre table as aligned text for the terminal (longitudinal channels first)."""
    if not rows:
        return "(no plexus measured)"
    head = ["level", "channel", "n", "length", "median d", "mean d", "min d", "max d", "inscribed", "volume"]
    lines = [f"{head[0]:<6}{head[1]:<17}{head[2]:>5}{head[3]:>9}{head[4]:>10}{head[5]:>8}{head[6]:>8}{head[7]:>8}"
             f"{head[8]:>10}{head[9]:>9}", f"{'':<6}{'':<17}{'':>5}{'mm':>9}{'mm':>10}{'mm':>8}{'mm':>8}{'mm':>8}"
             f"{'mm':>10}{'mm3':>9}"]
    for r in rows:
        lines.append(f"{r['level']:<6}{r['channel']:<17}{r['n_points']:>5}{_fmt(r['length_mm']):>9}"
                     f"{_fmt(r['median_diameter_mm']):>10}{_fmt(r['mean_diameter_mm']):>8}{_fmt(r['min_diameter_mm']):>8}"
                     f"{_fmt(r['max_diameter_mm']):>8}{_fmt(r['median_inscribed_diameter_mm']):>10}"
                     f"{_fmt(r['volume_mm3']):>9}")
    return "\n".join(lines)
