"""Every review output of a measured case, loaded by 3D Slicer's own readers (``slicer-core``: MRML storage
nodes and module logic, no Qt), checked for what a reviewer sees."""

from __future__ import annotations

import csv
import json
import shutil
import sys
import types
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy.spatial import cKDTree

from pipeline.core.levels import VERSE_NAMES
from pipeline.export.measure_case import measure_case
from pipeline.export.slicer import CHANNEL_RGB, PLEXUS_RGB
from tests.conftest import SAMPLE_DATA

slicer = pytest.importorskip("slicer", reason="slicer-core (3D Slicer's MRML readers) is not installed: "
                                              "pip install -e '.[dev]'")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' module is not slicer-core (no vtkMRMLScene)", allow_module_level=True)
from vtk.util.numpy_support import vtk_to_numpy  # noqa: E402  (slicer-core pins the vtk it is built with)

CASES = ("ct_phantom", "mr_phantom")


@pytest.fixture(scope="session")
def cases(tmp_path_factory):
    """``plexus measure`` of each sample phantom's truth mask, with its scan and vertebra map."""
    root = tmp_path_factory.mktemp("slicer_readers")
    for name in CASES:
        d = SAMPLE_DATA / name
        measure_case(d / "plexus_mask.nii.gz", root / name, image_path=d / "image.nii.gz",
                     vertebrae_path=d / "vertebrae.nii.gz")
    return root


def new_scene() -> "slicer.vtkMRMLScene":
    """An empty scene as Slicer's application has it: a selection node, segmentation conversion rules."""
    scene = slicer.vtkMRMLScene()
    selection = slicer.vtkMRMLSelectionNode()
    selection.SetSingletonTag("Singleton")
    scene.AddNode(selection)
    seg_logic = slicer.vtkSlicerSegmentationsModuleLogic()  # registers labelmap -> closed surface conversion
    seg_logic.SetMRMLScene(scene)
    scene._keep = [seg_logic]  # the logic must outlive the calls that use the scene
    return scene


def read_node(scene, node_class: str, storage_class: str, path: Path):
    """Read ``path`` into a new node the way Slicer's "Add data" does: a storage node's ``ReadData``."""
    node = scene.AddNewNodeByClass(node_class)
    storage = scene.AddNewNodeByClass(storage_class)
    storage.SetFileName(str(path))
    node.SetAndObserveStorageNodeID(storage.GetID())
    assert storage.ReadData(node) == 1, f"{storage_class} could not read {path}"
    return node, storage


def nodes_of(scene, node_class: str) -> list:
    col = scene.GetNodesByClass(node_class)
    return [col.GetItemAsObject(i) for i in range(col.GetNumberOfItems())]


def centreline_points(case: Path, *values: str) -> tuple[np.ndarray, ...]:
    """Points (N, 3) RAS mm of centerlines.json and the per-point ``values`` (N,) named (``diameter``, ``area``)."""
    cl = json.loads((case / "centerlines.json").read_text())
    assert cl["frame"] == "RAS"
    return tuple(np.concatenate([np.asarray(b[k], float) for b in cl["branches"]]) for k in ("points", *values))


@pytest.mark.parametrize("name", CASES)
def test_vtp_points_in_slicer_scene_equal_centerlines_json(cases, name):
    """Slicer's model reader puts every point of centerlines.vtp where centerlines.json has it."""
    case = cases / name
    model, storage = read_node(new_scene(), "vtkMRMLModelNode", "vtkMRMLModelStorageNode", case / "centerlines.vtp")
    pts = vtk_to_numpy(model.GetPolyData().GetPoints().GetData()).astype(float)
    ras, diameter = centreline_points(case, "diameter")
    assert pts.shape == ras.shape
    np.testing.assert_allclose(pts, ras, atol=1e-3)
    assert storage.GetCoordinateSystem() == slicer.vtkMRMLStorageNode.CoordinateSystemRAS  # read from the file
    pd = model.GetPolyData().GetPointData()
    np.testing.assert_allclose(vtk_to_numpy(pd.GetArray("Diameter")), diameter, atol=1e-3)
    assert pd.GetAbstractArray("Channel").GetNumberOfValues() == len(ras)


