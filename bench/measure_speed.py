"""Speed and peak memory of ``plexus measure`` on a full-spine mask, beside kimimaro's skeletonization.

A C1-S1 phantom plexus mask at 0.8 mm is embedded in a 512 x 512 x N volume (N covers the spine), written as
NIfTI, and measured by ``plexus measure`` in a fresh process (wall time and peak RSS of that process, which
includes reading the file and writing every output and the QC picture). The same mask is then skeletonized by
kimimaro (TEASAR, the library often used for this step) to put the skeleton step in perspective.

Usage: ``python bench/measure_speed.py [--no-doc]`` (kimimaro from ``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, git_rev, machine, update_doc

from pipeline.io import Volume, write_image
from pipeline.synth import generate_phantom, preset_config


def full_spine_mask(seed: int = 424242) -> Volume:
    ph = generate_phantom(preset_config("full-spine-mask", seed=seed))
    m = ph.mask
    target = (512, 512, max(600, m.shape[2]))
    pad = [((t - s) // 2, t - s - (t - s) // 2) for s, t in zip(m.shape, target)]
    arr = np.pad(m.array, pad)
    aff = m.affine.copy()
    aff[:3, 3] -= aff[:3, :3] @ np.array([p[0] for p in pad])
    return Volume(arr, aff, {"warnings": []})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    vol = full_spine_mask()
    print(f"mask {vol.shape}, spacing {tuple(np.round(vol.spacing, 2))} mm, {int(vol.array.sum())} plexus voxels")
    with tempfile.TemporaryDirectory() as tmp:
        path = write_image(vol, Path(tmp) / "full_spine_mask.nii.gz")
        env = {**os.environ, "OMP_NUM_THREADS": "2"}
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "-q", "measure", str(path), "-o", str(Path(tmp) / "out")],
                              capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        summary = json.loads((Path(tmp) / "out" / "measurements.json").read_text())
    core = summary["timings_s"]
    lines = [f"| `plexus measure` end to end (read, measure, write, QC picture) | {wall:.1f} s | {peak_gb:.2f} GB |",
             f"| of which clean + distance map | {core['clean']:.2f} s | |",
             f"| of which centreline graph (skeleton, graph, pruning) | {core['centreline']:.2f} s | |",
             f"| of which calibre at {summary['n_branches']} branches | {core['calibre']:.2f} s | |"]
    try:
        import kimimaro

        m = vol.array.astype(np.uint32)
        t0 = time.perf_counter()
        skels = kimimaro.skeletonize(m, anisotropy=tuple(float(s) for s in vol.spacing), parallel=2,
                                     progress=False, fix_branching=True)
        kt = time.perf_counter() - t0
        nv = sum(len(s.vertices) for s in skels.values())
        lines.append(f"| kimimaro.skeletonize alone (TEASAR, parallel=2; {nv} vertices, a tree: rings cut) | {kt:.1f} s | |")
    except ImportError:
        lines.append("| kimimaro.skeletonize | not installed (`pip install -e \".[bench]\"`) | |")
    table = "| step | time | peak memory |\n|---|---|---|\n" + "\n".join(lines)
    print(table)
    if not args.no_doc:
        update_doc("measure_speed", f"""## Measurement speed (`bench/measure_speed.py`)

Command: `python bench/measure_speed.py` (commit {git_rev()}; {machine()}).
Full-spine plexus mask C1-S1, {'x'.join(map(str, vol.shape))} voxels at 0.8 mm ({int(vol.array.sum())} plexus voxels,
{summary['n_branches']} branches, {summary['n_loops']} loops). Target: under 10 s and 4 GB on 2 cores.

{table}
""")


if __name__ == "__main__":
    main()
