"""``review.mrml``: the 3D Slicer scene of one case, written as MRML XML by plexus (no Slicer needed to write it).

Opening it in Slicer (``Slicer review.mrml``, File > Load scene, or dropping it on Slicer) loads, by relative
path from the case folder:

- the scan the case was measured on (a scalar volume; also the background of the three slice views);
- ``segmentation.seg.nrrd`` with its 3-D surface (the file names "Closed surface", so Slicer builds it on
  reading), vertebrae (and a vertebral canal segment) see-through in 3-D and outlined in the slices;
- ``canal.nii.gz`` when the case folder has it (a label map, the label layer of the slice views);
- every curve of ``centerlines.mrk.json``, coloured per channel, each from its own file under ``review/``
  (Slicer's markups storage node reads the first markup of a file only, so a scene needs one file per curve);
- ``calibre.csv`` (typed by ``calibre.schema.csv``) as a table, shown in the table view;
- the four-up + table layout.

Slicer's own readers (``slicer-core``) load this scene in ``tests/test_slicer_readers.py``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from xml.sax.saxutils import quoteattr

from ..core.atomic import write_text

SCENE = "review.mrml"
CURVES_DIR = "review"
FOUR_UP_TABLE = 34  # vtkMRMLLayoutNode::SlicerLayoutFourUpTableView
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")  # what Slicer's archetype reader takes
VERTEBRA_OPACITY_3D = 0.25


def _text(value) -> str:
    """An attribute value as MRML writes it: booleans ``true``/``false``, vectors space-separated."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return " ".join(_text(v) for v in value)
    return str(value)


def node_xml(tag: str, attrs: dict) -> str:
    """One MRML element, e.g. ``<Volume id="..." name="..." ...></Volume>``."""
    body = " ".join(f"{k}={quoteattr(_text(v))}" for k, v in attrs.items())
    return f" <{tag}\n  {body} ></{tag}>"


def scene_xml(nodes: list[tuple[str, dict]]) -> str:
    """The MRML document of ``nodes`` (tag, attributes) in order."""
    head = ['<?xml version="1.0" encoding="UTF-8"?>', "<!-- 3D Slicer scene written by plexus -->",
            '<MRML version="Slicer 5.0.0 0" userTags="">']
    return "\n".join([*head, *(node_xml(t, a) for t, a in nodes), "</MRML>", ""])


def _refs(**roles: str | None) -> str:
    return "".join(f"{role}:{node};" for role, node in roles.items() if node)


def _hidden(node_id: str, name: str, **attrs) -> dict:
    return {"id": node_id, "name": name, "hideFromEditors": True, **attrs}


def volume_nodes(path: str, *, label: bool = False, name: str = "scan") -> list[tuple[str, dict]]:
    """A scalar (or label map) volume read by Slicer's archetype storage node from ``path`` (relative)."""
    kind = "LabelMapVolume" if label else "ScalarVolume"
    vid, did = f"vtkMRML{kind}Node1", f"vtkMRML{kind}DisplayNode1"
    sid = f"vtkMRMLVolumeArchetypeStorageNode{2 if label else 1}"
    colour = "vtkMRMLColorTableNodeLabels" if label else "vtkMRMLColorTableNodeGrey"
    display = {"colorNodeID": colour, "visibility": True}  # Slicer's own colour tables (an attribute, as Slicer writes)
    if not label:
        display.update(autoWindowLevel=1, interpolate=1)
    return [("LabelMapVolume" if label else "Volume",
             {"id": vid, "name": name, "references": _refs(display=did, storage=sid)}),
            ("VolumeArchetypeStorage", _hidden(sid, "VolumeArchetypeStorage", fileName=path, useCompression=1,
                                               singleFile=1)),
            ("LabelMapVolumeDisplay" if label else "VolumeDisplay", _hidden(did, "VolumeDisplay", **display))]


