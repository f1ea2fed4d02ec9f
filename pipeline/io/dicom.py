"""Read a DICOM series (a folder of slices) into a RAS :class:`~pipeline.io.Volume`.

Slices are grouped by SeriesInstanceUID, the series with most slices is chosen unless a UID is given,
and slices are ordered by their position along the slice normal (never by file name or InstanceNumber).
Compressed transfer syntaxes (JPEG 2000, JPEG-LS, RLE...) decode through pydicom's pylibjpeg plug-ins.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..core.volume import LPS_TO_RAS, Volume
from .checks import check_size

log = logging.getLogger("plexus")

SPACING_TOLERANCE = 0.02  # relative deviation of one slice step from the median step


def _floats(item, tag: str, n: int) -> np.ndarray:
    """``n`` finite numbers of a geometry tag of one slice ``(file, dataset)``, or a clear error naming the slice."""
    f, ds = item
    try:
        vals = np.asarray([float(v) for v in ds[tag].value], dtype=np.float64)
    except (ValueError, TypeError, KeyError):
        raise InputError(f, f"invalid {tag} ({ds.get(tag).value if tag in ds else 'missing'!r})") from None
    if vals.shape != (n,) or not np.all(np.isfinite(vals)):
        raise InputError(f, f"invalid {tag}: expected {n} finite numbers, got {vals.tolist()}")
    return vals


def _has_dicm(f: Path) -> bool:
    with open(f, "rb") as fh:
        return fh.read(132)[128:132] == b"DICM"


def _headers(folder: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    found = []
    for f in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            usable = all(k in ds for k in ("ImagePositionPatient", "ImageOrientationPatient", "Rows", "Columns"))
        except InvalidDicomError:
            continue  # not DICOM: other files in the folder are ignored
        except Exception as exc:  # DICOM by its preamble but unreadable: never drop a slice silently
            if _has_dicm(f):
                raise InputError(f, f"corrupt DICOM file ({type(exc).__name__}: {str(exc)[:100]})") from None
            continue
        if not usable:
            continue
        found.append((f, ds))
    return found


def read_dicom_series(folder: Path, *, series: str | None = None, only_file: Path | None = None,
                      max_voxels: int = 1_000_000_000):
    """Read one series of ``folder``.

    Parameters
    ----------
    folder : Path
        Folder holding the slices (not searched recursively).
    series : str, optional
        SeriesInstanceUID to read; default: the series with most slices (a warning names the others).
    only_file : Path, optional
        A file of the series the user pointed at: read that file's series.
    """
    folder = Path(folder)
    where = only_file or folder
    headers = _headers(folder)
    if not headers:
        raise InputError(where, "folder holds no DICOM image slices")
    groups: dict[str, list] = defaultdict(list)
    for f, ds in headers:
        groups[str(ds.get("SeriesInstanceUID", "unknown"))].append((f, ds))
    warnings_: list[str] = []
    if only_file is not None and series is None:
        series = next((uid for uid, items in groups.items() if any(f == only_file for f, _ in items)), None)
    if series is not None:
        if series not in groups:
            raise InputError(where, f"no series {series}; found {', '.join(sorted(groups))}")
        uid = series
    else:
        uid = max(groups, key=lambda u: len(groups[u]))
        if len(groups) > 1:
            others = ", ".join(f"{u} ({len(groups[u])} slices)" for u in groups if u != uid)
            warnings_.append(f"{where}: {len(groups)} series found; using {uid} with {len(groups[uid])}"
                             f" slices (others: {others}); choose one with --series")
    items = groups[uid]
    if len(items) < 2:
        raise InputError(where, "series has only one slice; a 3-D volume needs several")

    iop = _floats(items[0], "ImageOrientationPatient", 6)
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    for f, ds in items:
        if not np.allclose(_floats((f, ds), "ImageOrientationPatient", 6), iop, atol=1e-4):
            raise InputError(f, "slices of the series have different orientations")
        if (ds.Rows, ds.Columns) != (items[0][1].Rows, items[0][1].Columns):
            raise InputError(f, "slices of the series have different sizes")
    pos = np.array([_floats(item, "ImagePositionPatient", 3) for item in items])
    dist = pos @ normal
    order = np.argsort(dist)
    items = [items[i] for i in order]
    pos, dist = pos[order], dist[order]
    steps = np.diff(dist)
    if np.any(steps < 1e-3):
        i = int(np.argmin(steps))
        raise InputError(where, f"two slices at the same position ({dist[i]:.2f} mm along the normal)")
    step = float(np.median(steps))
    dev = np.abs(steps - step) / step
    if np.any(dev > SPACING_TOLERANCE):
        i = int(np.argmax(dev))
        if steps[i] > 1.5 * step:
            raise InputError(where, f"missing slice(s): a gap of {steps[i]:.2f} mm between slice positions "
                                    f"{dist[i]:.2f} and {dist[i + 1]:.2f} mm where the series steps {step:.2f} mm")
        raise InputError(where, f"uneven slice spacing ({steps.min():.2f} to {steps.max():.2f} mm)")

    first = items[0][1]
    rows, cols = int(first.Rows), int(first.Columns)
    check_size(where, (cols, rows, len(items)), max_voxels)
    ps = list(_floats((items[0][0], first), "PixelSpacing", 2)) if "PixelSpacing" in first else [1.0, 1.0]
    if min(ps) <= 0:
        raise InputError(where, f"zero or negative PixelSpacing {ps}")
    vol = np.empty((cols, rows, len(items)), dtype=np.float32)
    import pydicom

    for k, (f, _) in enumerate(items):
        try:
            ds = pydicom.dcmread(f)
        except Exception as exc:  # read fine without its pixels, corrupt with them
            raise InputError(f, f"corrupt DICOM file ({type(exc).__name__}: {str(exc)[:100]})") from None
        try:
            px = ds.pixel_array
        except Exception as exc:
            ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
            name = getattr(ts, "name", str(ts))
            raise InputError(f, f"cannot decode pixel data (transfer syntax {name}): {exc}") from None
        if px.ndim != 2:
            raise InputError(f, f"multi-frame or colour slice (pixel array shape {px.shape}) is not supported")
        try:
            slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
            inter = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        except (TypeError, ValueError):
            raise InputError(f, f"invalid RescaleSlope/RescaleIntercept ({ds.get('RescaleSlope')!r}, "
                                f"{ds.get('RescaleIntercept')!r})") from None
        if px.shape != (rows, cols):
            raise InputError(f, f"pixel data of shape {px.shape} where the header says {rows}x{cols}")
        vol[:, :, k] = px.T.astype(np.float32) * slope + inter

    lps = np.eye(4)
    lps[:3, 0] = row_dir * ps[1]   # array axis 0 = column index, along the row direction cosine
    lps[:3, 1] = col_dir * ps[0]   # array axis 1 = row index
    lps[:3, 2] = (pos[-1] - pos[0]) / (len(items) - 1)
    lps[:3, 3] = pos[0]
    modality = str(first.get("Modality", "")) or None
    meta = {"path": str(where), "format": "dicom", "series_uid": uid, "modality": modality if modality in
            ("CT", "MR") else None, "n_slices": len(items), "warnings": warnings_,
            "transfer_syntax": str(getattr(first.file_meta, "TransferSyntaxUID", ""))}
    for w in warnings_:
        log.warning(w)
    return Volume(vol, LPS_TO_RAS @ lps, meta)
