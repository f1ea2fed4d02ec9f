"""VMTK side of ``bench/measure_vs_vmtk.py``; runs in its own Python 3.12 venv (VMTK wheels need it).

The vascular-modelling workflow: marching-cubes surface of the mask at 0.5 -> Taubin smoothing ->
``vmtknetworkextraction`` (centreline network of a surface with openings) -> ``vmtkcenterlinesections``
(area of the surface section orthogonal to the centreline at each point) -> area-equivalent diameter.

Usage: ``python vmtk_worker.py MASK.nii.gz OUT.json [vmtk|vtk]``; writes the centreline points (RAS mm), the
area-equivalent diameter at each and the wall time of each step. ``vtk`` computes the sections with VTK
plane cuts of the same VMTK surface at the same VMTK centreline points (what vmtkcenterlinesections does),
for VMTK 1.5.2 whose vtkvmtkPolyDataCenterlineSections segfaults on such networks (vmtk PR #515).
"""

from __future__ import annotations

import json
import sys
import time

import nibabel as nib
import numpy as np


def _section_area(vtk, surface, p, n) -> float:
    """Area of the closed contour of ``surface`` cut by the plane (p, n) nearest to p (NaN if open)."""
    plane = vtk.vtkPlane()
    plane.SetOrigin(*p)
    plane.SetNormal(*n)
    cut = vtk.vtkCutter()
    cut.SetCutFunction(plane)
    cut.SetInputData(surface)
    conn = vtk.vtkPolyDataConnectivityFilter()
    conn.SetInputConnection(cut.GetOutputPort())
    conn.SetExtractionModeToClosestPointRegion()
    conn.SetClosestPoint(*p)
    strip = vtk.vtkStripper()
    strip.SetInputConnection(conn.GetOutputPort())
    strip.JoinContiguousSegmentsOn()
    strip.Update()
    out = strip.GetOutput()
    if out.GetNumberOfCells() != 1:
        return float("nan")
    cell = out.GetCell(0)
    q = np.array([out.GetPoint(cell.GetPointId(i)) for i in range(cell.GetNumberOfPoints())])
    if len(q) < 4 or np.linalg.norm(q[0] - q[-1]) > 1e-3:
        return float("nan")  # open contour: the plane leaves the surface
    e1 = np.cross(n, [1.0, 0, 0] if abs(n[0]) < 0.9 else [0, 1.0, 0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(n, e1)
    x, y = (q - p) @ e1, (q - p) @ e2
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def main(mask_path: str, out_path: str, mode: str = "vmtk") -> None:
    import vtk
    from vmtk import vmtkscripts
    from vtk.util import numpy_support

    times = {}
    t0 = time.perf_counter()
    img = nib.as_closest_canonical(nib.load(mask_path))
    m = (np.asanyarray(img.dataobj) > 0).astype(np.float32)
    aff = img.affine
    if not np.allclose(aff[:3, :3], np.diag(np.diag(aff[:3, :3]))):
        raise SystemExit("vmtk worker: oblique grids are not handled")
    data = vtk.vtkImageData()
    data.SetDimensions(*m.shape)
    data.SetSpacing(*np.diag(aff)[:3])
    data.SetOrigin(*aff[:3, 3])
    data.GetPointData().SetScalars(numpy_support.numpy_to_vtk(m.ravel(order="F"), deep=True))
    mc = vmtkscripts.vmtkMarchingCubes()
    mc.Image, mc.Level = data, 0.5
    mc.Execute()
    sm = vmtkscripts.vmtkSurfaceSmoothing()
    sm.Surface, sm.PassBand, sm.NumberOfIterations = mc.Surface, 0.1, 30
    sm.Execute()
    surface = sm.Surface
    times["surface"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    net = vmtkscripts.vmtkNetworkExtraction()
    net.Surface = surface
    net.Execute()
    network = net.Network
    times["network"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    if mode == "vmtk":
        sec = vmtkscripts.vmtkCenterlineSections()
        sec.Surface, sec.Centerlines = surface, network
        sec.Execute()
        cl = sec.Centerlines
        pts = numpy_support.vtk_to_numpy(cl.GetPoints().GetData()).astype(float)
        area = numpy_support.vtk_to_numpy(cl.GetPointData().GetArray("CenterlineSectionArea")).astype(float)
    else:
        cl = network
        pts = numpy_support.vtk_to_numpy(cl.GetPoints().GetData()).astype(float)
        area = np.full(len(pts), np.nan)
        for c in range(cl.GetNumberOfCells()):
            ids = [cl.GetCell(c).GetPointId(i) for i in range(cl.GetCell(c).GetNumberOfPoints())]
            for k, pid in enumerate(ids):
                a, b = ids[max(k - 1, 0)], ids[min(k + 1, len(ids) - 1)]
                tan = pts[b] - pts[a]
                if np.linalg.norm(tan) > 1e-6:
                    area[pid] = _section_area(vtk, surface, pts[pid], tan / np.linalg.norm(tan))
    times["sections"] = time.perf_counter() - t2
    radius = cl.GetPointData().GetArray(net.RadiusArrayName or "Radius")
    radius = numpy_support.vtk_to_numpy(radius).astype(float) if radius else np.full(len(area), np.nan)
    with open(out_path, "w") as fh:
        json.dump({"points": pts.tolist(), "diameter": np.where(np.isfinite(area), 2 * np.sqrt(np.maximum(
                   np.nan_to_num(area), 0) / np.pi), np.nan).tolist(), "radius": radius.tolist(),
                   "n_lines": cl.GetNumberOfCells(), "mode": mode, "times": times,
                   "total": time.perf_counter() - t0}, fh)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "vmtk")