def segmentation_nodes(path: str, segment_ids: list[str]) -> list[tuple[str, dict]]:
    """The segmentation, shown filled in 2-D (vertebrae outlined) and as surfaces in 3-D (vertebrae see-through)."""
    props = []
    for sid in segment_ids:
        if re.search(r"[\s|:]", sid):  # not expressible in Slicer's display-properties string: default display
            continue
        vert = sid.startswith("vertebra")  # the vertebrae ("vertebra_L3") and the canal ("vertebral_canal")
        props.append(f"{sid} OverrideColorR:-1 OverrideColorG:-1 OverrideColorB:-1 Visible:true Visible3D:true "
                     f"Visible2DFill:{_text(not vert)} Visible2DOutline:true "
                     f"Opacity3D:{VERTEBRA_OPACITY_3D if vert else 1} Opacity2DFill:1 Opacity2DOutline:1 Pickable:true")
    display = _hidden("vtkMRMLSegmentationDisplayNode1", "SegmentationDisplay", visibility=True, visibility2D=True,
                      visibility3D=True, Visibility2DFill=True, Visibility2DOutline=True, Opacity3D=1,
                      Opacity2DFill=0.5, Opacity2DOutline=1, PreferredDisplayRepresentationName3D="Closed surface",
                      SegmentationDisplayProperties="".join(p + "|" for p in props))
    return [("Segmentation", {"id": "vtkMRMLSegmentationNode1", "name": "segmentation",
                              "references": _refs(display="vtkMRMLSegmentationDisplayNode1",
                                                  storage="vtkMRMLSegmentationStorageNode1"),
                              "SourceRepresentationName": "Binary labelmap"}),
            ("SegmentationStorage", _hidden("vtkMRMLSegmentationStorageNode1", "SegmentationStorage", fileName=path)),
            ("SegmentationDisplay", display)]


_DISPLAY_KEYS = ("color", "selectedColor", "activeColor", "opacity", "propertiesLabelVisibility",
                 "pointLabelsVisibility", "textScale", "glyphType", "glyphScale", "glyphSize", "useGlyphScale",
                 "sliceProjection", "lineThickness")


def curve_nodes(k: int, markup: dict, path: str) -> list[tuple[str, dict]]:
    """Curve ``k`` (1-based) read from ``path``; its display (channel colour) as in the markups file."""
    cid, did = f"vtkMRMLMarkupsCurveNode{k}", f"vtkMRMLMarkupsDisplayNode{k}"
    sid = f"vtkMRMLMarkupsJsonStorageNode{k}"
    shown = markup.get("display", {})
    display = {key: shown[key] for key in _DISPLAY_KEYS if key in shown}
    return [("MarkupsCurve", {"id": cid, "name": markup["name"], "locked": bool(markup.get("locked", True)),
                              "references": _refs(display=did, storage=sid)}),
            ("MarkupsJsonStorage", _hidden(sid, "MarkupsJsonStorage", fileName=path, coordinateSystem="LPS")),
            ("MarkupsDisplay", _hidden(did, "MarkupsDisplay", visibility=True, **display))]


def table_nodes(path: str, schema: str | None) -> list[tuple[str, dict]]:
    """The calibre table (column types and units from its ``.schema.csv``)."""
    storage = _hidden("vtkMRMLTableStorageNode1", "TableStorage", fileName=path)
    if schema:
        storage["fileListMember0"] = schema
    return [("Table", {"id": "vtkMRMLTableNode1", "name": "calibre", "locked": True,
                       "references": _refs(storage="vtkMRMLTableStorageNode1")}),
            ("TableStorage", storage)]


