"""Writing the model folder: ``model.pt`` (weights), ``metadata.json`` (everything inference needs) and ``README.md``.

Inference reads everything from the folder, nothing from the training config: classes, spacing,
orientation, intensity normalisation, patch size, network definition, the package version that wrote it and
the SHA-256 of the weights (checked before loading).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

from .. import __version__
from ..core.atomic import atomic_path, write_text
from ..inference.model import sha256
from .config import TrainConfig
from .scans import training_scans


def write_model_folder(folder: str | Path, checkpoint: dict, cfg: TrainConfig, *, config_text: str) -> Path:
    """Write weights, metadata and model card of a trained model into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save({k: v.float() if v.is_floating_point() else v for k, v in checkpoint["model"].items()}, buf)
    with atomic_path(folder / "model.pt") as tmp:
        tmp.write_bytes(buf.getvalue())
    state = checkpoint["state"]
    meta = {
        "name": cfg.output.name, "plexus_version": __version__, "format": 1,
        "inputs": {"channels": 1, "modalities": ["CT", "MR"]},
        "outputs": {"classes": {str(k): v for k, v in cfg.classes.items()}, "activation": "softmax"},
        "preprocess": dict(cfg.preprocess),
        "network": {"framework": "monai", **cfg.model.model_dump(mode="json"), "out_channels": len(cfg.classes),
                    **_warm_start(cfg, state)},
        "inference": {"patch_size": list(cfg.train.patch_size), "overlap": cfg.train.sw_overlap, "blend": "gaussian",
                      "tta": cfg.train.tta},
        "training": {"steps": state["step"], "best_validation": state["best_metrics"], "config": config_text},
        "training_scans": training_scans(cfg),
        "weights": {"file": "model.pt", "sha256": sha256(folder / "model.pt"),
                    "parameters": int(sum(v.numel() for v in checkpoint["model"].values()))},
    }
    write_text(folder / "metadata.json", json.dumps(meta, indent=2))
    if not (folder / "README.md").exists():
        write_text(folder / "README.md", _card(meta))
    return folder


def _warm_start(cfg: TrainConfig, state: dict) -> dict:
    """The warm-start model by its folder's name (no machine's own path in a shipped file; the training config
    stored beside it gives the path as written) and the SHA-256 of the weights the run started from."""
    if cfg.model.init_from is None:
        return {}
    return {"init_from": Path(cfg.model.init_from).name, "init_from_sha256": state.get("init_from_sha256")}


def _card(meta: dict) -> str:
    val = meta["training"]["best_validation"]
    metrics = "\n".join(f"| {k} | {v:.4f} |" for k, v in val.items()) or "| - | - |"
    return f"""# {meta['name']}

MONAI {meta['network']['name']} (channels {meta['network']['channels']}, {meta['weights']['parameters']:,} parameters)
segmenting the epidural venous plexus (class 1) and vertebral bone (class 2) in spine CT and MR, written by
plexus {meta['plexus_version']} after {meta['training']['steps']} training steps.

Input: one channel, resampled to {meta['preprocess']['spacing']} mm in {meta['preprocess']['orientation']}; CT window
{meta['preprocess']['ct_window']} HU or MR percentiles {meta['preprocess']['mr_percentiles']} to [0, 1]. Sliding
windows of {meta['inference']['patch_size']} voxels, overlap {meta['inference']['overlap']}, Gaussian blending{
', averaged with the left-right flipped pass' if meta['inference'].get('tta') else ''}.

## Validation (best checkpoint)

| metric | value |
|---|---|
{metrics}

The training config is stored in `metadata.json` (`training.config`).
"""


