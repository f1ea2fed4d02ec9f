"""VMTK side of ``bench/measure_vs_vmtk.py``; runs in its own Python 3.12 venv (VMTK wheels need it).

The vascular-modelling workflow: marching-cubes surface of the mask at 0.5 -> Taubin smoothing ->
``vmtknetworkextraction`` (centreline network of a surface with openings) -> ``vmtkcenterlinesections``
(area of the surface section orthogonal to the centreline at each point) -> area-equivalent diameter.

Usage: ``python vmtk_worker.py MASK.nii.gz OUT.json``; writes the centreline points (RAS mm), the
area-equivalent diameter at each and the wall time of each step.
"""

from __future__ import annotations

import json
import sys
import time

import nibabel as nib
import numpy as np


def main(mask_path: str, out_path: str) -> None:
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
    sec = vmtkscripts.vmtkCenterlineSections()
    sec.Surface, sec.Centerlines = surface, network
    sec.Execute()
    cl = sec.Centerlines
    times["sections"] = time.perf_counter() - t2
    pts = numpy_support.vtk_to_numpy(cl.GetPoints().GetData()).astype(float)
    area = numpy_support.vtk_to_numpy(cl.GetPointData().GetArray("CenterlineSectionArea")).astype(float)
    closed = cl.GetPointData().GetArray("CenterlineSectionClosed")
    closed = numpy_support.vtk_to_numpy(closed).astype(bool) if closed is not None else np.ones(len(area), bool)
    radius = net.RadiusArrayName and cl.GetPointData().GetArray(net.RadiusArrayName)
    radius = numpy_support.vtk_to_numpy(radius).astype(float) if radius else np.full(len(area), np.nan)
    with open(out_path, "w") as fh:
        json.dump({"points": pts.tolist(), "diameter": (2 * np.sqrt(np.maximum(area, 0) / np.pi)).tolist(),
                   "closed": closed.tolist(), "radius": radius.tolist(), "n_lines": cl.GetNumberOfCells(),
                   "times": times, "total": time.perf_counter() - t0}, fh)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
