"""Checks every reader applies: the declared size before allocating, then dimensions, geometry and values."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..core.volume import Volume

MAX_VOXELS = 1_000_000_000  # refuse larger images before allocating (4 GB as float32)


def check_size(path: Path, shape: tuple[int, ...], max_voxels: int) -> None:
    """Raise :class:`InputError` naming ``path`` when ``shape`` (voxels per axis) holds more than ``max_voxels``."""
    n = int(np.prod([int(s) for s in shape], dtype=np.float64))
    if n > max_voxels:
        dims = "x".join(str(int(s)) for s in shape)
        raise InputError(path, f"image declares {dims} = {n:.2e} voxels ({n * 4 / 2**30:.0f} GiB as float32),"
                               f" over the limit of {max_voxels:.1e}; crop or downsample it first")


def validate(vol: Volume, *, first_volume: bool = False) -> Volume:
    """Check dimensions, geometry and values; raise :class:`InputError` naming the file on a problem."""
    path, a = vol.path, vol.array
    if a.size == 0 or 0 in a.shape:
        raise InputError(path, f"image has a dimension of size 0 (shape {a.shape})")
    if a.ndim == 4 and a.shape[3] == 1:
        a = a[..., 0]
    if a.ndim == 4:
        if not first_volume:
            raise InputError(path, f"4-D image with {a.shape[3]} volumes; pass --first-volume to use the first")
        a = a[..., 0]
        vol.meta["warnings"].append(f"{path}: 4-D image, using its first volume only")
    if a.ndim < 3:
        raise InputError(path, f"{a.ndim}-D image (shape {a.shape}); a 3-D volume is needed")
    if a.ndim > 4:
        raise InputError(path, f"{a.ndim}-D image (shape {a.shape}); a 3-D volume is needed")
    if min(a.shape) < 2:
        raise InputError(path, f"image has a single slice (shape {a.shape}); a 3-D volume is needed")
    check_affine(vol.affine, path)
    if a.dtype.kind == "f":
        finite = np.isfinite(a)
        n_bad = int(a.size - np.count_nonzero(finite))
        if n_bad == a.size:
            raise InputError(path, "every voxel is NaN or infinite")
        if n_bad:
            a = np.where(finite, a, np.min(a[finite])).astype(a.dtype)
            vol.meta["warnings"].append(f"{path}: {n_bad} NaN/Inf voxels replaced by the minimum value")
    vol.array = a
    return vol


def check_affine(affine: np.ndarray, path: str | Path = "<memory>") -> None:
    """Raise :class:`InputError` for a non-finite, singular, zero-spacing or sheared affine."""
    aff = np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4) or not np.all(np.isfinite(aff)):
        raise InputError(path, "affine is not a finite 4x4 matrix")
    sp = np.linalg.norm(aff[:3, :3], axis=0)
    if np.any(sp < 1e-6):
        raise InputError(path, f"zero or negative voxel spacing {tuple(np.round(sp, 6))}")
    if abs(np.linalg.det(aff[:3, :3])) < 1e-9 * np.prod(sp):
        raise InputError(path, "affine is not invertible")
    unit = aff[:3, :3] / sp
    gram = unit.T @ unit - np.eye(3)
    if np.max(np.abs(gram)) > 1e-3:
        raise InputError(path, f"sheared affine (voxel axes not orthogonal, max |cos| = {np.max(np.abs(gram)):.3f})")
