"""Batch throughput (cases/hour) of ``plexus infer``: local executor and Ray with 1 and 2 network actors.

A batch of lumbar CT phantoms (about 110 x 110 x 200 voxels each) is run three ways on the same machine, each
into a fresh output folder: the local executor, then ``--executor ray`` on a local Ray instance with 1 and with
2 ``Segmenter`` actors. Figures go to docs/benchmarks.md (section ``scale``) and docs/scaling.md quotes them.

Usage: ``python bench/scale.py [--cases 6] [--ray-cpus N] [--device auto] [--no-doc]``
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=6)
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "plexus_phantom")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--ray-cpus", type=int, help="CPUs of the local Ray instance (default: all)")
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
    import torch

    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() and args.device != "cpu" else "CPU only"
    lines = [f"`python bench/scale.py --cases {args.cases}` (commit {git_rev()}; {machine()}; {dev}). "
             f"{args.cases} lumbar CT phantoms of {shape[0]}x{shape[1]}x{shape[2]} voxels, whole pipeline "
             f"(read, network, measurement, every export); wall time of the batch including Ray's start.", "",
             "| executor | batch wall time | cases/hour |", "|---|---|---|"]
    lines += [f"| {n} | {w:.1f} s | {c:.0f} |" for n, w, c in rows]
    if not args.no_doc:
        update_doc("scale", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
