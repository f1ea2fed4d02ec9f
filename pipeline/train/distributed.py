"""Distributed data-parallel training with PyTorch's own machinery (torchrun, DistributedDataParallel).

``torchrun --nproc-per-node N -m pipeline.train --config C.yaml`` (or ``plexus train --config C.yaml
--nproc-per-node N``, which launches the same) starts N processes; torchrun sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK`` for each. Backend: NCCL on GPUs, gloo on the CPU. Multi-node runs use torchrun's rendezvous
options (``--nnodes``, ``--rdzv-backend c10d``, ``--rdzv-endpoint HOST:PORT``); see docs/scaling.md.

How the work is shared: the global batch ``train.batch_size`` is split evenly over the ranks, and step ``s`` of
rank ``r`` takes samples ``s*B + r*b ... s*B + r*b + b - 1`` of the one deterministic sample stream (``b = B/N``),
so N processes see exactly the samples of a 1-process run and DDP's gradient averaging gives the same update
(up to float summation order). Validation cases are split over the ranks and their scores gathered. Only rank
0 writes logs, checkpoints and the model folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..core.errors import UsageError


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world`` processes, ``local_rank`` on its node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init_distributed(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun set up (a no-op for a single process); return the rank and its device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), device
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        check_gpu_count(info.local_rank + 1)
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info, device


def barrier(info: DistInfo) -> None:
    if info.active:
        dist.barrier()


def gather_objects(info: DistInfo, obj):
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` for a single process)."""
    if not info.active:
        return [obj]
    out = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def rank_sample_indices(step0: int, steps: int, batch: int, info: DistInfo) -> list[int]:
    """Sample indices of this rank for steps ``step0 .. steps - 1`` of a global batch ``batch``."""
    if batch % info.world:
        raise UsageError(f"train.batch_size: the global batch {batch} must divide evenly over {info.world} processes")
    b = batch // info.world
    return [s * batch + info.rank * b + j for s in range(step0, steps) for j in range(b)]


def shutdown(info: DistInfo) -> None:
    if info.active and dist.is_initialized():
        dist.destroy_process_group()


def check_gpu_count(nproc: int) -> None:
    """One GPU per process on this node: a ValueError naming ``--nproc-per-node`` when there are fewer."""
    have = torch.cuda.device_count()
    if nproc > have:
        raise UsageError(f"--nproc-per-node: {nproc} processes need {nproc} GPUs (one each) but this machine has "
                         f"{have} GPU(s); start at most {have}, or train on the CPU (--override train.device=cpu)")


def launch(nproc: int, train_args: list[str], *, device: str = "auto") -> int:
    """Run ``python -m torch.distributed.run --standalone --nproc-per-node N -m pipeline.train ARGS``.

    ``device``: the config's ``train.device``; on CUDA (``auto`` with a GPU) the GPU count is checked first.
    """
    if nproc < 1:
        raise UsageError(f"--nproc-per-node: expected 1 or more, got {nproc}")
    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        check_gpu_count(nproc)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "pipeline.train", *train_args]
    return wait_forwarding_sigterm(subprocess.Popen(cmd))


def wait_forwarding_sigterm(proc: subprocess.Popen) -> int:
    """Wait for ``proc`` (torchrun) and return its exit code (128 + N for signal N).

    A SIGTERM to this process meanwhile (a scheduler's kill, ``timeout``) is passed on to ``proc`` and the wait goes
    on: torchrun sends it to every rank, whose handler saves ``last.pt`` before exiting. (``subprocess.call`` would
    SIGKILL torchrun instead, leaving ranks that never save.) A first Ctrl-C waits too, since a terminal sends it
    to the whole process group, ranks included; a second one kills torchrun.
    """
    forwarded = []

    def forward(signum, frame):
        forwarded.append(signum)
        if proc.poll() is None:
            proc.send_signal(signum)

    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, forward) if on_main else None
    interrupted = False
    try:
        while True:
            try:
                code = proc.wait()
                break
            except KeyboardInterrupt:
                if interrupted:
                    proc.kill()
                    raise
                interrupted = True
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if code < 0:
        code = 128 - code
    return 143 if forwarded and code != 0 else code
