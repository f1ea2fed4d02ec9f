"""Resampling between voxel grids in world millimetres, fast enough for whole-body CT.

The grids follow MONAI's conventions exactly (``Spacingd``: the model grid keeps the image's direction, takes the
model's voxel size and covers the image's extent; voxel centres map through the affines; values beyond the
border are the edge values), so what the network sees at inference equals what it saw in training; but where
MONAI builds a dense sampling grid and calls ``grid_sample`` (about 20 s and 2 GB for a 512 x 512 x 600 CT on
two cores), an axis-aligned pair of grids is resampled separably (``scipy.ndimage.affine_transform`` with a
diagonal matrix), in slabs on every core. Oblique pairs take the general matrix, also in slabs.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import nibabel as nib
import numpy as np
from scipy import ndimage


def model_grid(affine: np.ndarray, shape: tuple[int, int, int], spacing) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The grid ``Spacingd(pixdim=spacing)`` resamples an image of ``shape`` and ``affine`` onto.

    Parameters
    ----------
    affine : (4, 4) ndarray
        Voxel index -> world mm of the image.
    shape : (3,) int
    spacing : (3,) float
        Voxel size of the new grid, mm.

    Returns
    -------
    affine : (4, 4) ndarray; shape : (3,) int
    """
    from monai.data.utils import compute_shape_offset, zoom_affine

    new = zoom_affine(np.asarray(affine, dtype=np.float64), np.asarray(spacing, dtype=np.float64), diagonal=False)
    out_shape, offset = compute_shape_offset(np.asarray(shape), np.asarray(affine, dtype=np.float64), new, False)
    new[:3, 3] = offset[:3]
    return new, tuple(int(n) for n in out_shape)


def resample(array: np.ndarray, src_affine: np.ndarray, dst_affine: np.ndarray, shape, *, order: int = 1,
             threads: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """``array`` on the grid of ``src_affine`` sampled at the voxel centres of the grid (``dst_affine``, ``shape``).

    Parameters
    ----------
    array : (I, J, K) ndarray
    src_affine, dst_affine : (4, 4) ndarray
        Voxel index -> world mm.
    shape : (3,) int
        Shape of the new grid.
    order : {0, 1}
        Nearest-neighbour or linear interpolation.
    threads : int, optional
        Slabs resampled at once (default: the cores this process may use, at most 8).
    out : (shape) float32 ndarray, optional
        Where to write the result (any strides, e.g. a view into a larger volume); returned.

    Returns
    -------
    (shape) float32 ndarray, never ``array`` itself; beyond the source's border, the values at its edge. Its memory
    order follows the source's (a Fortran-ordered source gives a Fortran-ordered result).
    """
    if order not in (0, 1):
        raise ValueError(f"order: expected 0 or 1, got {order}")
    shape = tuple(int(n) for n in shape)
    if out is not None and (tuple(out.shape) != shape or out.dtype != np.float32):
        raise ValueError(f"out: expected a float32 array of shape {shape}, got {out.dtype} {out.shape}")
    perm = [int(a) for a in np.argsort([-abs(st) for st in array.strides], kind="stable")]
    if array.ndim == 3 and perm != [0, 1, 2]:  # NIfTI arrays (Fortran order), transposed views: walk the source in
        q = np.eye(4)[:, perm + [3]]           # its memory order (3-4 times faster), both grids' voxel axes permuted
        res = resample(array.transpose(perm), np.asarray(src_affine) @ q, np.asarray(dst_affine) @ q,
                       [shape[a] for a in perm], order=order, threads=threads,
                       out=None if out is None else out.transpose(perm))
        return out if out is not None else res.transpose(np.argsort(perm))  # in the caller's axis order
    xform = np.linalg.solve(np.asarray(src_affine, np.float64), np.asarray(dst_affine, np.float64))
    if shape == array.shape and np.allclose(xform, np.eye(4), atol=1e-6):
        if out is None:
            return np.array(array, dtype=np.float32)  # a copy: callers may work on it in place
        out[...] = array
        return out
    m, t = xform[:3, :3], xform[:3, 3]
    matrix = np.diag(m) if _axis_aligned(m) else m  # 1-D: the separable algorithm
    # integers are sampled as they are stored (exact in float32 anyway): no float copy of a large scan
    src = array if array.dtype.kind in "iu" and array.dtype.itemsize <= 2 else np.asarray(array, dtype=np.float32)
    out = np.empty(shape, dtype=np.float32) if out is None else out
    n = max(1, min(threads or available_cores(), 8, shape[0]))
    if out.size < 2_000_000:
        n = 1
    cuts = np.linspace(0, shape[0], n + 1).astype(int)

    def slab(k: int) -> None:
        a, b = cuts[k], cuts[k + 1]
        ndimage.affine_transform(src, matrix, offset=t + m[:, 0] * a, output_shape=(b - a, *shape[1:]),
                                 output=out[a:b], order=order, mode="nearest")

    if n == 1:
        slab(0)
    else:  # scipy releases the GIL while it samples
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(slab, range(n)))
    return out


def _axis_aligned(m: np.ndarray) -> bool:
    """Whether the (3, 3) voxel-to-voxel matrix between two grids is diagonal (no rotation between them)."""
    return bool(np.allclose(m, np.diag(np.diag(m)), atol=1e-9))


def reachable_box(src_shape, src_affine, dst_affine, dst_shape, lo, hi) -> tuple[slice, slice, slice] | None:
    """The box of the grid (``dst_affine``, ``dst_shape``) whose samples of a source padded with one plane of zeros
    (on the sides flagged in ``lo``, ``hi``) can be non-zero; the whole grid for an oblique pair; ``None`` when no
    voxel can."""
    xform = np.linalg.solve(src_affine, dst_affine)
    m = xform[:3, :3]
    if not _axis_aligned(m):
        return tuple(slice(0, n) for n in dst_shape)
    box = []
    for a in range(3):
        coord = np.diag(m)[a] * np.arange(dst_shape[a]) + xform[a, 3]  # source voxel coordinate along the axis
        ok = np.ones(dst_shape[a], bool)
        if lo[a]:
            ok &= coord > 0.0 - 1e-6                          # past the plane of zeros (with a rounding margin)
        if hi[a]:
            ok &= coord < src_shape[a] - 1 + 1e-6
        idx = np.flatnonzero(ok)
        if idx.size == 0:
            return None
        box.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return tuple(box)


def available_cores() -> int:
    """The cores this process may use (its affinity where the system tells it, as on Linux)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def orientation(affine: np.ndarray, axcodes: str) -> np.ndarray:
    """The nibabel orientation transform that stores an image of ``affine`` along ``axcodes`` (nearest axes)."""
    return nib.orientations.ornt_transform(nib.orientations.io_orientation(affine),
                                           nib.orientations.axcodes2ornt(tuple(axcodes)))


def reoriented_affine(affine: np.ndarray, shape, ornt: np.ndarray) -> np.ndarray:
    """The affine of an image of ``shape`` and ``affine`` once ``ornt`` has been applied to its array."""
    return affine @ nib.orientations.inv_ornt_aff(ornt, shape)