def expected_segments(name: str) -> list[str]:
    """Segment names a reviewer should see: the plexus, then one per vertebra of the input's vertebra map."""
    vert = np.asanyarray(nib.load(SAMPLE_DATA / name / "vertebrae.nii.gz").dataobj)
    present = sorted(int(v) for v in np.unique(vert) if int(v) in VERSE_NAMES and v > 0)
    return ["Epidural venous plexus", *(f"{VERSE_NAMES[v]} vertebra" for v in present)]


@pytest.mark.parametrize("name", CASES)
def test_segmentation_as_slicer_reads_it(cases, name):
    """Names, colours, terminology, voxels and geometry of segmentation.seg.nrrd against the input mask."""
    scene = new_scene()
    node, _ = read_node(scene, "vtkMRMLSegmentationNode", "vtkMRMLSegmentationStorageNode",
                        cases / name / "segmentation.seg.nrrd")
    seg = node.GetSegmentation()
    segments = [seg.GetNthSegment(i) for i in range(seg.GetNumberOfSegments())]
    assert [s.GetName() for s in segments] == expected_segments(name)
    plexus = segments[0]
    np.testing.assert_allclose(plexus.GetColor(), PLEXUS_RGB, atol=1e-6)
    assert "SCT^59820001^Blood vessel" in plexus.GetTerminology()
    assert all("SCT^123037004^Anatomical Structure" in s.GetTerminology() for s in segments[1:])
    assert seg.ContainsRepresentation("Closed surface")  # made on reading: the 3-D surface is there at once
    assert plexus.GetRepresentation("Closed surface").GetNumberOfPoints() > 100

    mask = nib.load(SAMPLE_DATA / name / "plexus_mask.nii.gz")  # the input, read by an independent reader
    labelmap = plexus.GetRepresentation("Binary labelmap")
    m = slicer.vtkMatrix4x4() if hasattr(slicer, "vtkMatrix4x4") else __import__("vtk").vtkMatrix4x4()
    labelmap.GetImageToWorldMatrix(m)  # Slicer's IJK -> RAS of the labelmap
    ijk_to_ras = np.array([[m.GetElement(i, j) for j in range(4)] for i in range(4)])
    np.testing.assert_allclose(ijk_to_ras, mask.affine, atol=1e-4)
    e = labelmap.GetExtent()
    dims = [e[1] - e[0] + 1, e[3] - e[2] + 1, e[5] - e[4] + 1]
    voxels = vtk_to_numpy(labelmap.GetPointData().GetScalars()).reshape(dims[::-1]).transpose(2, 1, 0)
    truth = np.asanyarray(mask.dataobj) == 1
    inside = truth[e[0]:e[1] + 1, e[2]:e[3] + 1, e[4]:e[5] + 1]
    np.testing.assert_array_equal(voxels == plexus.GetLabelValue(), inside)
    assert inside.sum() == truth.sum()  # nothing of the plexus outside the labelmap Slicer holds


@pytest.mark.parametrize("name", CASES)
def test_every_curve_loads_through_markups_logic(cases, name):
    """vtkSlicerMarkupsLogic.LoadMarkups (what loading the file in Slicer does) makes every curve of the file,
    each with Diameter and Area per control point, every control point on the centreline of centerlines.json."""
    case = cases / name
    doc = json.loads((case / "centerlines.mrk.json").read_text())["markups"]
    scene = new_scene()
    logic = slicer.vtkSlicerMarkupsLogic()
    logic.SetMRMLScene(scene)
    assert logic.LoadMarkups(str(case / "centerlines.mrk.json"))
    curves = nodes_of(scene, "vtkMRMLMarkupsCurveNode")
    assert len(curves) == len(doc) > 10
    assert sorted(c.GetName() for c in curves) == sorted(m["name"] for m in doc)
    ras, diameter, area = centreline_points(case, "diameter", "area")
    tree = cKDTree(ras)
    by_name = {m["name"]: m for m in doc}
    for c in curves:
        n = c.GetNumberOfControlPoints()
        assert n == len(by_name[c.GetName()]["controlPoints"]) >= 2
        world = np.array([c.GetNthControlPointPositionWorld(i) for i in range(n)])
        dist, _ = tree.query(world)
        assert dist.max() < 1e-3, c.GetName()
        meas = {c.GetNthMeasurement(i).GetName(): c.GetNthMeasurement(i) for i in range(c.GetNumberOfMeasurements())}
        d = vtk_to_numpy(meas["Diameter"].GetControlPointValues())
        a = vtk_to_numpy(meas["Area"].GetControlPointValues())
        assert len(d) == len(a) == n and meas["Diameter"].GetUnits() == "mm"
        # the values of the centreline point it sits on (a junction point is on several branches: one of them)
        near = tree.query_ball_point(world, r=1e-3)
        assert all(np.abs(np.hypot(diameter[j] - dv, area[j] - av)).min() < 1e-3 for j, dv, av in zip(near, d, a)), \
            c.GetName()
        channel = c.GetName().split()[1]
        np.testing.assert_allclose(c.GetDisplayNode().GetSelectedColor(), CHANNEL_RGB[channel], atol=1e-6)


