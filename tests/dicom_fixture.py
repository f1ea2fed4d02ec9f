"""Write small synthetic DICOM series (CT slices) with pydicom, for the bad-input and reader tests."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np


def write_series(folder: Path, positions_mm, *, series_uid: str = "1.2.826.0.1.3680043.8.498.1",
                 size: int = 16, spacing: float = 0.8, prefix: str = "s") -> Path:
    """One axial CT slice per z position in ``positions_mm`` (LPS), int16 with a rescale to HU."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(series_uid.encode()))
    for k, z in enumerate(positions_mm):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"{prefix}{k:03d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID, ds.StudyInstanceUID = "CT", "PHANTOM", "1.2.826.0.1.3680043.8.498.9"
        ds.SeriesInstanceUID, ds.InstanceNumber = series_uid, k + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(z)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing, ds.SliceThickness = [spacing, spacing], 1.0
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024.0, 1.0
        ds.PixelData = rng.integers(0, 2000, (size, size)).astype(np.int16).tobytes()
        pydicom.dcmwrite(str(folder / f"{prefix}{k:03d}.dcm"), ds, enforce_file_format=True)
    return folder
