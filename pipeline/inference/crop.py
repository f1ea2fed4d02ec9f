"""Stage 2's room: the plexus network runs only on a crop that follows the canal, and marks plexus only near it.

* :func:`crop_box` - the input-grid box of the canal grown by ``margin_mm`` (context for the network: the
  vertebral bodies with their basivertebral veins in front, the foramina at the sides);
* :func:`sub_volume` / :func:`embed` - the scan inside that box as a Volume of its own (same voxels, the affine
  moved to the box's corner), and a result on it put back into an array of the whole input grid: the exact
  inverse, voxel for voxel, with zeros outside the box;
* :func:`plexus_region` - where plexus may be: the canal grown by ``roi_mm`` (the epidural veins lie inside the
  bony canal; the margin takes the partial-volume rim at its wall and the veins' first millimetres into the
  foramina and the vertebral body). Nothing outside it is plexus.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..core.volume import Volume


def crop_box(canal: np.ndarray, affine: np.ndarray, margin_mm: float) -> tuple[slice, slice, slice]:
    """Input-grid slices of the box around ``canal`` (I, J, K) grown by ``margin_mm`` in every direction.

    The margin is in millimetres along each voxel axis (its spacing from ``affine``), clipped to the grid.
    """
    if margin_mm < 0:
        raise ValueError(f"margin_mm: expected >= 0 mm, got {margin_mm}")
    if not canal.any():
        raise ValueError("canal: empty mask, no box to crop")
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    box = []
    for ax in range(3):
        hit = np.flatnonzero(canal.any(axis=tuple(a for a in range(3) if a != ax)))
        pad = int(np.ceil(margin_mm / spacing[ax]))
        box.append(slice(max(int(hit[0]) - pad, 0), min(int(hit[-1]) + 1 + pad, canal.shape[ax])))
    return tuple(box)


def sub_volume(vol: Volume, box: tuple[slice, slice, slice]) -> Volume:
    """The voxels of ``vol`` inside ``box`` as a Volume (a view), its affine moved to the box's first voxel."""
    affine = vol.affine.copy()
    affine[:3, 3] = vol.affine[:3, :3] @ [b.start for b in box] + vol.affine[:3, 3]
    return Volume(vol.array[box], affine, dict(vol.meta))


def embed(part: np.ndarray, box: tuple[slice, slice, slice], shape: tuple[int, int, int]) -> np.ndarray:
    """``part`` (the box's shape) in an array of ``shape`` (the whole grid), zeros outside the box."""
    want = tuple(b.stop - b.start for b in box)
    if tuple(part.shape) != want:
        raise ValueError(f"part: shape {tuple(part.shape)} does not match the box {want}")
    out = np.zeros(shape, dtype=part.dtype)
    out[box] = part
    return out


def plexus_region(canal: np.ndarray, spacing, roi_mm: float) -> np.ndarray:
    """(I, J, K) bool: voxels within ``roi_mm`` of ``canal`` (an exact Euclidean distance in mm).

    Parameters
    ----------
    canal : (I, J, K) bool or uint8 ndarray
    spacing : (3,) float
        Voxel size, mm.
    roi_mm : float
        How far outside the canal plexus may be, mm.
    """
    if roi_mm < 0:
        raise ValueError(f"roi_mm: expected >= 0 mm, got {roi_mm}")
    inside = np.asarray(canal, dtype=bool)
    if roi_mm == 0 or not inside.any():
        return inside.copy()
    box = crop_box(inside, np.diag([*np.asarray(spacing, float), 1.0]), roi_mm + 1.0)
    dist = ndimage.distance_transform_edt(~inside[box], sampling=np.asarray(spacing, float))
    out = np.zeros(inside.shape, bool)
    out[box] = dist <= roi_mm
    return out


CT_MAX_VEIN_HU = 350.0  # an epidural vein, enhanced or not, stays below it; cortical and dense bone lie above


def kept_region(canal: np.ndarray, image: np.ndarray, spacing, roi_mm: float, modality: str, *,
                max_vein_hu: float = CT_MAX_VEIN_HU) -> np.ndarray:
    """(I, J, K) bool: where plexus may be kept: within ``roi_mm`` of ``canal`` (:func:`plexus_region`) and, on CT,
    not where the scan is brighter than ``max_vein_hu`` (the canal's bony wall: at 3 mm a voxel beside the canal is
    mostly cortex, and no vein runs inside cortex).

    Parameters
    ----------
    canal : (I, J, K) bool or uint8 ndarray
    image : (I, J, K) ndarray
        The scan on the same grid (HU on CT).
    spacing : (3,) float
        Voxel size, mm.
    roi_mm : float
    modality : {'CT', 'MR'}
    max_vein_hu : float
    """
    if image.shape != np.shape(canal):
        raise ValueError(f"image: shape {image.shape} differs from the canal's {np.shape(canal)}")
    region = plexus_region(canal, spacing, roi_mm)
    if modality == "CT":
        region &= image <= max_vein_hu
    return region
