"""Segment a scan with a model folder: preprocess -> sliding-window network -> back onto the input grid.

Everything comes from the model folder's ``metadata.json`` (spacing, orientation, intensity, patch size,
classes); the output label map lies on exactly the input's grid and affine.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from ..core.volume import Volume
from ..preprocess.transform import Prepared, invert, preprocess
from ..spine import CanalResult
from .crop import crop_box, embed, kept_region, sub_volume
from .model import ModelMetadata
from .predictor import background_and_labels, predict

log = logging.getLogger("plexus")


@dataclass
class Segmentation:
    """Result of :func:`segment` on the input grid: ``labels`` (I, J, K) uint8 (the most probable class) and
    ``probabilities`` (C, I, J, K) float32: the foreground classes resampled linearly, the background (class 0)
    what they leave, so 1 outside the body the model grid was cropped to."""

    labels: Volume
    probabilities: np.ndarray | None
    modality: str
    model_grid_shape: tuple[int, int, int]
    plexus: np.ndarray | None = None  # (I, J, K) float32: the plexus probability alone (canal first)


@torch.no_grad()
def segment(vol: Volume, model: torch.nn.Module, meta: ModelMetadata | dict, *, device: torch.device | None = None,
            modality: str | None = None, overlap: float | None = None, tta: bool | None = None,
            keep_probabilities: bool = False, prepared: Prepared | None = None) -> Segmentation:
    """Segment ``vol`` (see the module docstring).

    Parameters
    ----------
    vol : Volume
        (I, J, K) scan (CT in HU, MR in any units), any storage order; RAS mm affine.
    model : torch.nn.Module
        The network of the model folder (:func:`~pipeline.inference.model.load_model`).
    meta : ModelMetadata
        Its metadata: preprocessing, patch size, classes.
    device : torch.device, optional
        Where the network runs (default: where ``model`` is).
    modality : {'CT', 'MR'}, optional
        Default: from the DICOM tags or the intensities.
    overlap : float, optional
        Sliding-window overlap in [0, 1); ``None`` takes the model's.
    tta : bool, optional
        Average with the left-right flipped prediction; ``None`` takes the model folder's default
        (``metadata.json`` ``inference.tta``).
    keep_probabilities : bool
        Also return the (C, I, J, K) probabilities.
    prepared : Prepared, optional
        ``vol`` already preprocessed with the model's settings (``plexus infer`` does it while the case before is on
        the network).

    Returns
    -------
    Segmentation
        ``labels``: (I, J, K) uint8 on exactly ``vol``'s grid (0 background, 1 plexus, 2 vertebral bone);
        ``probabilities``: (C, I, J, K) float32 or None.
    """
    device = device or next(model.parameters()).device
    prep = prepared or preprocess(vol, ModelMetadata.of(meta).preprocess_config, modality)
    prob = predict(prep.image[None].float().to(device), model, meta, device=device, overlap=overlap, tta=tta)
    prob = prob.cpu()
    # back on the input grid: the foreground classes, and the background as what they leave (the classes sum to
    # one), which spares a third of the resampling of a large scan
    back = np.empty((prob.shape[1], *vol.shape), dtype=np.float32)
    invert(prep, prob[0, 1:], nearest=False, out=back[1:])
    del prob
    return Segmentation(vol.with_array(background_and_labels(back), kind="segmentation"),
                        back if keep_probabilities else None, prep.modality, tuple(prep.image.shape[1:]))


@dataclass(frozen=True)
class CanalCrop:
    """Stage 2's input: the scan inside the box that follows the canal, put on the model grid.

    ``box`` (input-grid slices) holds the canal grown by the crop margin; ``prepared`` is that sub-volume on the
    model grid (what the network sees); ``canal`` is stage 1's result on the whole input grid.
    """

    canal: CanalResult
    box: tuple[slice, slice, slice]
    prepared: Prepared


def prepare_in_canal(vol: Volume, canal: CanalResult, meta: ModelMetadata | dict, *, modality: str | None = None,
                     crop_margin_mm: float = 25.0) -> CanalCrop:
    """Crop ``vol`` to the canal grown by ``crop_margin_mm`` and preprocess the crop with the model's settings.

    Parameters
    ----------
    vol : Volume
        The whole scan.
    canal : CanalResult
        Stage 1 on ``vol`` (a spine must be in view).
    meta : ModelMetadata or dict
        The model folder's metadata (its ``preprocess`` settings), or its ``metadata.json`` as a dict.
    crop_margin_mm : float
        Context around the canal, mm: the vertebral bodies in front, the foramina and the laminae.
    """
    if not canal.found or canal.canal is None:
        raise ValueError(f"canal: stage 1 found no spine in this scan ({canal.reason})")
    box = crop_box(canal.canal, vol.affine, crop_margin_mm)
    part = sub_volume(vol, box)
    prep = preprocess(part, ModelMetadata.of(meta).preprocess_config, modality or canal.modality)
    return CanalCrop(canal, box, prep)


@torch.no_grad()
def segment_in_canal(vol: Volume, model: torch.nn.Module, meta: ModelMetadata | dict, crop: CanalCrop, *,
                     device: torch.device | None = None, overlap: float | None = None, tta: bool | None = None,
                     roi_mm: float = 4.0) -> Segmentation:
    """Stage 2: the network on the canal's crop (:func:`prepare_in_canal`), back on the whole input grid.

    The labels and the plexus probability come back voxel for voxel on ``vol``'s grid (zeros outside the crop);
    plexus is kept only within ``roi_mm`` of the canal and, on CT, out of its bony wall (:func:`.crop.kept_region`):
    the internal vertebral venous plexus is never outside the vertebral canal. The plexus probability is ``plexus``
    (``probabilities`` is None: a whole-spine CT's background channel would be 600 MB of what the plexus leaves).
    """
    part = sub_volume(vol, crop.box)
    seg = segment(part, model, meta, device=device, modality=crop.prepared.modality, overlap=overlap, tta=tta,
                  keep_probabilities=True, prepared=crop.prepared)
    # plexus only near the canal (and on CT not in its bony wall): everything outside the crop is background
    # already, so the box is enough
    outside = ~kept_region(crop.canal.canal[crop.box], part.array, vol.spacing, roi_mm, crop.prepared.modality)
    part_labels = seg.labels.array
    part_labels[(part_labels == 1) & outside] = 0
    part_prob = seg.probabilities[1]
    part_prob[outside] = 0.0
    labels = embed(part_labels, crop.box, vol.shape)
    prob = embed(part_prob.astype(np.float32, copy=False), crop.box, vol.shape)
    return Segmentation(vol.with_array(labels, kind="segmentation"), None, crop.prepared.modality,
                        tuple(crop.prepared.image.shape[1:]), plexus=prob)
