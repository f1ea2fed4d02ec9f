"""The one in-memory image type, :class:`Volume`, and its exact re-storing (no I/O here).

World frame
-----------
Every :class:`Volume` carries a 4x4 ``affine`` mapping a voxel index ``(i, j, k, 1)`` to a point in
millimetres in the patient's **RAS+** frame (NIfTI convention: +x towards the patient's Right, +y Anterior,
+z Superior). NRRD, MetaImage and DICOM store LPS; the conversion :data:`LPS_TO_RAS` is applied once, by
:mod:`pipeline.io`, when reading and writing those formats. ``array[i, j, k]`` is indexed in the same order as
the affine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import nibabel as nib
import numpy as np

from .errors import InputError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse


@dataclass
class Volume:
    """A 3-D image: ``array`` (I, J, K), ``affine`` (4, 4) voxel index -> RAS mm, and metadata.

    ``meta`` holds ``path``, ``format``, ``modality`` (``"CT"``, ``"MR"`` or ``None``), ``warnings``
    (list of str) and format-specific fields (``series_uid``, ``segments``...).
    """

    array: np.ndarray
    affine: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape[:3])

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size along each array axis, mm, shape (3,)."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def axcodes(self) -> tuple[str, str, str]:
        """Anatomical direction each array axis points to, e.g. ``('L', 'P', 'S')``."""
        return tuple(nib.aff2axcodes(self.affine))

    @property
    def path(self) -> str:
        return str(self.meta.get("path", "<memory>"))

    def with_array(self, array: np.ndarray, **meta: Any) -> Volume:
        """A new volume on the same grid holding ``array``."""
        if array.shape[:3] != self.array.shape[:3]:
            raise ValueError(f"array: shape {array.shape} does not match the grid {self.shape}")
        return Volume(array, self.affine.copy(), {**self.meta, **meta})


def reorient(vol: Volume, axcodes: str = "RAS") -> Volume:
    """The same image stored with array axes along ``axcodes`` (exact permutation/flip, same world points).

    The nearest axcodes are used for oblique grids; ``reorient(vol)`` gives the closest RAS storage.
    """
    ornt = nib.orientations.ornt_transform(nib.orientations.io_orientation(vol.affine),
                                           nib.orientations.axcodes2ornt(tuple(axcodes)))
    if np.array_equal(ornt, [[0, 1], [1, 1], [2, 1]]):
        return vol
    arr = np.ascontiguousarray(nib.orientations.apply_orientation(vol.array, ornt))
    aff = vol.affine @ nib.orientations.inv_ornt_aff(ornt, vol.array.shape)
    return Volume(arr, aff, dict(vol.meta))


def same_grid(ref: Volume, other: Volume, what: str, ref_what: str = "mask") -> Volume:
    """``other`` on ``ref``'s grid: as it is, or re-stored in ``ref``'s axis order when it holds the same voxels in
    another storage order (an exact permutation/flip, as other tools write); any other grid is an error."""
    if other.shape != ref.shape or not np.allclose(other.affine, ref.affine, atol=1e-3):
        same = reorient(other, "".join(ref.axcodes))
        if same.shape == ref.shape and np.allclose(same.affine, ref.affine, atol=1e-3):
            return same
        raise InputError(other.path, f"{what} grid differs from the {ref_what}'s (shape {other.shape} vs {ref.shape}, "
                                     f"spacing {tuple(round(float(x), 3) for x in other.spacing)} vs "
                                     f"{tuple(round(float(x), 3) for x in ref.spacing)}"
                                     f"{', origin/direction differ' if other.shape == ref.shape else ''})")
    return other