@pytest.mark.parametrize("name", CASES)
def test_calibre_table_types_and_units(cases, name):
    """Slicer's table reader types every column and takes the units from calibre.schema.csv."""
    case = cases / name
    table, _ = read_node(new_scene(), "vtkMRMLTableNode", "vtkMRMLTableStorageNode", case / "calibre.csv")
    schema = list(csv.DictReader(open(case / "calibre.schema.csv")))
    rows = list(csv.DictReader(open(case / "calibre.csv")))
    t = table.GetTable()
    assert [t.GetColumnName(i) for i in range(t.GetNumberOfColumns())] == [s["columnName"] for s in schema]
    assert table.GetNumberOfRows() == len(rows)
    kinds = {"string": "vtkStringArray", "int": "vtkTypeInt32Array", "double": "vtkTypeFloat64Array"}
    for s in schema:
        col = t.GetColumnByName(s["columnName"])
        assert col.GetClassName() == kinds[s["type"]], s["columnName"]
        assert table.GetColumnProperty(s["columnName"], "unitLabel") == s["unitLabel"]
    med = vtk_to_numpy(t.GetColumnByName("median_diameter_mm"))
    want = np.array([float(r["median_diameter_mm"]) if r["median_diameter_mm"] else np.nan for r in rows])
    np.testing.assert_allclose(med, want, atol=1e-6)
    assert table.GetColumnProperty("median_diameter_mm", "unitLabel") == "mm"


def import_scene(path: Path):
    """``path`` read as Slicer reads a scene file: SetURL + Import, with the module logics Slicer has."""
    scene = new_scene()
    colours = slicer.vtkMRMLColorLogic()  # Slicer's default colour tables (Grey, Labels)
    colours.SetMRMLScene(scene)
    markups = slicer.vtkSlicerMarkupsLogic()
    markups.SetMRMLScene(scene)
    scene._keep += [colours, markups]
    scene.SetURL(str(path))
    assert scene.Import() == 1, f"Slicer could not import {path}"
    return scene


def storage_file(node) -> Path:
    path = Path(node.GetStorageNode().GetFullNameFromFileName())
    assert path.is_file(), f"{node.GetName()}: {path} does not exist"
    return path