def view_nodes(*, volume: str | None, label: str | None, table: str) -> list[tuple[str, dict]]:
    """Four-up + table layout; the scan (and canal) in the three slice views, the table in the table view."""
    out = [("Layout", _hidden("vtkMRMLLayoutNodevtkMRMLLayoutNode", "Layout", singletonTag="vtkMRMLLayoutNode",
                              currentViewArrangement=FOUR_UP_TABLE))]
    for view in ("Red", "Yellow", "Green"):
        layers = _refs(backgroundVolume=volume, labelVolume=label)
        out.append(("SliceComposite", _hidden(f"vtkMRMLSliceCompositeNode{view}", "SliceComposite", singletonTag=view,
                                              layoutName=view, references=layers, compositing=0, foregroundOpacity=0,
                                              labelOpacity=0.5, doPropagateVolumeSelection=1)))
    out.append(("TableView", _hidden("vtkMRMLTableViewNodeTableView1", "TableView", singletonTag="TableView1",
                                     layoutName="TableView1", layoutLabel="1", references=_refs(table=table),
                                     doPropagateTableSelection=1)))
    return out


def _relative(path: str | Path, start: Path) -> str:
    """``path`` relative to ``start`` with forward slashes (absolute where no relative path exists)."""
    try:
        return Path(os.path.relpath(Path(path).resolve(), start.resolve())).as_posix()
    except ValueError:  # another drive (Windows)
        return Path(path).resolve().as_posix()


def segment_ids(seg_path: Path) -> list[str]:
    """The segment ids recorded in a ``.seg.nrrd`` header (``SegmentN_ID``), in order."""
    import nrrd

    header = nrrd.read_header(str(seg_path))
    n = sum(1 for k in header if re.fullmatch(r"Segment\d+_ID", k))
    return [header[f"Segment{i}_ID"] for i in range(n)]


def write_curve_files(case_dir: Path) -> list[tuple[dict, str]]:
    """One ``.mrk.json`` per curve of ``centerlines.mrk.json`` under ``review/``; (markup, relative path) each."""
    doc = json.loads((case_dir / "centerlines.mrk.json").read_text())
    folder = case_dir / CURVES_DIR
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.mrk.json"):
        old.unlink()
    out = []
    for k, m in enumerate(doc["markups"], 1):
        rel = f"{CURVES_DIR}/{k:03d}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', m['name'])}.mrk.json"
        write_text(case_dir / rel, json.dumps({"@schema": doc["@schema"], "markups": [m]}) + "\n")
        out.append((m, rel))
    return out


def review_nodes(case_dir: str | Path, *, image: str | Path | None = None) -> list[tuple[str, dict]]:
    """Every node of ``review.mrml`` for a case folder (writes the per-curve files it references)."""
    case = Path(case_dir)
    image_ok = image is not None and Path(image).is_file() and str(image).lower().endswith(VOLUME_SUFFIXES)
    nodes = volume_nodes(_relative(image, case), name=_volume_name(Path(image))) if image_ok else []
    canal = (case / "canal.nii.gz").exists()
    if canal:
        nodes += volume_nodes("canal.nii.gz", label=True, name="Vertebral canal")
    if (case / "segmentation.seg.nrrd").exists():
        nodes += segmentation_nodes("segmentation.seg.nrrd", segment_ids(case / "segmentation.seg.nrrd"))
    if (case / "centerlines.mrk.json").exists():
        for k, (m, rel) in enumerate(write_curve_files(case), 1):
            nodes += curve_nodes(k, m, rel)
    schema = "calibre.schema.csv" if (case / "calibre.schema.csv").exists() else None
    nodes += table_nodes("calibre.csv", schema)
    nodes += view_nodes(volume="vtkMRMLScalarVolumeNode1" if image_ok else None,
                        label="vtkMRMLLabelMapVolumeNode1" if canal else None, table="vtkMRMLTableNode1")
    return nodes


def _volume_name(path: Path) -> str:
    name = path.name
    for suffix in sorted(VOLUME_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def write_review_scene(case_dir: str | Path, *, image: str | Path | None = None) -> Path:
    """Write ``case_dir/review.mrml`` (and ``review/``) for the case's files; ``image``: the scan measured
    (a file Slicer reads; a DICOM folder is left out). Returns the scene's path."""
    case = Path(case_dir)
    if not (case / "calibre.csv").exists():
        raise ValueError(f"case_dir: {case} has no calibre.csv (not a measured case folder)")
    path = case / SCENE
    write_text(path, scene_xml(review_nodes(case, image=image)))
    return path
