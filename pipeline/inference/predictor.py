"""The one sliding-window predictor: class probabilities of an image on the model grid (``plexus infer`` and
training validation both call :func:`predict`), with the device, AMP, mirrored-pass and stitching helpers."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import torch

from ..core.errors import UsageError
from .model import ModelMetadata

log = logging.getLogger("plexus")


def pick_device(name: str = "auto") -> torch.device:
    """'auto' -> CUDA when available (a notice otherwise); 'cuda[:N]' without CUDA is a clear error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        log.info("no CUDA device found: running on the CPU")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA device is available on this machine (use --device cpu or auto)")
    return torch.device(name)


@torch.no_grad()
def predict(x: torch.Tensor, model: torch.nn.Module, meta: ModelMetadata | Mapping, *, device: torch.device,
            overlap: float | None = None, tta: bool | None = None, amp: torch.dtype | None | str = "auto",
            ) -> torch.Tensor:
    """Class probabilities of a preprocessed image: MONAI sliding windows with Gaussian blending, AMP on a GPU.

    Parameters
    ----------
    x : (1, 1, X, Y, Z) float tensor
        The image on the model grid, on ``device``.
    model : torch.nn.Module
        The network: (N, 1, ...) image -> (N, C, ...) logits.
    meta : ModelMetadata or dict
        Its ``inference`` section (``patch_size`` voxels, ``overlap``, ``tta``) and ``outputs`` (``classes``).
    device : torch.device
        Where the windows run.
    overlap, tta : see :func:`~pipeline.inference.segmentation.segment` (``None``: the model's).
    amp : torch.dtype, None or "auto"
        Autocast dtype of the network; ``"auto"``: :func:`amp_dtype` (a GPU's half precision, none on the CPU).
        The tests force ``torch.bfloat16`` on the CPU to run the GPU's autocast path.

    Returns
    -------
    (1, C, X, Y, Z) float32 tensor, on the stitching device (:func:`stitch_device`).
    """
    from monai.inferers import sliding_window_inference

    inf = meta["inference"]
    dtype = amp_dtype(device) if isinstance(amp, str) else amp
    n_classes = len(meta.get("outputs", {}).get("classes", {})) or 3
    stitch = stitch_device(device, tuple(x.shape[2:]), n_classes)
    if x.numel() == 0:  # nothing in the scan above the background: no body, nothing to segment
        return torch.zeros((1, n_classes, *x.shape[2:]))

    def run(inp):
        with torch.autocast(device_type=device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            logits = sliding_window_inference(inp, roi_size=tuple(inf["patch_size"]), sw_batch_size=4, predictor=model,
                                              overlap=inf["overlap"] if overlap is None else overlap, mode="gaussian",
                                              sw_device=device, device=stitch)
        return softmax_in_slabs(torch.as_tensor(logits).float())

    prob = run(x)
    if inf.get("tta", False) if tta is None else tta:  # the mean with the left-right mirrored image's prediction
        mean_with_mirrored(prob, run(torch.flip(x, dims=[2])))
    return prob


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The network's autocast dtype on ``device``: bfloat16 on a GPU that has it, else float16; ``None`` (full
    precision) on the CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def mean_with_mirrored(prob: torch.Tensor, mirrored: torch.Tensor, *, numpy_view: bool | None = None) -> torch.Tensor:
    """``prob`` (1, C, X, Y, Z) replaced, in place, by its mean with ``mirrored`` flipped back along X.

    ``numpy_view`` (default: ``prob`` is on the CPU): NumPy adds the mirrored view, where ``torch.flip`` would copy
    gigabytes first; else ``torch.flip`` (on a GPU). Either path runs on CPU tensors, for the tests.
    """
    if prob.device.type == "cpu" if numpy_view is None else numpy_view:
        a = prob.numpy()
        np.add(a, mirrored.numpy()[:, :, ::-1], out=a)
        a *= 0.5
    else:
        prob.add_(torch.flip(mirrored, dims=[2])).mul_(0.5)
    return prob


def softmax_in_slabs(logits: torch.Tensor, *, voxels: int = 1 << 18) -> torch.Tensor:
    """Softmax over the classes of ``logits`` (1, C, X, Y, Z), in place, a slab of about ``voxels`` voxels at a
    time: a whole-body CT's logits are gigabytes, and four passes over all of them (max, exp, sum, divide) cost
    four times the memory traffic of one pass over slabs that stay in the cache."""
    step = max(1, voxels // max(int(np.prod(logits.shape[3:])), 1))
    for i in range(0, logits.shape[2], step):
        slab = logits[:, :, i:i + step]
        slab.copy_(torch.softmax(slab, dim=1))
    return logits


def stitch_device(device: torch.device, shape: tuple[int, int, int], n_classes: int, *,
                  free_bytes: int | None = None) -> torch.device:
    """Where the sliding windows are stitched: on the GPU when the whole output, its weights and the flipped pass
    take under half of its free memory (stitching on the CPU costs more than the network on a GPU), else on the
    CPU, so that a scan of any size needs only a window of GPU memory.

    Parameters
    ----------
    device : torch.device
        Where the network runs.
    shape : (3,) int
        The model grid.
    free_bytes : int, optional
        Free GPU memory (default: ``torch.cuda.mem_get_info``).
    """
    if device.type != "cuda":
        return device
    if free_bytes is None:
        free_bytes = torch.cuda.mem_get_info(device)[0]
    need = 4 * int(np.prod(shape)) * (3 * n_classes + 1)  # float32 output, count map, the TTA pass, softmax
    return device if need < 0.5 * free_bytes else torch.device("cpu")


def background_and_labels(back: np.ndarray, *, voxels: int = 1 << 18) -> np.ndarray:
    """Fill ``back[0]`` with what the foreground classes ``back[1:]`` leave, clipped to [0, 1], and return the most
    probable class of every voxel (uint8, the first class on ties).

    Parameters
    ----------
    back : (C, I, J, K) float ndarray
        Class probabilities, ``back[0]`` to be filled (in place).
    voxels : int
        Voxels per slab along ``I``: every step of a slab stays in the cache (a whole spine is 150 M voxels).

    Returns
    -------
    labels : (I, J, K) uint8 ndarray
    """
    labels = np.empty(back.shape[1:], dtype=np.uint8)
    step = max(1, voxels // max(int(np.prod(back.shape[2:])), 1))
    for i in range(0, back.shape[1], step):
        p, out = back[:, i:i + step], labels[i:i + step]
        np.sum(p[1:], axis=0, out=p[0])
        np.subtract(1.0, p[0], out=p[0])
        np.clip(p[0], 0.0, 1.0, out=p[0])
        argmax_labels(p, out=out)
    return labels


def argmax_labels(prob: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """``prob.argmax(0)`` as uint8 (the first class on ties), by C - 1 comparisons: several times faster than
    NumPy's strided argmax over the class axis of a (C, I, J, K) volume. ``out``: the (I, J, K) uint8 result."""
    labels = np.empty(prob.shape[1:], dtype=np.uint8) if out is None else out
    if len(prob) < 2:
        labels[...] = 0
        return labels
    np.greater(prob[1], prob[0], out=labels.view(bool))  # 1 where class 1 beats class 0, else 0
    best = np.maximum(prob[0], prob[1])
    for c in range(2, len(prob)):
        np.copyto(labels, np.uint8(c), where=prob[c] > best)
        np.maximum(best, prob[c], out=best)
    return labels