@pytest.mark.parametrize("name", CASES)
def test_review_scene_loads_every_node_and_file(cases, name):
    """review.mrml read back by Slicer's scene reader: scan, segmentation with surfaces, curves, table, layout."""
    case = cases / name
    scene = import_scene(case / "review.mrml")
    volume = scene.GetNodeByID("vtkMRMLScalarVolumeNode1")
    assert storage_file(volume).samefile(SAMPLE_DATA / name / "image.nii.gz")
    m = __import__("vtk").vtkMatrix4x4()
    volume.GetIJKToRASMatrix(m)
    affine = nib.load(SAMPLE_DATA / name / "image.nii.gz").affine
    np.testing.assert_allclose([[m.GetElement(i, j) for j in range(4)] for i in range(4)], affine, atol=1e-4)
    assert volume.GetImageData().GetDimensions() == nib.load(SAMPLE_DATA / name / "image.nii.gz").shape
    assert volume.GetDisplayNode().GetColorNodeID() == "vtkMRMLColorTableNodeGrey"

    seg_node = scene.GetFirstNodeByClass("vtkMRMLSegmentationNode")
    assert storage_file(seg_node) == case / "segmentation.seg.nrrd"
    seg = seg_node.GetSegmentation()
    assert [seg.GetNthSegment(i).GetName() for i in range(seg.GetNumberOfSegments())] == expected_segments(name)
    assert seg.ContainsRepresentation("Closed surface")
    display = seg_node.GetDisplayNode()
    assert display.GetVisibility3D() and display.GetSegmentOpacity3D("plexus") == 1
    assert display.GetSegmentOpacity3D(seg.GetNthSegmentID(1)) == pytest.approx(0.25)

    doc = json.loads((case / "centerlines.mrk.json").read_text())["markups"]
    curves = nodes_of(scene, "vtkMRMLMarkupsCurveNode")
    assert [c.GetName() for c in curves] == [m["name"] for m in doc]
    for c, m in zip(curves, doc):
        assert storage_file(c).parent == case / "review"
        assert c.GetNumberOfControlPoints() == len(m["controlPoints"])
        np.testing.assert_allclose(c.GetNthControlPointPositionWorld(0), np.multiply(m["controlPoints"][0]["position"],
                                                                                    [-1, -1, 1]), atol=1e-4)
        np.testing.assert_allclose(c.GetDisplayNode().GetSelectedColor(), CHANNEL_RGB[m["name"].split()[1]], atol=1e-6)
        assert {c.GetNthMeasurement(i).GetName() for i in range(c.GetNumberOfMeasurements())} >= {"Diameter", "Area"}

    table = scene.GetFirstNodeByClass("vtkMRMLTableNode")
    assert storage_file(table) == case / "calibre.csv"
    assert table.GetColumnProperty("median_diameter_mm", "unitLabel") == "mm"
    assert table.GetNumberOfRows() == len(list(csv.DictReader(open(case / "calibre.csv"))))
    assert scene.GetFirstNodeByClass("vtkMRMLLayoutNode").GetViewArrangement() == \
        slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpTableView
    assert scene.GetNodeByID("vtkMRMLTableViewNodeTableView1").GetTableNodeID() == table.GetID()
    for view in ("Red", "Yellow", "Green"):
        assert scene.GetNodeByID(f"vtkMRMLSliceCompositeNode{view}").GetBackgroundVolumeID() == volume.GetID()
    assert scene.GetFirstNodeByClass("vtkMRMLLabelMapVolumeNode") is None  # no canal.nii.gz in this case


def test_review_scene_shows_the_canal_when_the_case_has_it(cases, tmp_path):
    """A case folder with canal.nii.gz gets it as the slice views' label layer."""
    from pipeline.export.mrml import write_review_scene

    case = tmp_path / "case"
    shutil.copytree(cases / "ct_phantom", case)
    mask = nib.load(SAMPLE_DATA / "ct_phantom" / "plexus_mask.nii.gz")
    canal = (np.asanyarray(mask.dataobj) > 0).astype(np.uint8)  # any label map on the case grid will do here
    nib.save(nib.Nifti1Image(canal, mask.affine), case / "canal.nii.gz")
    write_review_scene(case, image=SAMPLE_DATA / "ct_phantom" / "image.nii.gz")
    scene = import_scene(case / "review.mrml")
    label = scene.GetFirstNodeByClass("vtkMRMLLabelMapVolumeNode")
    assert label.GetName() == "Vertebral canal" and storage_file(label) == case / "canal.nii.gz"
    assert int(vtk_to_numpy(label.GetImageData().GetPointData().GetScalars()).sum()) == int(canal.sum())
    assert scene.GetNodeByID("vtkMRMLSliceCompositeNodeRed").GetLabelVolumeID() == label.GetID()


