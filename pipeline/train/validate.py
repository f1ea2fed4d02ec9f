"""Validation during training: one preprocessed case scored with the same sliding-window predictor ``plexus infer``
runs (:func:`pipeline.inference.predictor.predict`: its patch, overlap, mirrored pass and mixed precision)."""

from __future__ import annotations

import numpy as np
import torch

from ..core.volume import Volume
from ..evaluation.metrics import calibre_score, cldice, dice
from ..inference.predictor import predict
from ..postprocess.measure import measure
from .config import TrainConfig


def inference_meta(cfg: TrainConfig) -> dict:
    """The ``inference`` and ``outputs`` sections the model folder of ``cfg`` will hold (what :func:`predict`
    reads)."""
    return {"inference": {"patch_size": list(cfg.train.patch_size), "overlap": cfg.train.sw_overlap,
                          "tta": cfg.train.tta},
            "outputs": {"classes": {str(k): v for k, v in cfg.classes.items()}}}


@torch.no_grad()
def predict_labels(model: torch.nn.Module, image: torch.Tensor, cfg: TrainConfig, device: torch.device) -> np.ndarray:
    """Class map of a preprocessed image.

    Parameters
    ----------
    model : torch.nn.Module
        The network, on ``device``, in eval mode.
    image : (1, X, Y, Z) tensor
        The image on the model grid.
    cfg : TrainConfig
        Patch size, overlap and mirrored pass (``train.patch_size``, ``train.sw_overlap``, ``train.tta``).
    device : torch.device

    Returns
    -------
    (X, Y, Z) uint8 array
        The most probable class of each voxel.
    """
    prob = predict(image[None].float().to(device), model, inference_meta(cfg), device=device)
    return prob.argmax(1)[0].cpu().numpy().astype(np.uint8)


def validate_case(model: torch.nn.Module, case, item: dict, cfg: TrainConfig, device: torch.device) -> dict:
    """Dice (plexus, bone), clDice and, with phantom truth, calibre MAE (mm) of one preprocessed case."""
    pred = predict_labels(model, item["image"], cfg, device)
    truth = item["label"][0].numpy()
    out = {"val_dice": dice(pred == 1, truth == 1), "val_dice_bone": dice(pred == 2, truth == 2),
           "val_cldice": cldice(pred == 1, truth == 1)}
    if case.truth_dir is not None and "vertebrae" in item and (case.truth_dir / "truth_calibre.csv").exists():
        aff = np.asarray(item["image"].affine, dtype=np.float64)
        res = measure(Volume((pred == 1).astype(np.uint8), aff, {"warnings": [], "path": case.case_id}),
                      vertebrae=Volume(item["vertebrae"][0].numpy().astype(np.int16), aff, {"warnings": []}))
        out["val_calibre_mae"] = calibre_score(res.rows, case.truth_dir / "truth_calibre.csv")["mae_mm"]
    return out
