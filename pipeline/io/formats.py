"""Read 3-D medical images into one in-memory type, :class:`~pipeline.core.volume.Volume` (RAS world frame).

Formats: NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``, Slicer ``.seg.nrrd``), MetaImage
(``.mha``, ``.mhd``) and DICOM series (a folder, or one file of the series). The format is taken from the
file's content, not its name. NRRD, MetaImage and DICOM store LPS; :data:`~pipeline.core.volume.LPS_TO_RAS` is
applied here, once. Every problem is raised as :class:`~pipeline.core.errors.InputError` naming the file.
"""

from __future__ import annotations

import gzip
import logging
import warnings
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..core.errors import InputError
from ..core.volume import LPS_TO_RAS, Volume
from .checks import MAX_VOXELS, check_size, validate
from .dicom import read_dicom_series

log = logging.getLogger("plexus")



# ----------------------------------------------------------------------------------------------- sniffing
def sniff(path: Path) -> str:
    """Return the format of ``path`` from its first bytes: nifti, nrrd, metaimage or dicom."""
    with open(path, "rb") as fh:
        head = fh.read(352)
    if not head:
        raise InputError(path, "empty file (0 bytes)")
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as gz:
                head = gz.read(352)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(path, f"corrupt gzip stream ({exc})") from None
        if head[:4] == b"NRRD":
            return "nrrd"
    if len(head) >= 4 and int.from_bytes(head[:4], "little") in (348, 540):
        return "nifti"
    if len(head) >= 4 and int.from_bytes(head[:4], "big") in (348, 540):
        return "nifti"
    if head[:4] == b"NRRD":
        return "nrrd"
    if head[128:132] == b"DICM":
        return "dicom"
    text = head.decode("latin-1")
    if "ObjectType" in text or "NDims" in text:
        return "metaimage"
    raise InputError(path, "unrecognised file format (expected NIfTI, NRRD, MetaImage or DICOM)")


_NAME_FORMATS = {".nii.gz": "nifti", ".nii": "nifti", ".nrrd": "nrrd", ".nhdr": "nrrd", ".mha": "metaimage",
                 ".mhd": "metaimage", ".dcm": "dicom"}


UNEXPECTED = "unexpected "  # marks reader failures caught by the safety net (counted by bench/fuzz_readers.py)


def _format_of_name(name: str) -> str | None:
    """The format a file name's extension claims (``None`` for an unknown or missing extension)."""
    low = name.lower()
    return next((fmt for ext, fmt in _NAME_FORMATS.items() if low.endswith(ext)), None)


