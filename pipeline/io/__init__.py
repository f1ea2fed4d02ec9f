"""Stage 0, input and output: images of every format in and out as :class:`~pipeline.core.volume.Volume`
(RAS world frame), DICOM series, vertebra maps."""

from ..core.volume import Volume, reorient, same_grid
from .formats import UNEXPECTED, read_image, read_label_map, sniff
from .vertebrae import read_vertebrae
from .write import write_image

__all__ = ["UNEXPECTED", "Volume", "read_image", "read_label_map", "read_vertebrae", "reorient", "same_grid", "sniff",
           "write_image"]
