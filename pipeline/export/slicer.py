"""Files for review in 3D Slicer: segmentation (.seg.nrrd), centreline curves (.mrk.json), VTK polydata
(.vtp) and a one-command loader script.

Coordinates: plexus works in RAS; the segmentation and the markups declare LPS (what Slicer itself writes). The
conversion is done here, once, by :func:`ras_to_lps` (and by the ``ijkToLPS`` matrix of the segmentation). The
``.vtp`` keeps RAS (the points of ``centerlines.json``) and says so in Slicer's ``SPACE`` field.
"""

from __future__ import annotations

import json
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from ..core.atomic import atomic_path, write_text
from ..core.layout import fortran_order
from ..core.levels import NA, VERSE_NAMES
from ..core.volume import Volume
from ..postprocess.measure import MeasureResult

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse
VTP_SPACE = "RAS"  # the frame of centerlines.vtp's points, in Slicer's 'SPACE' field (vtkMRMLModelStorageNode)
SCHEMA_URL = ("https://raw.githubusercontent.com/Slicer/Slicer/main/Modules/Loadable/Markups/Resources/Schema/"
              "markups-schema-v1.0.3.json#")
CHANNEL_RGB = {"anterior_left": (0.84, 0.15, 0.16), "anterior_right": (0.12, 0.47, 0.71),
               "posterior_left": (1.0, 0.50, 0.05), "posterior_right": (0.17, 0.63, 0.17),
               "transverse": (0.55, 0.55, 0.55)}
PLEXUS_RGB = (0.30, 0.35, 0.95)
CANAL_RGB = (0.95, 0.85, 0.35)   # the vertebral canal: pale yellow, as the epidural fat it holds
_CONTEXT = {"contextName": "Segmentation category and type - 3D Slicer General Anatomy list",
            "anatomicContextName": "Anatomic codes - DICOM master list"}
_REGION_TYPE = {"C": ["SCT", "122494005", "Cervical vertebral column"],
                "T": ["SCT", "122495006", "Thoracic vertebral column"],
                "L": ["SCT", "122496007", "Lumbar vertebral column"], "S": ["SCT", "54735007", "Sacrum"]}


def ras_to_lps(points: np.ndarray) -> np.ndarray:
    """RAS points (N, 3) -> LPS points (N, 3): x and y change sign."""
    return np.asarray(points, dtype=float) * np.array([-1.0, -1.0, 1.0])


def write_segmentation(path: str | Path, mask: Volume, *, label: int = 1, vertebrae: Volume | None = None,
                       canal: Volume | None = None) -> Path:
    """Slicer segmentation: segment 1 "Epidural venous plexus" (+ one per vertebra), on the mask's grid; with
    ``canal`` (same grid), a "Vertebral canal" segment in a second layer (it holds the plexus: segments of one
    layer cannot overlap)."""
    import slicerio

    plexus = np.asarray(mask.array) == label
    labels = plexus.view(np.uint8)
    segments = [{"id": "plexus", "name": "Epidural venous plexus", "labelValue": 1, "layer": 0,
                 "color": list(PLEXUS_RGB), "terminology": {**_CONTEXT, "category": ["SCT", "85756007", "Tissue"],
                                                             "type": ["SCT", "59820001", "Blood vessel"]}}]
    if vertebrae is not None:
        vert = np.asarray(vertebrae.array)
        if vert.dtype.kind not in "iu" or (vert.size and vert.min() < 0):  # ids as non-negative integers
            vert = np.where(vert > 0, np.rint(vert), 0).astype(np.int64)
        present = [int(v) for v in _labels_present(vert) if v in VERSE_NAMES and v > 0]
        value_of = np.zeros(max(int(vert.max()) + 1, 256) if vert.size else 256, dtype=np.uint8)
        value_of[present] = 2 + np.arange(len(present))  # one pass for every vertebra: a whole spine has 26
        labels = np.where(plexus, np.uint8(1), value_of[vert])
        for k, vid in enumerate(present):
            value = 2 + k
            name = VERSE_NAMES[vid]
            shade = 0.55 + 0.4 * (k % 2)
            segments.append({"id": f"vertebra_{name}", "name": f"{name} vertebra", "labelValue": value, "layer": 0,
                             "color": [shade, shade * 0.95, shade * 0.8],
                             "terminology": {**_CONTEXT, "category": ["SCT", "123037004", "Anatomical Structure"],
                                             "type": _REGION_TYPE[name[0]]}})
    voxels = fortran_order(labels)
    if canal is not None:
        voxels = np.stack([labels, (np.asarray(canal.array) > 0).astype(np.uint8)])
        segments.append({"id": "vertebral_canal", "name": "Vertebral canal", "labelValue": 1, "layer": 1,
                         "color": list(CANAL_RGB),
                         "terminology": {**_CONTEXT, "category": ["SCT", "123037004", "Anatomical Structure"],
                                         "type": ["SCT", "61557005", "Vertebral canal"]}})
    seg = {"voxels": voxels, "ijkToLPS": RAS_TO_LPS @ mask.affine, "segments": segments,
           # Slicer makes every representation named here when it reads the file: the 3-D surface shows at once
           "containedRepresentationNames": ["Binary labelmap", "Closed surface"], "masterRepresentation": "Binary labelmap",
           "encoding": "gzip"}
    with atomic_path(path) as tmp:
        slicerio.write_segmentation(str(tmp), seg, compression_level=1)  # labelmaps compress well anyway
    return Path(path)


