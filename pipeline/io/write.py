"""Write a :class:`~pipeline.core.volume.Volume` as NIfTI, NRRD or MetaImage, atomically (LPS on disk for NRRD and
MetaImage, RAS in memory)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from ..core.atomic import atomic_path
from ..core.layout import fortran_order
from ..core.volume import LPS_TO_RAS, Volume


def write_image(vol: Volume, path: str | Path, *, header: dict | None = None) -> Path:
    """Write ``vol`` to ``path`` (format from the extension), atomically; return the path.

    Parameters
    ----------
    vol : Volume
        (I, J, K) array and its (4, 4) voxel -> RAS mm affine; stored as LPS in NRRD and MetaImage.
    path : str or Path
        ``.nii``/``.nii.gz``, ``.nrrd``/``.nhdr`` or ``.mha``/``.mhd``.
    header : dict, optional
        Extra NRRD header fields (a Slicer ``.seg.nrrd``'s segments).

    Raises
    ------
    ValueError
        ``path`` has none of these extensions (naming the parameter).
    """
    path = Path(path)
    name = path.name.lower()
    with atomic_path(path) as tmp:
        if name.endswith((".nii", ".nii.gz")):
            _write_nifti(vol, tmp)
        elif name.endswith((".nrrd", ".nhdr")):
            _write_nrrd(vol, tmp, header or {})
        elif name.endswith((".mha", ".mhd")):
            _write_metaimage(vol, tmp)
        else:
            raise ValueError(f"path: cannot tell the format of {path} (use .nii.gz, .nrrd or .mha)")
    return path


def _write_nifti(vol: Volume, path: Path) -> None:
    img = nib.Nifti1Image(fortran_order(vol.array), vol.affine)  # NIfTI is Fortran order: no slow transposing write
    img.set_qform(vol.affine, code=1)
    img.set_sform(vol.affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    if vol.meta.get("modality"):
        img.header["descrip"] = f"plexus modality={vol.meta['modality']}".encode()[:79]
    nib.save(img, str(path))


def _write_nrrd(vol: Volume, path: Path, extra: dict) -> None:
    import nrrd

    lps = LPS_TO_RAS @ vol.affine
    header = {"space": "left-posterior-superior", "space directions": lps[:3, :3].T,
              "space origin": lps[:3, 3], "kinds": ["domain"] * 3, "encoding": "gzip"}
    header.update(extra)
    nrrd.write(str(path), fortran_order(vol.array), header, index_order="F", compression_level=1)


def _write_metaimage(vol: Volume, path: Path) -> None:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.transpose(fortran_order(vol.array), (2, 1, 0)))  # C order of (k, j, i)
    lps = LPS_TO_RAS @ vol.affine
    sp = np.linalg.norm(lps[:3, :3], axis=0)
    img.SetSpacing(tuple(float(s) for s in sp))
    img.SetDirection(tuple(float(v) for v in (lps[:3, :3] / sp).ravel()))
    img.SetOrigin(tuple(float(v) for v in lps[:3, 3]))
    sitk.WriteImage(img, str(path), useCompression=True)