def read_image(path: str | Path, *, series: str | None = None, first_volume: bool = False,
               max_voxels: int = MAX_VOXELS) -> Volume:
    """Read any supported image into a :class:`Volume`.

    Parameters
    ----------
    path : str or Path
        A file, or a folder holding one DICOM series (or several: see ``series``).
    series : str, optional
        SeriesInstanceUID to read from a DICOM folder; default: the series with most slices.
    first_volume : bool
        For a 4-D image, use the first volume instead of refusing it.
    max_voxels : int
        Refuse images declaring more voxels than this, before allocating them.

    Returns
    -------
    Volume
        ``array`` (I, J, K) in the file's own storage order and values (CT in HU), ``affine`` (4, 4) voxel index ->
        RAS mm, ``meta`` with ``path``, ``format``, ``modality`` and ``warnings``.

    Raises
    ------
    InputError
        Naming the file and the problem: missing, empty, corrupt, unsupported, too large, 4-D without
        ``first_volume``, a degenerate geometry.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file or folder")
    fmt = "dicom" if path.is_dir() else sniff(path)
    try:
        if fmt == "dicom":
            folder, only = (path, None) if path.is_dir() else (path.parent, path)
            vol = read_dicom_series(folder, series=series, only_file=only, max_voxels=max_voxels)
        else:
            reader = {"nifti": _read_nifti, "nrrd": _read_nrrd, "metaimage": _read_metaimage}[fmt]
            vol = reader(path, max_voxels)
    except (InputError, KeyboardInterrupt):
        raise
    except Exception as exc:  # a corrupt file the specific checks missed: still one clear line
        raise InputError(path, f"cannot read this {fmt.upper()} input, it is corrupt "
                               f"({UNEXPECTED}{type(exc).__name__}: {str(exc)[:120]})") from None
    if not path.is_dir():
        claimed = _format_of_name(path.name)
        if claimed and claimed != fmt:
            vol.meta.setdefault("warnings", []).append(
                f"{path}: the name says {claimed.upper()} but the content is {fmt.upper()}; read as {fmt.upper()}")
    vol.meta.setdefault("path", str(path))
    vol.meta.setdefault("warnings", [])
    return validate(vol, first_volume=first_volume)


def _read_nifti(path: Path, max_voxels: int) -> Volume:
    try:
        logging.getLogger("nibabel").setLevel(logging.ERROR)  # it "fixes" zero pixdim silently otherwise
        img = _load_nifti(path)
    except Exception as exc:  # nibabel raises many types for a broken header
        raise InputError(path, f"cannot read NIfTI header ({type(exc).__name__}: {exc})") from None
    check_size(path, img.shape, max_voxels)
    hdr = _raw_nifti_header(path)  # nibabel's loaded header has zero pixdim "fixed" to 1
    if hdr is not None and int(hdr["sform_code"]) == 0 and np.any(hdr["pixdim"][1:min(4, len(img.shape) + 1)] <= 0):
        raise InputError(path, f"zero or negative voxel spacing in the header (pixdim {hdr['pixdim'][1:4].tolist()})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = np.asanyarray(img.dataobj)
    except Exception as exc:
        raise InputError(path, f"cannot read NIfTI data, file truncated or corrupt ({type(exc).__name__})") from None
    modality = None
    descrip = img.header["descrip"].tobytes().decode("latin-1") if "descrip" in img.header else ""
    for m in ("CT", "MR"):
        if f"modality={m}" in descrip:
            modality = m
    return Volume(data, np.asarray(img.affine, dtype=np.float64), {"path": str(path), "format": "nifti",
                                                                     "modality": modality})


def _load_nifti(path: Path):
    """``nib.load``, also for a NIfTI file under another name (nibabel picks the reader from the extension)."""
    if path.name.lower().endswith((".nii", ".nii.gz")):
        return nib.load(str(path))
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    data = (gzip.open if gz else open)(path, "rb").read()
    klass = nib.Nifti2Image if int.from_bytes(data[:4], "little") == 540 or int.from_bytes(data[:4], "big") == 540 \
        else nib.Nifti1Image
    return klass.from_bytes(data)


def _raw_nifti_header(path: Path):
    """The NIfTI-1 header exactly as stored (no automatic fixes), or None for NIfTI-2."""
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
            return nib.Nifti1Header.from_fileobj(fh, check=False)
    except Exception:
        return None


def _nrrd_affine(path: Path, header: dict) -> tuple[np.ndarray, list[int]]:
    """RAS affine of the domain axes of a NRRD header, and the indices of those axes."""
    space = str(header.get("space", "")).lower()
    dirs = header.get("space directions")
    if dirs is None:
        raise InputError(path, "NRRD header has no 'space directions'; its geometry is unknown")
    dirs = np.asarray(dirs, dtype=np.float64)
    if dirs.ndim != 2 or dirs.shape[1] != 3:
        raise InputError(path, f"NRRD 'space directions' are not 3-vectors (shape {dirs.shape})")
    domain = [i for i, row in enumerate(dirs) if np.all(np.isfinite(row))]
    if len(domain) != 3:
        raise InputError(path, f"NRRD has {len(domain)} spatial axes; a 3-D volume is needed")
    origin = np.asarray(header.get("space origin", np.zeros(3)), dtype=np.float64)
    if origin.shape != (3,) or not np.all(np.isfinite(origin)):
        raise InputError(path, f"NRRD 'space origin' is not a finite 3-vector ({origin.tolist()})")
    aff = np.eye(4)
    aff[:3, :3] = dirs[domain].T
    aff[:3, 3] = origin
    if space in ("left-posterior-superior", "lps"):
        aff = LPS_TO_RAS @ aff
    elif space in ("right-anterior-superior", "ras"):
        pass
    elif space in ("left-anterior-superior", "las"):
        aff = np.diag([-1.0, 1.0, 1.0, 1.0]) @ aff
    else:
        raise InputError(path, f"NRRD space '{space}' is not supported (use RAS, LPS or LAS)")
    return aff, domain


def _read_nrrd(path: Path, max_voxels: int) -> Volume:
    import nrrd

    try:
        header = nrrd.read_header(str(path))
    except Exception as exc:
        raise InputError(path, f"cannot read NRRD header ({exc})") from None
    check_size(path, header.get("sizes", ()), max_voxels)
    aff, domain = _nrrd_affine(path, header)
    try:
        data, header = nrrd.read(str(path))
    except Exception as exc:
        raise InputError(path, f"cannot read NRRD data, file truncated or corrupt ({type(exc).__name__})") from None
    meta: dict[str, Any] = {"path": str(path), "format": "nrrd", "modality": None}
    if data.ndim == 4:
        list_axes = [i for i in range(4) if i not in domain]
        data = np.moveaxis(data, list_axes[0], -1)
    segments = _segments_from_header(header)
    if segments:
        meta["segments"] = segments
        if data.ndim == 4:  # several layers: give every segment its own label value
            merged = np.zeros(data.shape[:3], dtype=np.uint16)
            for idx, seg in enumerate(segments, start=1):
                merged[data[..., seg["layer"]] == seg["label_value"]] = idx
                seg["label_value"], seg["layer"] = idx, 0
            data = merged
            meta["warnings"] = [f"{path}: segmentation has several layers; segments were merged, overlaps"
                                " resolved in favour of later segments"]
    return Volume(data, aff, meta)


def _segments_from_header(header: dict) -> list[dict]:
    """Slicer .seg.nrrd segment descriptions (name, label value, layer, colour)."""
    out = []
    i = 0
    while f"Segment{i}_ID" in header:
        color = [float(c) for c in str(header.get(f"Segment{i}_Color", "0.5 0.5 0.5")).split()]
        out.append({"id": header[f"Segment{i}_ID"], "name": header.get(f"Segment{i}_Name", f"Segment_{i}"),
                    "label_value": int(header.get(f"Segment{i}_LabelValue", i + 1)),
                    "layer": int(header.get(f"Segment{i}_Layer", 0)), "color": color})
        i += 1
    return out


def _read_metaimage(path: Path, max_voxels: int) -> Volume:
    import SimpleITK as sitk

    _check_metaimage_header(path, max_voxels)  # ITK hangs or aborts on some corrupt headers: check them first
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(path, f"cannot read MetaImage header ({str(exc).strip().splitlines()[-1]})") from None
    check_size(path, reader.GetSize(), max_voxels)
    try:
        img = reader.Execute()
    except RuntimeError:
        raise InputError(path, "cannot read MetaImage data, file truncated or corrupt") from None
    return volume_from_sitk(img, path)


def _check_metaimage_header(path: Path, max_voxels: int) -> None:
    """Refuse a MetaImage header whose NDims/DimSize/ElementSpacing are not sane, before ITK parses it."""
    with open(path, "rb") as fh:
        head = fh.read(65536)
    fields: dict[str, str] = {}
    for raw in head.split(b"\n"):
        key, sep, value = raw.decode("latin-1").partition("=")
        if sep:
            fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            break
    try:
        ndims = int(fields.get("NDims", ""))
    except ValueError:
        raise InputError(path, f"MetaImage NDims is not a number ({fields.get('NDims')!r})") from None
    if not 1 <= ndims <= 4:
        raise InputError(path, f"MetaImage NDims = {ndims}; a 3-D volume is needed")
    for key in ("DimSize", "ElementSpacing", "ElementSize"):
        if key in fields and len(fields[key].split()) != ndims:
            raise InputError(path, f"MetaImage {key} has {len(fields[key].split())} values for NDims = {ndims}")
    try:
        dims = [int(v) for v in fields.get("DimSize", "").split()]
    except ValueError:
        raise InputError(path, f"MetaImage DimSize is not a list of integers ({fields['DimSize']!r})") from None
    if len(dims) != ndims or min(dims) < 0:
        raise InputError(path, f"MetaImage DimSize {fields.get('DimSize')!r} is missing or negative")
    check_size(path, tuple(dims), max_voxels)
    data = fields.get("ElementDataFile", "")
    if data.upper() != "LOCAL":  # ITK crashes the interpreter on some unreadable data-file names
        if not data or not data.isprintable() or data.upper().startswith("LIST") or "%" in data:
            raise InputError(path, f"MetaImage ElementDataFile {data[:60]!r} is not supported (use LOCAL or a file)")
        if not (path.parent / data).is_file():
            raise InputError(path, f"MetaImage data file {data!r} named in the header does not exist")


def volume_from_sitk(img, path: Path | str) -> Volume:
    """Convert a SimpleITK image (LPS geometry) into a RAS :class:`Volume`."""
    import SimpleITK as sitk

    dim = img.GetDimension()
    data = sitk.GetArrayFromImage(img)
    data = np.transpose(data, tuple(range(dim - 1, -1, -1)) + tuple(range(dim, data.ndim)))
    if dim == 2:
        return Volume(data, np.eye(4), {"path": str(path), "format": "metaimage"})
    d = np.asarray(img.GetDirection(), dtype=np.float64).reshape(dim, dim)[:3, :3]
    sp = np.asarray(img.GetSpacing(), dtype=np.float64)[:3]
    aff = np.eye(4)
    aff[:3, :3] = d * sp[None, :]
    aff[:3, 3] = np.asarray(img.GetOrigin(), dtype=np.float64)[:3]
    return Volume(data, LPS_TO_RAS @ aff, {"path": str(path), "format": "metaimage", "modality": None})


def read_label_map(path: str | Path, **kwargs: Any) -> Volume:
    """Read an integer label map (float-stored maps with integral values are accepted).

    Parameters
    ----------
    path : str or Path
        Any format :func:`read_image` reads; ``kwargs`` go to it.

    Returns
    -------
    Volume
        (I, J, K) uint16 labels (int32 above 65535) on the file's grid.

    Raises
    ------
    InputError
        Non-integer or negative labels, or anything :func:`read_image` refuses.
    """
    vol = read_image(path, **kwargs)
    a = vol.array
    if a.dtype.kind == "f":
        if not np.all(np.equal(np.mod(a, 1), 0)):
            raise InputError(path, "label map holds non-integer values")
    if a.min() < 0:
        raise InputError(path, f"label map holds negative labels (min {a.min()})")
    vol.array = a.astype(np.int32 if a.max() > 65535 else np.uint16)
    return vol