def _labels_present(labels: np.ndarray) -> np.ndarray:
    """The sorted values of a label map (``np.unique``, three times faster for 8-bit maps: no sort)."""
    if labels.dtype != np.uint8:
        return np.unique(labels)
    seen = np.zeros(256, dtype=bool)
    seen[labels.ravel(order="K")] = True
    return np.flatnonzero(seen)


def curves(result: MeasureResult) -> list[dict]:
    """One curve per run of a branch within one level: name ``'L3 anterior_left'``, points RAS, values."""
    out = []
    for k, b in enumerate(result.branches):
        lv = np.asarray(b.data["level"], dtype=object)
        cut = np.nonzero(lv[1:] != lv[:-1])[0] + 1
        for seg in np.split(np.arange(len(lv)), cut):
            if len(seg) < 2:
                continue
            ext = np.arange(max(seg[0] - 1, 0), seg[-1] + 1)  # share the boundary point: no gaps
            out.append({"name": f"{lv[seg[0]] if lv[seg[0]] != NA else 'NA'} {b.data['channel']}",
                        "channel": b.data["channel"], "branch": k, "points": b.points[ext],
                        "diameter": b.data["diameter_mm"][ext], "area": b.data["area_mm2"][ext]})
    return out


def markups_dict(result: MeasureResult, *, step: int = 2) -> dict:
    """Slicer Markups JSON (schema v1.0.3): open curves with per-point ``Diameter`` and ``Area``.

    ``step``: keep every step-th centreline point as a control point (the ends are always kept).
    """
    markups = []
    names: dict[str, int] = {}
    for c in curves(result):
        idx = np.unique(np.r_[np.arange(0, len(c["points"]), step), len(c["points"]) - 1])
        n = names[c["name"]] = names.get(c["name"], 0) + 1
        name = c["name"] if n == 1 else f"{c['name']} ({n})"
        lps = ras_to_lps(c["points"][idx])
        rgb = list(CHANNEL_RGB[c["channel"]])
        markups.append({
            "type": "Curve", "name": name, "coordinateSystem": "LPS", "coordinateUnits": "mm", "locked": True,
            "fixedNumberOfControlPoints": False, "labelFormat": "%N-%d", "lastUsedControlPointNumber": len(idx),
            "controlPoints": [{"id": str(i + 1), "label": "", "description": "", "associatedNodeID": "",
                               "position": [round(float(v), 4) for v in p], "orientation": [-1.0, 0.0, 0.0, 0.0, -1.0,
                                                                                           0.0, 0.0, 0.0, 1.0],
                               "selected": True, "locked": True, "visibility": True, "positionStatus": "defined"}
                              for i, p in enumerate(lps)],
            "measurements": [
                {"name": "Diameter", "enabled": True, "units": "mm", "description": "area-equivalent diameter",
                 "printFormat": "%-#4.4g%s", "controlPointValues": [round(float(v), 4) for v in c["diameter"][idx]]},
                {"name": "Area", "enabled": True, "units": "mm2", "description": "cross-section area",
                 "printFormat": "%-#4.4g%s", "controlPointValues": [round(float(v), 4) for v in c["area"][idx]]}],
            "display": {"visibility": True, "opacity": 1.0, "color": rgb, "selectedColor": rgb, "activeColor": rgb,
                        "propertiesLabelVisibility": False, "pointLabelsVisibility": False, "textScale": 2.0,
                        "glyphType": "Sphere3D", "glyphScale": 0.6, "glyphSize": 1.0, "useGlyphScale": True,
                        "sliceProjection": False, "lineThickness": 0.3}})
    return {"@schema": SCHEMA_URL, "markups": markups}


def write_markups(path: str | Path, result: MeasureResult) -> Path:
    """The Slicer Markups JSON of :func:`markups_dict`, one curve per line (the whole file indented goes through
    Python's slow pure-Python encoder: a whole spine has tens of thousands of control points)."""
    doc = markups_dict(result)
    body = ",\n".join(json.dumps(m) for m in doc["markups"])
    write_text(path, f'{{"@schema": {json.dumps(doc["@schema"])},\n"markups": [\n{body}\n]}}\n')
    return Path(path)


