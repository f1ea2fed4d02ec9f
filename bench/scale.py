"""Scaling figures: batch throughput of ``plexus infer`` (local, Ray with 1 and 2 actors) and DDP training speed.

A batch of lumbar CT phantoms (about 110 x 110 x 200 voxels each) is run three ways on the same machine, each
into a fresh output folder: the local executor, then ``--executor ray`` on a local Ray instance with 1 and with
2 ``Segmenter`` actors. Then ``configs/phantom.yaml`` (6 phantoms) trains for ``--ddp-steps`` steps in 1 process
and with ``--nproc-per-node 2`` (gloo on the CPU, NCCL on GPUs), at the same global batch. Figures go to
docs/benchmarks.md (section ``scale``).

Usage: ``python bench/scale.py [--cases 6] [--ray-cpus N] [--device auto] [--ddp-steps 60] [--no-doc]``
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, git_rev, machine, update_doc

from pipeline.cli import main as plexus
from pipeline.io import write_image
from pipeline.synth import PhantomConfig, generate_phantom


def _run(inputs: list[Path], out: Path, model: Path, device: str, extra: list[str]) -> float:
    t0 = time.perf_counter()
    code = plexus(["-q", "infer", *map(str, inputs), "-o", str(out), "--model", str(model), "--device", device,
                   *extra])
    wall = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"plexus infer {' '.join(extra)} exited {code}")
    return wall


def _train_speed(tmp: Path, nproc: int, steps: int) -> float:
    """Seconds per step (data wait included, validation excluded) of configs/phantom.yaml in ``nproc`` processes."""
    run = tmp / f"ddp{nproc}"
    cmd = [sys.executable, "-m", "pipeline.cli", "-q", "train", "--config", str(ROOT / "configs" / "phantom.yaml"),
           "--nproc-per-node", str(nproc)]
    for o in ("data.synthetic.count=6", f"train.iterations={steps}", "train.val_every=100000",
              f"output.run_dir={run}", f"output.model_dir={run / 'model'}"):
        cmd += ["--override", o]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    return float(rows[-1]["sec_per_step"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=6)
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "plexus_phantom")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--ray-cpus", type=int, help="CPUs of the local Ray instance (default: all)")
    ap.add_argument("--ddp-steps", type=int, default=60, help="training steps per DDP measurement (0: skip)")
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inputs = []
        for k in range(args.cases):
            ph = generate_phantom(PhantomConfig(levels=("L3", "S1"), spacing=(0.9, 0.9, 0.9), seed=710000 + k,
                                                fov_lr=45, fov_back=45, fov_front=50))
            inputs.append(write_image(ph.image, tmp / f"lumbar_{k}.nii.gz"))
        shape = ph.image.shape
        ray_cpus = ["--ray-cpus", str(args.ray_cpus)] if args.ray_cpus else []
        setups = [("local executor", []),
                  ("Ray, 1 network actor", ["--executor", "ray", "--ray-actors", "1", *ray_cpus]),
                  ("Ray, 2 network actors", ["--executor", "ray", "--ray-actors", "2", *ray_cpus])]
        rows = []
        for name, extra in setups:
            wall = _run(inputs, tmp / name.replace(" ", "_").replace(",", ""), args.model, args.device, extra)
            rows.append((name, wall, 3600 * len(inputs) / wall))
            print(f"{name}: {wall:.1f} s for {len(inputs)} cases = {rows[-1][2]:.0f} cases/hour", flush=True)
        ddp = [(n, _train_speed(tmp, n, args.ddp_steps)) for n in ((1, 2) if args.ddp_steps else ())]
        for n, sps in ddp:
            print(f"DDP {n} process(es): {sps:.3f} s/step", flush=True)
    import torch

    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() and args.device != "cpu" else "CPU only"
    lines = [f"`python bench/scale.py --cases {args.cases}` (commit {git_rev()}; {machine()}; {dev}). "
             f"{args.cases} lumbar CT phantoms of {shape[0]}x{shape[1]}x{shape[2]} voxels, whole pipeline "
             f"(read, network, measurement, every export); wall time of the batch including Ray's start.", "",
             "| executor | batch wall time | cases/hour |", "|---|---|---|"]
    lines += [f"| {n} | {w:.1f} s | {c:.0f} |" for n, w, c in rows]
    if ddp:
        lines += ["", f"Training `configs/phantom.yaml` (6 phantoms, global batch 2 x 64^3, {args.ddp_steps} steps) "
                  "in 1 process and in 2 DDP processes (torchrun; gloo on the CPU):", "",
                  "| processes | s/step | steps/s | speed-up |", "|---|---|---|---|"]
        lines += [f"| {n} | {sps:.3f} | {1 / sps:.2f} | {ddp[0][1] / sps:.2f}x |" for n, sps in ddp]
    if not args.no_doc:
        update_doc("scale", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
