"""Read and write 3-D medical images as one in-memory type, :class:`Volume`.

World frame
-----------
Every :class:`Volume` carries a 4x4 ``affine`` mapping a voxel index ``(i, j, k, 1)`` to a point in
millimetres in the patient's **RAS+** frame (NIfTI convention: +x towards the patient's Right, +y Anterior,
+z Superior). NRRD, MetaImage and DICOM store LPS; the conversion ``diag(-1, -1, 1)`` is applied here,
once, when reading and writing those formats. ``array[i, j, k]`` is indexed in the same order as the affine.

Formats: NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``, Slicer ``.seg.nrrd``), MetaImage
(``.mha``, ``.mhd``) and DICOM series (a folder, or one file of the series). The format is taken from the
file's content, not its name. Every problem is raised as :class:`~pipeline.errors.InputError` naming the
file.
"""

from __future__ import annotations

import gzip
import logging
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from .atomic import atomic_path
from .errors import InputError
from .layout import fortran_order

log = logging.getLogger("plexus")

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse
MAX_VOXELS = 1_000_000_000  # refuse larger images before allocating (4 GB as float32)


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

    def with_array(self, array: np.ndarray, **meta: Any) -> "Volume":
        """A new volume on the same grid holding ``array``."""
        if array.shape[:3] != self.array.shape[:3]:
            raise ValueError(f"array: shape {array.shape} does not match the grid {self.shape}")
        return Volume(array, self.affine.copy(), {**self.meta, **meta})


# ----------------------------------------------------------------------------------------------- sniffing
def _sniff(path: Path) -> str:
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
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file or folder")
    fmt = "dicom" if path.is_dir() else _sniff(path)
    try:
        if fmt == "dicom":
            from .dicom import read_dicom_series

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


def _check_size(path: Path, shape: tuple[int, ...], max_voxels: int) -> None:
    n = int(np.prod([int(s) for s in shape], dtype=np.float64))
    if n > max_voxels:
        dims = "x".join(str(int(s)) for s in shape)
        raise InputError(path, f"image declares {dims} = {n:.2e} voxels ({n * 4 / 2**30:.0f} GiB as float32),"
                               f" over the limit of {max_voxels:.1e}; crop or downsample it first")


def _read_nifti(path: Path, max_voxels: int) -> Volume:
    try:
        logging.getLogger("nibabel").setLevel(logging.ERROR)  # it "fixes" zero pixdim silently otherwise
        img = _load_nifti(path)
    except Exception as exc:  # nibabel raises many types for a broken header
        raise InputError(path, f"cannot read NIfTI header ({type(exc).__name__}: {exc})") from None
    _check_size(path, img.shape, max_voxels)
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
    _check_size(path, header.get("sizes", ()), max_voxels)
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
    _check_size(path, reader.GetSize(), max_voxels)
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
    _check_size(path, tuple(dims), max_voxels)
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
                                     f"spacing {tuple(round(float(x), 3) for x in other.spacing)} vs {tuple(round(float(x), 3) for x in ref.spacing)}"
                                     f"{', origin/direction differ' if other.shape == ref.shape else ''})")
    return other


# ------------------------------------------------------------------------------------------- validation
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


# --------------------------------------------------------------------------------------------- writing
def write_image(vol: Volume, path: str | Path, *, header: dict | None = None) -> Path:
    """Write ``vol`` to ``path`` (format from the extension), atomically; return the path."""
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


def read_label_map(path: str | Path, **kwargs: Any) -> Volume:
    """Read an integer label map (float-stored maps with integral values are accepted)."""
    vol = read_image(path, **kwargs)
    a = vol.array
    if a.dtype.kind == "f":
        if not np.all(np.equal(np.mod(a, 1), 0)):
            raise InputError(path, "label map holds non-integer values")
    if a.min() < 0:
        raise InputError(path, f"label map holds negative labels (min {a.min()})")
    vol.array = a.astype(np.int32 if a.max() > 65535 else np.uint16)
    return vol
