"""The options of ``plexus infer``, typed and checked once: :class:`InferOptions`, built by the CLI from its
arguments (or by :mod:`.demo` and the benchmarks directly) and passed down unchanged."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import torch

from ..core.errors import UsageError
from ..postprocess.measure import MeasureOptions
from ..preprocess.grid import available_cores

MODALITIES = ("auto", "ct", "mr")
EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class InferOptions:
    """Everything a batch needs besides its inputs and output folder (the flags of ``plexus infer``).

    Parameters
    ----------
    model : Path
        The model folder (``metadata.json``, ``model.pt``).
    device : str
        ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
    vertebrae : str, optional
        A vertebra map (one case) or a folder of maps named by case id.
    vertebrae_convention : str
        Label ids of ``vertebrae``: ``auto``, ``verse``, ``totalsegmentator`` or ``spider``.
    lumbar_count : int
        Without ``vertebrae``: lumbar vertebrae above the sacrum (4, 5 or 6) when naming levels from bone.
    anchor : str, optional
        ``NAME@Z``: the vertebra NAME whose body lies at world height Z mm (RAS z).
    modality : str
        ``auto`` (from DICOM tags or intensities), ``ct`` or ``mr``.
    series : str, optional
        DICOM SeriesInstanceUID to read from series folders.
    first_volume : bool
        A 4-D image: use its first volume instead of refusing it.
    crop_margin : float
        Stage 2 sees the canal stage 1 found grown by this, mm.
    canal_margin : float
        Plexus is kept only within this distance of the canal, mm.
    overlap : float, optional
        Sliding-window overlap in [0, 1); ``None``: the model's.
    tta : bool, optional
        Average with the left-right mirrored prediction; ``None``: the model's setting.
    save_probabilities, overwrite : bool
        Also write ``probabilities.nii.gz``; redo finished cases.
    executor : str
        ``local`` or ``ray``; ``address``, ``ray_cpus`` and ``ray_actors`` configure Ray.
    shard : (int, int), optional
        ``(K, N)``: only shard K of N (1-based) of the cases.
    workers : int, optional
        Measurement processes beside the network; ``None``: :func:`default_workers`.

    Raises
    ------
    UsageError
        A value no run can take (it names the flag).
    """

    model: Path = Path("models/plexus")
    device: str = "auto"
    vertebrae: str | None = None
    vertebrae_convention: str = "auto"
    lumbar_count: int = 5
    anchor: str | None = None
    modality: str = "auto"
    series: str | None = None
    first_volume: bool = False
    crop_margin: float = 25.0
    canal_margin: float = 4.0
    overlap: float | None = None
    tta: bool | None = None
    save_probabilities: bool = False
    overwrite: bool = False
    executor: str = "local"
    address: str | None = None
    ray_cpus: int | None = None
    ray_actors: int | None = None
    shard: tuple[int, int] | None = None
    workers: int | None = None

    def __post_init__(self):
        if self.workers is not None and self.workers < 0:
            raise UsageError(f"--workers: expected 0 or more, got {self.workers}")
        if self.overlap is not None and not 0 <= self.overlap < 1:
            raise UsageError(f"--overlap: expected a value in [0, 1), got {self.overlap}")
        if self.executor not in EXECUTORS:
            raise UsageError(f"--executor: expected one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.executor != "ray" and (self.address or self.ray_cpus or self.ray_actors):
            raise UsageError("--address, --ray-cpus and --ray-actors need --executor ray")
        if self.ray_actors is not None and self.ray_actors < 1:
            raise UsageError(f"--ray-actors: expected 1 or more, got {self.ray_actors}")
        if self.modality.lower() not in MODALITIES:
            raise UsageError(f"--modality: expected one of {', '.join(MODALITIES)}, got {self.modality!r}")
        if self.shard is not None and not 1 <= self.shard[0] <= self.shard[1]:
            raise UsageError(f"--shard: expected K/N with 1 <= K <= N, got {self.shard[0]}/{self.shard[1]}")
        for name in ("crop_margin", "canal_margin"):
            if not getattr(self, name) >= 0:
                raise UsageError(f"--{name.replace('_', '-')}: expected a length >= 0 mm, got {getattr(self, name)}")

    @classmethod
    def from_namespace(cls, args) -> InferOptions:
        """The options from parsed command-line arguments (an ``argparse.Namespace`` of ``plexus infer``)."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})

    @property
    def modality_name(self) -> str | None:
        """``"CT"`` or ``"MR"`` when given, ``None`` for ``auto`` (then guessed per case)."""
        return None if self.modality.lower() == "auto" else self.modality.upper()

    @property
    def measure(self) -> MeasureOptions:
        """The measurement options of ``plexus infer`` (levels from the model's bone class when no map is given)."""
        return MeasureOptions(lumbar_count=self.lumbar_count, anchor=self.anchor,
                              vertebrae_convention=self.vertebrae_convention)


def default_workers(device: torch.device, cores: int | None = None) -> int:
    """Measurement worker processes when ``--workers`` is not given.

    None on the CPU (they would only compete with the network for the cores); on a GPU one per three cores beyond
    the two the main process uses (each worker threads its distance transforms, sampling and nearest-point
    queries), from 1 to 4: a whole-spine case takes some 10 s of measurement, against a few seconds of network.

    Parameters
    ----------
    device : torch.device
        The device the network runs on.
    cores : int, optional
        CPU cores this process may use (default: :func:`~pipeline.preprocess.grid.available_cores`).
    """
    if device.type != "cuda":
        return 0
    return max(1, min(4, ((cores if cores is not None else available_cores()) - 2) // 3))
