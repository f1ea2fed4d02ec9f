"""The model folder, read side: ``model.pt`` (weights), ``metadata.json`` (everything inference needs).

Inference reads everything from the folder, nothing from a training config: classes, spacing, orientation,
intensity normalisation, patch size, network definition, the package version that wrote it and the SHA-256 of
the weights (checked before loading). Writing a model folder is training's (:mod:`pipeline.train.model_folder`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from .. import __version__
from ..core.errors import InputError
from ..preprocess.transform import PreprocessConfig


class ModelConfig(BaseModel):
    """The network of a model folder (``metadata.json`` ``network``, the training config's ``model``)."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["UNet", "DynUNet"] = "UNet"
    channels: list[int] = [16, 32, 64, 128]
    strides: list[int] = [2, 2, 2]
    num_res_units: int = 1
    dropout: float = Field(0.0, ge=0, lt=1)
    init_from: Path | None = None    # warm start: a model folder with the same network (a training stage)

    @model_validator(mode="after")
    def _shape(self):
        if len(self.strides) != len(self.channels) - 1:
            raise ValueError(f"model.strides: need {len(self.channels) - 1} values for {len(self.channels)} channels")
        return self


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


def check_version(meta_path: Path, written_by: str) -> None:
    """Refuse a model written by a newer plexus release (its metadata may mean things this one does not know)."""
    def key(v: str) -> tuple[int, ...]:
        return tuple(int(x) for x in (v.split("+")[0].split(".") + ["0", "0"])[:2] if x.isdigit())

    if key(written_by) > key(__version__):
        raise InputError(meta_path, f"model written by plexus {written_by}, newer than this plexus {__version__}; "
                                    f"upgrade plexus to use it")


class InferenceSettings(BaseModel):
    """``metadata.json`` ``inference``: how the model is run."""

    model_config = ConfigDict(extra="allow")

    patch_size: list[int] = Field(min_length=3, max_length=3)  # sliding-window size, voxels of the model grid
    overlap: float = Field(ge=0, lt=1)                          # share of a window its neighbours overlap
    blend: str = "gaussian"
    tta: bool = False                                           # average with the left-right mirrored pass


class WeightsFile(BaseModel):
    """``metadata.json`` ``weights``: the weights file and its SHA-256."""

    model_config = ConfigDict(extra="allow")

    file: str
    sha256: str
    parameters: int | None = None


class ModelMetadata(BaseModel):
    """A model folder's ``metadata.json``, validated: what :func:`load_model` returns beside the network.

    The sections are attributes (``meta.inference.patch_size``, ``meta.weights.sha256``); ``preprocess`` stays the
    stored dict and :attr:`preprocess_config` is it parsed, once. ``meta["section"]`` reads a section as stored
    (plain dicts and lists), as scripts reading ``metadata.json`` do.
    """

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    plexus_version: str = "0"
    format: int
    inputs: dict = {}
    outputs: dict = {}                 # {"classes": {"0": "background", "1": ..., "2": ...}, "activation": ...}
    preprocess: dict                   # the fields of PreprocessConfig (spacing mm, orientation, CT window HU...)
    network: dict                      # ModelConfig fields and out_channels
    inference: InferenceSettings
    training: dict = {}
    training_scans: list[str] = []     # ids of configs/real_scans.yaml whose image or labels the model saw in training
    weights: WeightsFile
    _preprocess: PreprocessConfig | None = PrivateAttr(default=None)

    @property
    def preprocess_config(self) -> PreprocessConfig:
        """The preprocessing the model was trained with (parsed from ``preprocess`` on first use)."""
        if self._preprocess is None:
            self._preprocess = PreprocessConfig.from_dict(self.preprocess)
        return self._preprocess

    @property
    def n_classes(self) -> int:
        """Output classes of the network (3: background, plexus, vertebral bone)."""
        return len(self.outputs.get("classes", {})) or int(self.network.get("out_channels", 3))

    def __getitem__(self, key: str):
        if key not in type(self).model_fields and key not in (self.model_extra or {}):
            raise KeyError(key)
        value = getattr(self, key)
        return value.model_dump() if isinstance(value, BaseModel) else value

    def keys(self) -> list[str]:
        """The sections, as ``metadata.json`` has them (so that ``{**meta, ...}`` gives a plain dict)."""
        return [*type(self).model_fields, *(self.model_extra or {})]

    @classmethod
    def of(cls, meta: ModelMetadata | dict) -> ModelMetadata:
        """``meta`` itself, or a ``metadata.json`` dict validated."""
        return meta if isinstance(meta, cls) else cls.model_validate(meta)

    def __contains__(self, key: str) -> bool:
        return key in type(self).model_fields or key in (self.model_extra or {})

    def get(self, key: str, default=None):
        """``meta[key]``, or ``default`` when the metadata has no such section."""
        try:
            return self[key]
        except KeyError:
            return default


def _invalid(meta_path: Path, exc: ValidationError, what: str = "") -> InputError:
    err = exc.errors()[0]
    return InputError(meta_path, f"{what}{'.'.join(map(str, err['loc']))}: {err['msg']} (got {err.get('input')!r})")


def load_model(folder: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, ModelMetadata]:
    """Load a model folder after checking its files, checksum, format and architecture.

    Parameters
    ----------
    folder : str or Path
        The model folder: ``metadata.json``, the weights file it names, ``README.md``.
    device : torch.device or str
        Where the network is put.

    Returns
    -------
    model : torch.nn.Module
        The network in eval mode on ``device``: (N, 1, X, Y, Z) image -> (N, C, X, Y, Z) logits.
    meta : ModelMetadata
        The validated metadata.

    Raises
    ------
    InputError
        Naming the file: not a model folder, corrupt or invalid metadata, a newer format or plexus, missing or
        changed weights, a network this plexus cannot build or weights that do not fit it.
    """
    folder = Path(folder)
    meta_path = folder / "metadata.json"
    if not meta_path.exists():
        raise InputError(folder, "not a model folder (no metadata.json)")
    try:
        raw = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(meta_path, f"corrupt metadata ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != 1:
        fmt = raw.get("format") if isinstance(raw, dict) else None
        raise InputError(meta_path, f"model format {fmt} is not supported by plexus {__version__}")
    check_version(meta_path, str(raw.get("plexus_version", "0")))
    try:
        meta = ModelMetadata.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(meta_path, exc) from None
    weights = folder / meta.weights.file
    if not weights.exists():
        raise InputError(weights, "weights file is missing")
    if sha256(weights) != meta.weights.sha256:
        raise InputError(weights, "weights do not match the checksum in metadata.json (corrupted or replaced)")
    net = meta.network
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
