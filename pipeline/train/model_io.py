"""The model folder: ``model.pt`` (weights), ``metadata.json`` (everything inference needs) and ``README.md``.

Inference reads everything from the folder, nothing from the training config: classes, spacing,
orientation, intensity normalisation, patch size, network definition, the package version that wrote it and
the SHA-256 of the weights (checked before loading).
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import torch
from pydantic import ValidationError

from .. import __version__
from ..atomic import atomic_path, write_text
from ..errors import InputError
from .config import ModelConfig, TrainConfig


def build_network(mc: ModelConfig, out_channels: int = 3) -> torch.nn.Module:
    """MONAI UNet or DynUNet from its config (1 input channel, ``out_channels`` classes)."""
    if mc.name == "UNet":
        from monai.networks.nets import UNet

        return UNet(spatial_dims=3, in_channels=1, out_channels=out_channels, channels=tuple(mc.channels),
                    strides=tuple(mc.strides), num_res_units=mc.num_res_units, dropout=mc.dropout)
    from monai.networks.nets import DynUNet

    n = len(mc.channels)
    return DynUNet(spatial_dims=3, in_channels=1, out_channels=out_channels, kernel_size=[3] * n,
                   strides=[1] + list(mc.strides), upsample_kernel_size=list(mc.strides), filters=list(mc.channels),
                   dropout=mc.dropout, res_block=mc.num_res_units > 0)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
        "network": {"framework": "monai", **cfg.model.model_dump(mode="json"), "out_channels": len(cfg.classes)},
        "inference": {"patch_size": list(cfg.train.patch_size), "overlap": cfg.train.sw_overlap, "blend": "gaussian",
                      "tta": cfg.train.tta},
        "training": {"steps": state["step"], "best_validation": state["best_metrics"], "config": config_text},
        "weights": {"file": "model.pt", "sha256": sha256(folder / "model.pt"),
                    "parameters": int(sum(v.numel() for v in checkpoint["model"].values()))},
    }
    write_text(folder / "metadata.json", json.dumps(meta, indent=2))
    if not (folder / "README.md").exists():
        write_text(folder / "README.md", _card(meta))
    return folder


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


def _check_version(meta_path: Path, written_by: str) -> None:
    """Refuse a model written by a newer plexus release (its metadata may mean things this one does not know)."""
    def key(v: str) -> tuple[int, ...]:
        return tuple(int(x) for x in (v.split("+")[0].split(".") + ["0", "0"])[:2] if x.isdigit())

    if key(written_by) > key(__version__):
        raise InputError(meta_path, f"model written by plexus {written_by}, newer than this plexus {__version__}; "
                                    f"upgrade plexus to use it")


def load_model(folder: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Load a model folder after checking its files, checksum, format and architecture."""
    folder = Path(folder)
    meta_path = folder / "metadata.json"
    if not meta_path.exists():
        raise InputError(folder, "not a model folder (no metadata.json)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(meta_path, f"corrupt metadata ({exc})") from None
    if meta.get("format") != 1:
        raise InputError(meta_path, f"model format {meta.get('format')} is not supported by plexus {__version__}")
    _check_version(meta_path, str(meta.get("plexus_version", "0")))
    weights = folder / meta["weights"]["file"]
    if not weights.exists():
        raise InputError(weights, "weights file is missing")
    if sha256(weights) != meta["weights"]["sha256"]:
        raise InputError(weights, "weights do not match the checksum in metadata.json (corrupted or replaced)")
    net = meta["network"]
    try:
        mc = ModelConfig(**{k: v for k, v in net.items() if k in ModelConfig.model_fields and k != "init_from"})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(meta_path, f"network.{'.'.join(map(str, err['loc']))}: {err['msg']} "
                                    f"(got {err.get('input')!r}); not a network this plexus can build") from None
    model = build_network(mc, out_channels=int(net["out_channels"]))
    try:
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except RuntimeError as exc:
        raise InputError(weights, f"weights do not fit the declared network ({str(exc).splitlines()[0]})") from None
    return model.to(device).eval(), meta