def write_vtp(path: str | Path, result: MeasureResult) -> Path:
    """Centreline graph as VTK XML polydata (RAS mm) with point arrays ``Radius`` (like VMTK's
    ``MaximumInscribedSphereRadius``), ``Diameter``, ``Area``, ``Level``, ``Channel`` (strings) and ``BranchId``.

    The frame is declared the way Slicer's model storage node writes and reads it: a field-data string array
    ``SPACE`` holding ``RAS`` (without it Slicer assumes LPS and mirrors x and y)."""
    pts, lines, arrays = [], [], {"Radius": [], "Diameter": [], "Area": [], "BranchId": [], "Level": [], "Channel": []}
    n = 0
    for k, b in enumerate(result.branches):
        m = len(b.points)
        pts.append(b.points)
        lines.append(np.arange(n, n + m))
        n += m
        arrays["Radius"].append(b.data["inscribed_diameter_mm"] / 2)
        arrays["Diameter"].append(b.data["diameter_mm"])
        arrays["Area"].append(b.data["area_mm2"])
        arrays["BranchId"].append(np.full(m, k))
        arrays["Level"] += [str(x) for x in b.data["level"]]
        arrays["Channel"] += [b.data["channel"]] * m
    P = np.concatenate(pts) if pts else np.zeros((0, 3))
    conn = np.concatenate(lines) if lines else np.zeros(0, int)
    offs = np.cumsum([len(x) for x in lines]) if lines else np.zeros(0, int)

    def nums(a, fmt="%.4f") -> str:
        return " ".join(fmt % v for v in np.ravel(a))

    def data_array(name, values) -> str:
        if name in ("Level", "Channel"):  # string arrays: ascii bytes of each string, NUL-terminated
            codes = " ".join(" ".join(str(ord(ch)) for ch in s) + " 0" for s in values)
            return f'<DataArray type="String" Name="{name}" format="ascii">{codes}</DataArray>'
        v = np.concatenate(values) if values else np.zeros(0)
        if name == "BranchId":
            return f'<DataArray type="Int32" Name="{name}" format="ascii">{nums(v, "%d")}</DataArray>'
        return f'<DataArray type="Float32" Name="{escape(name)}" format="ascii">{nums(v)}</DataArray>'

    space = " ".join(str(ord(ch)) for ch in VTP_SPACE) + " 0"  # field data belongs to the data set, not a piece
    xml = ['<?xml version="1.0"?>', '<VTKFile type="PolyData" version="1.0" byte_order="LittleEndian">',
           "<PolyData>", "<FieldData>",
           f'<DataArray type="String" Name="SPACE" NumberOfTuples="1" format="ascii">{space}</DataArray>',
           "</FieldData>", f'<Piece NumberOfPoints="{len(P)}" NumberOfVerts="0" NumberOfLines="{len(lines)}" '
           'NumberOfStrips="0" NumberOfPolys="0">', '<PointData Scalars="Radius">']
    xml += [data_array(k, v) for k, v in arrays.items()]
    xml += ["</PointData>", "<Points>",
            f'<DataArray type="Float32" NumberOfComponents="3" format="ascii">{nums(P)}</DataArray>', "</Points>",
            "<Lines>", f'<DataArray type="Int64" Name="connectivity" format="ascii">{nums(conn, "%d")}</DataArray>',
            f'<DataArray type="Int64" Name="offsets" format="ascii">{nums(offs, "%d")}</DataArray>', "</Lines>",
            "</Piece>", "</PolyData>", "</VTKFile>", ""]
    write_text(path, "\n".join(xml))
    return Path(path)


LOADER = '''"""Open this case in 3D Slicer:  Slicer --python-script load_in_slicer.py  (from any folder).

Loads the case's scene, review.mrml (the scan, the segmentation with its 3-D surface, every curve with its
Diameter and Area per control point, the calibre table, the four-up + table layout), then fits the slice
views and centres them on the plexus.
"""
import os

import slicer

here = os.path.dirname(os.path.abspath(__file__))
slicer.util.loadScene(os.path.join(here, "review.mrml"))
centre = {centre!r}
layout = slicer.app.layoutManager()
for view in ("Red", "Yellow", "Green"):
    logic = layout.sliceWidget(view).sliceLogic()
    logic.FitSliceToAll()
    if centre:
        logic.GetSliceNode().JumpSliceByCentering(*centre)
layout.threeDWidget(0).threeDView().resetFocalPoint()
'''


def write_loader(path: str | Path, *, centre_ras) -> Path:
    """``load_in_slicer.py`` for a case folder: loads its ``review.mrml`` (:mod:`pipeline.export.mrml`), centres
    the views on ``centre_ras`` (3,) RAS mm (None: no centring)."""
    centre = [round(float(v), 2) for v in centre_ras] if centre_ras is not None else None
    write_text(path, LOADER.format(centre=centre))
    return Path(path)
