"""Files for 3D Slicer, read back with independent readers: slicerio, jsonschema, VTK."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from pipeline.export.measure_case import measure_case
from pipeline.io import read_image, reorient, write_image
from pipeline.synth import PhantomConfig, generate_phantom
from tests.conftest import shared_slicer


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A phantom stored LPS (as Slicer would save it), measured with its vertebra map."""
    ph = generate_phantom(PhantomConfig(levels=("L4", "S1"), spacing=(0.9, 0.9, 1.1), orientation="LPS", seed=77,
                                        fov_lr=32, fov_back=32, fov_front=40))
    d = tmp_path_factory.mktemp("slicer")
    paths = {k: write_image(v, d / f"{k}.nii.gz") for k, v in
             (("image", ph.image), ("mask", ph.mask), ("vertebrae", ph.vertebrae))}
    res = measure_case(paths["mask"], d / "out", image_path=paths["image"], vertebrae_path=paths["vertebrae"])
    return ph, d / "out", res


def test_segmentation_reads_back_with_slicerio(case):
    import slicerio

    ph, out, _ = case
    seg = slicerio.read_segmentation(str(out / "segmentation.seg.nrrd"))
    names = [s["name"] for s in seg["segments"]]
    assert names[0] == "Epidural venous plexus"
    assert {"L4 vertebra", "L5 vertebra", "S1 vertebra"} <= set(names)
    plexus = seg["segments"][0]
    assert plexus["terminology"]["type"][1] == "59820001"
    np.testing.assert_allclose(plexus["color"], [0.30, 0.35, 0.95], atol=1e-3)
    voxels = seg["voxels"]
    assert voxels.shape == ph.mask.shape
    np.testing.assert_array_equal(voxels == plexus["labelValue"], ph.mask.array == 1)
    # same geometry: slicerio's ijkToLPS equals our RAS affine converted once
    np.testing.assert_allclose(np.diag([-1, -1, 1, 1]) @ seg["ijkToLPS"], ph.mask.affine, atol=1e-6)
    vert = seg["segments"][names.index("L5 vertebra")]
    np.testing.assert_array_equal(voxels == vert["labelValue"], (ph.vertebrae.array == 24) & (ph.mask.array == 0))


def test_markups_validate_against_slicer_schema(case):
    import jsonschema

    _, out, _ = case
    schema = json.loads(shared_slicer("markups/markups-schema-v1.0.3.json").read_text())
    doc = json.loads((out / "centerlines.mrk.json").read_text())
    jsonschema.validate(doc, schema)
    names = [m["name"] for m in doc["markups"]]
    assert "L5 anterior_left" in names and "S1 posterior_right" in names
    for m in doc["markups"]:
        assert m["type"] == "Curve" and m["coordinateSystem"] == "LPS"
        n = len(m["controlPoints"])
        meas = {x["name"]: x for x in m["measurements"]}
        assert len(meas["Diameter"]["controlPointValues"]) == n == len(meas["Area"]["controlPointValues"])
        assert meas["Diameter"]["units"] == "mm"


def test_curve_points_land_on_the_centreline_in_world(case):
    _, out, _ = case
    doc = json.loads((out / "centerlines.mrk.json").read_text())
    cl = json.loads((out / "centerlines.json").read_text())
    ras = np.concatenate([np.array(b["points"]) for b in cl["branches"]])
    from scipy.spatial import cKDTree

    tree = cKDTree(ras)
    for m in doc["markups"][:20]:
        lps = np.array([p["position"] for p in m["controlPoints"]])
        d, _ = tree.query(lps * [-1, -1, 1])  # LPS -> RAS
        assert d.max() < 1e-3, m["name"]


def test_vtp_reads_with_vtk(case):
    vtk = pytest.importorskip("vtk", reason="VTK not installed (pip install -e '.[dev]')")
    from vtk.util.numpy_support import vtk_to_numpy

    _, out, res = case
    r = vtk.vtkXMLPolyDataReader()
    r.SetFileName(str(out / "centerlines.vtp"))
    r.Update()
    poly = r.GetOutput()
    n = sum(len(b.points) for b in res.branches)
    assert poly.GetNumberOfPoints() == n and poly.GetNumberOfLines() == len(res.branches)
    pd = poly.GetPointData()
    radius = vtk_to_numpy(pd.GetArray("Radius"))
    np.testing.assert_allclose(radius, np.concatenate([b.data["inscribed_diameter_mm"] for b in res.branches]) / 2,
                               atol=1e-3)
    levels = pd.GetAbstractArray("Level")
    channels = pd.GetAbstractArray("Channel")
    assert levels.GetNumberOfValues() == n and channels.GetValue(0) == res.branches[0].data["channel"]
    pts = vtk_to_numpy(poly.GetPoints().GetData())
    np.testing.assert_allclose(pts, np.concatenate([b.points for b in res.branches]), atol=1e-3)
    assert poly.GetFieldData().GetAbstractArray("SPACE").GetValue(0) == "RAS"  # the frame, as Slicer reads it


def test_calibre_table_schema_matches_slicer_table_format(case):
    _, out, _ = case
    ref = next(csv.reader(open(shared_slicer("tables/table.schema.csv"))))
    ours = list(csv.DictReader(open(out / "calibre.schema.csv")))
    assert list(ours[0].keys()) == ref
    header = next(csv.reader(open(out / "calibre.csv")))
    assert [r["columnName"] for r in ours] == header
    assert {r["columnName"]: r["type"] for r in ours}["median_diameter_mm"] == "double"


def test_loader_script_loads_the_case_scene(case):
    """The loader opens review.mrml; the scene names the case's files and the scan, all of which exist."""
    import re

    _, out, _ = case
    src = (out / "load_in_slicer.py").read_text()
    compile(src, "load_in_slicer.py", "exec")
    assert "review.mrml" in src
    scene = (out / "review.mrml").read_text()
    files = re.findall(r'fileName="([^"]+)"', scene)
    assert {"segmentation.seg.nrrd", "calibre.csv"} <= set(files)
    assert all((out / f).is_file() for f in files)
    image = next(f for f in files if f.endswith("image.nii.gz"))
    assert read_image(out / image).shape == read_image(out.parent / "image.nii.gz").shape


def test_slicer_files_follow_the_world_frame_not_the_storage(tmp_path, case):
    """Re-storing the mask in another orientation leaves every curve point where it was."""
    ph, out, _ = case
    m2 = write_image(reorient(ph.mask, "PIR"), tmp_path / "mask_pir.nii.gz")
    res2 = measure_case(m2, tmp_path / "o")
    a = json.loads((out / "centerlines.mrk.json").read_text())["markups"]
    b = json.loads((tmp_path / "o" / "centerlines.mrk.json").read_text())["markups"]
    pa = np.concatenate([[p["position"] for p in m["controlPoints"]] for m in a])
    pb = np.concatenate([[p["position"] for p in m["controlPoints"]] for m in b])
    from scipy.spatial import cKDTree

    assert np.median(cKDTree(pa).query(pb)[0]) < 1e-3
    assert res2.summary["n_branches"] > 0
