"""The coarse grid stage 1 works on: the scan stored RAS (axial slices along the array's last axis) at a few mm.

Stage 1 never trusts the voxel axes: the scan is reoriented to the nearest RAS storage and resampled onto an
isotropic grid of ``spacing`` mm covering its extent, so an axial slice is ``array[:, :, k]`` (RAS storage: axis 0 towards the patient's left, 1 anterior, 2 superior).
Results go back to the input grid by :func:`to_input_grid` (linear on a smoothed mask, then 0.5: no staircase of
coarse voxels on a fine scan).
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..core.volume import Volume
from ..preprocess.grid import model_grid, orientation, reoriented_affine, resample


@dataclass(frozen=True)
class CoarseGrid:
    """A scan on stage 1's grid.

    Attributes
    ----------
    array : (X, Y, Z) float32 ndarray
        Intensities (HU for CT), RAS storage: axis 0 towards patient left, 1 anterior, 2 superior.
    affine : (4, 4) ndarray
        Voxel index -> RAS mm.
    spacing : float
        In-plane voxel size, mm.
    dz : float
        Distance between axial slices, mm (``spacing``, or a thick-sliced scan's own slice distance).
    """

    array: np.ndarray
    affine: np.ndarray
    spacing: float
    dz: float

    def world(self, ijk: np.ndarray) -> np.ndarray:
        """(N, 3) voxel indices (may be fractional) -> (N, 3) RAS mm."""
        ijk = np.atleast_2d(np.asarray(ijk, dtype=float))
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]


def coarse_spacing(vol: Volume, *, lo: float = 1.5, hi: float = 3.0, max_voxels: float = 6e6) -> float:
    """Stage 1's voxel size for ``vol``: its finest in-plane spacing clipped to [``lo``, ``hi``] mm (a 0.8 mm CT is
    looked at in 1.5 mm voxels, a 3 mm CT in its own), coarser where the field would need more than ``max_voxels``
    (a whole-body CT of 512 x 512 x 600 voxels at 0.7 mm is looked at in 2.5 mm voxels: 6 M instead of 28 M)."""
    sp = np.sort(np.asarray(vol.spacing, dtype=float))
    field_mm3 = float(np.prod(np.asarray(vol.spacing, dtype=float) * np.asarray(vol.shape, dtype=float)))
    return float(np.clip(max(sp[1], (field_mm3 / max_voxels) ** (1 / 3)), lo, hi))


def to_coarse(vol: Volume, spacing: float) -> CoarseGrid:
    """``vol`` reoriented to RAS and resampled linearly onto a ``spacing`` mm grid (its extent); axial slices keep
    a thick-sliced scan's own slice distance (over 3 mm: a 7.5 mm clinical series is not interpolated between
    its slices, where the anatomy of two levels would blend)."""
    if spacing <= 0:
        raise ValueError(f"spacing: expected a positive voxel size in mm, got {spacing}")
    ornt = orientation(vol.affine, "RAS")
    arr = nib.orientations.apply_orientation(np.asarray(vol.array), ornt)
    oriented = reoriented_affine(vol.affine, vol.shape, ornt)
    native_dz = float(np.linalg.norm(oriented[:3, 2]))
    dz = native_dz if native_dz > 3.0 else spacing
    affine, shape = model_grid(oriented, arr.shape, (spacing, spacing, dz))
    out = resample(np.asarray(arr, dtype=np.float32), oriented, affine, shape, order=1)
    return CoarseGrid(out.astype(np.float32, copy=False), affine, float(spacing), float(dz))


def to_input_grid(mask: np.ndarray, grid: CoarseGrid, vol: Volume) -> np.ndarray:
    """A (X, Y, Z) bool mask on ``grid`` -> (I, J, K) uint8 on exactly ``vol``'s grid.

    The mask is smoothed (a Gaussian of 0.5 coarse voxels), sampled linearly at every input voxel centre and cut
    at 0.5: the same outline as nearest-neighbour on a coarse scan, a smooth one on a fine scan.
    """
    if mask.shape != grid.array.shape:
        raise ValueError(f"mask: shape {mask.shape} does not match the coarse grid {grid.array.shape}")
    out = np.zeros(vol.shape, np.uint8)
    if not mask.any():
        return out
    # only the input voxels the mask's box can reach (a whole-body CT is 150 M voxels, its canal a few %)
    hits = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
    lo = np.array([h[0] for h in hits]) - 2.0
    hi = np.array([h[-1] for h in hits]) + 2.0
    corners = lo + np.array(list(np.ndindex(2, 2, 2)), float) * (hi - lo)
    ijk = (np.linalg.inv(vol.affine) @ np.c_[grid.world(corners), np.ones(8)].T)[:3].T
    start = np.clip(np.floor(ijk.min(0)).astype(int) - 1, 0, vol.shape)
    stop = np.clip(np.ceil(ijk.max(0)).astype(int) + 2, 0, vol.shape)
    if np.any(stop <= start):
        return out
    box = tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))
    dst = vol.affine.copy()
    dst[:3, 3] = vol.affine[:3, :3] @ start + vol.affine[:3, 3]
    soft = ndimage.gaussian_filter(mask.astype(np.float32), (0.5, 0.5, 0.5 * grid.spacing / grid.dz))
    back = resample(soft, grid.affine, dst, tuple(int(n) for n in stop - start), order=1)
    out[box] = back >= 0.5
    return out