def test_loader_script_loads_the_scene_and_centres_the_views(cases, monkeypatch):
    """load_in_slicer.py run with Slicer's scene reader behind slicer.util.loadScene (the views, Qt in Slicer,
    are recorded): it loads review.mrml and centres the three slice views on the plexus."""
    case = cases / "ct_phantom"
    loaded, jumps, fits = [], [], []

    class SliceNode:
        def JumpSliceByCentering(self, *xyz):
            jumps.append(xyz)

    class SliceLogic:
        def FitSliceToAll(self):
            fits.append(1)

        def GetSliceNode(self):
            return SliceNode()

    class Widget:
        def sliceLogic(self):
            return SliceLogic()

        def threeDView(self):
            return types.SimpleNamespace(resetFocalPoint=lambda: None)

    layout = types.SimpleNamespace(sliceWidget=lambda view: Widget(), threeDWidget=lambda i: Widget())
    fake = types.ModuleType("slicer")
    fake.util = types.SimpleNamespace(loadScene=lambda path: loaded.append(import_scene(Path(path))))
    fake.app = types.SimpleNamespace(layoutManager=lambda: layout)
    monkeypatch.setitem(sys.modules, "slicer", fake)
    src = (case / "load_in_slicer.py").read_text()
    exec(compile(src, str(case / "load_in_slicer.py"), "exec"), {"__file__": str(case / "load_in_slicer.py")})
    scene = loaded[0]
    assert len(nodes_of(scene, "vtkMRMLMarkupsCurveNode")) == len(
        json.loads((case / "centerlines.mrk.json").read_text())["markups"])
    assert len(jumps) == 3 and len(fits) == 3
    (ras,) = centreline_points(case)
    np.testing.assert_allclose(jumps[0], ras.mean(0), atol=0.2)  # rounded to 0.01 mm; weights differ slightly


def test_review_scene_leaves_out_a_scan_slicer_cannot_read_and_refuses_a_non_case(cases, tmp_path):
    """A DICOM folder as the scan is left out of the scene (the rest still loads); a folder that is not a
    measured case is refused, naming the parameter."""
    from pipeline.export.mrml import write_review_scene

    case = tmp_path / "case"
    shutil.copytree(cases / "mr_phantom", case)
    write_review_scene(case, image=tmp_path)  # a folder, as a DICOM series is
    scene = import_scene(case / "review.mrml")
    assert scene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode") is None
    assert scene.GetNodeByID("vtkMRMLSliceCompositeNodeRed").GetBackgroundVolumeID() is None
    assert len(nodes_of(scene, "vtkMRMLMarkupsCurveNode")) == len(list((case / "review").glob("*.mrk.json"))) > 10
    with pytest.raises(ValueError, match="case_dir"):
        write_review_scene(tmp_path / "nothing")


def test_canal_segment_in_its_own_layer_as_slicer_reads_it(tmp_path):
    """segmentation.seg.nrrd with the canal stage 1 found: a "Vertebral canal" segment in a second layer (it
    holds the plexus), read by Slicer's storage node with its voxels, name and terminology."""
    from pipeline.export.slicer import CANAL_RGB, write_segmentation
    from pipeline.io import read_image
    from pipeline.spine import find_canal

    image = read_image(SAMPLE_DATA / "ct_phantom" / "image.nii.gz")
    mask = read_image(SAMPLE_DATA / "ct_phantom" / "plexus_mask.nii.gz")
    canal = find_canal(image, "CT")
    assert canal.found
    path = write_segmentation(tmp_path / "segmentation.seg.nrrd", mask, canal=image.with_array(canal.canal))
    scene = new_scene()
    node, _ = read_node(scene, "vtkMRMLSegmentationNode", "vtkMRMLSegmentationStorageNode", path)
    seg = node.GetSegmentation()
    names = [seg.GetNthSegment(i).GetName() for i in range(seg.GetNumberOfSegments())]
    assert names == ["Epidural venous plexus", "Vertebral canal"]
    canal_seg = seg.GetSegment(seg.GetSegmentIdBySegmentName("Vertebral canal"))
    np.testing.assert_allclose(canal_seg.GetColor(), CANAL_RGB, atol=1e-6)
    assert "SCT^61557005^Vertebral canal" in canal_seg.GetTerminology()
    assert seg.GetNumberOfLayers() == 2  # the canal overlaps the plexus: segments of one layer cannot
    labelmap = canal_seg.GetRepresentation("Binary labelmap")
    e = labelmap.GetExtent()
    dims = [e[1] - e[0] + 1, e[3] - e[2] + 1, e[5] - e[4] + 1]
    voxels = vtk_to_numpy(labelmap.GetPointData().GetScalars()).reshape(dims[::-1]).transpose(2, 1, 0)
    inside = canal.canal[e[0]:e[1] + 1, e[2]:e[3] + 1, e[4]:e[5] + 1] > 0
    np.testing.assert_array_equal(voxels == canal_seg.GetLabelValue(), inside)
    assert inside.sum() == canal.canal.sum()
