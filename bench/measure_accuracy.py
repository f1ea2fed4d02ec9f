"""Accuracy of ``plexus measure`` against phantom truth, beside the naive method.

Phantoms with seeds the tests never use, 0.5-1.5 mm voxels (some anisotropic), CT- and MR-like, stored
RAS / LPS / sagittal. Per (level, channel) median diameter compared with truth:

* plexus (mask): ``measure`` on the binary mask;
* plexus (probabilities): ``measure`` with the partial-volume fraction map as ``--probabilities``;
* naive: skeletonize the mask and take 2 x the distance transform at each skeleton voxel (same channel and
  level labels as plexus, so only the diameter estimate differs).

Usage: ``python bench/measure_accuracy.py [--cases 15] [--no-doc]``
"""

from __future__ import annotations

import argparse
import time

import edt
import numpy as np
from scipy.spatial import cKDTree
from skimage.morphology import skeletonize

from common import bench_configs, git_rev, machine, score, update_doc

from pipeline.postprocess.measure import measure
from pipeline.synth import generate_phantom


def naive_rows(mask, result) -> list[dict]:
    """Skeleton voxels, diameter = 2 x EDT, labelled by the nearest plexus centreline point."""
    m = mask.array > 0
    dist = edt.edt(m, anisotropy=tuple(float(s) for s in mask.spacing))
    sk = np.argwhere(skeletonize(m))
    world = (mask.affine[:3, :3] @ sk.T).T + mask.affine[:3, 3]
    pts = np.concatenate([b.points for b in result.branches])
    lv = np.concatenate([b.data["level"] for b in result.branches])
    ch = np.concatenate([np.full(len(b.points), b.data["channel"], dtype=object) for b in result.branches])
    near = cKDTree(pts).query(world)[1]
    d = 2 * dist[tuple(sk.T)]
    rows = []
    for key in {(a, b) for a, b in zip(lv, ch)}:
        sel = (lv[near] == key[0]) & (ch[near] == key[1])
        rows.append({"level": key[0], "channel": key[1],
                     "median_diameter_mm": float(np.median(d[sel])) if sel.any() else float("nan")})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=15)
    ap.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args()
    agg = {m: {"anterior": [], "posterior": [], "missing": 0, "n": 0} for m in ("plexus", "plexus_prob", "naive")}
    lines = ["| case | span | voxel (mm) | storage | plexus ant/post MAE | with probabilities | naive | time (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for k, cfg in enumerate(bench_configs(args.cases)):
        ph = generate_phantom(cfg)
        t0 = time.perf_counter()
        res = measure(ph.mask, vertebrae=ph.vertebrae)
        dt = time.perf_counter() - t0
        res_p = measure(ph.mask, vertebrae=ph.vertebrae, probabilities=ph.fraction)
        cells = []
        for name, rows in (("plexus", res.rows), ("plexus_prob", res_p.rows), ("naive", naive_rows(ph.mask, res))):
            s = score(rows, ph.truth_calibre)
            for key in ("anterior", "posterior"):
                agg[name][key] += s[key]
            agg[name]["missing"] += s["missing"]
            agg[name]["n"] += s["n"]
            cells.append(f"{np.mean(np.abs(s['anterior'])):.3f} / {np.mean(np.abs(s['posterior'])):.3f}"
                         + (f" ({s['missing']} missing)" if s["missing"] else ""))
        sp = "x".join(f"{v:g}" for v in cfg.spacing)
        lines.append(f"| {k} ({cfg.modality}, seed {cfg.seed}) | {'-'.join(cfg.levels)} | {sp} | {cfg.orientation} | "
                     f"{cells[0]} | {cells[1]} | {cells[2]} | {dt:.1f} |")
        print(lines[-1], flush=True)
    summary = ["", "| method | anterior MAE (mm) | posterior MAE (mm) | worst (mm) | bias (mm) | missing |",
               "|---|---|---|---|---|---|"]
    for name, label in (("plexus", "plexus, binary mask"), ("plexus_prob", "plexus, with probability map"),
                        ("naive", "naive: skeleton + 2 x distance transform")):
        a, p = np.array(agg[name]["anterior"]), np.array(agg[name]["posterior"])
        allv = np.concatenate([a, p])
        summary.append(f"| {label} | {np.mean(np.abs(a)):.3f} | {np.mean(np.abs(p)):.3f} | "
                       f"{np.max(np.abs(allv)):.2f} | {np.mean(allv):+.3f} | {agg[name]['missing']} of {agg[name]['n']} |")
    text = "\n".join(summary)
    print(text)
    if not args.no_doc:
        update_doc("measure_accuracy", f"""## Calibre accuracy (`bench/measure_accuracy.py`)

Command: `python bench/measure_accuracy.py --cases {args.cases}` (commit {git_rev()}; {machine()}).
Per (level, channel) median diameter against phantom truth, mean absolute error over all
(level, channel) pairs of {args.cases} phantoms (seeds 900000+, never used by tests), voxels 0.5-1.5 mm,
CT- and MR-like, stored RAS/LPS/PIR/PSR/LAS. Target: under 0.15 mm for anterior and posterior channels.
{text}

Per case (anterior / posterior MAE, mm):

{chr(10).join(lines)}
""")


if __name__ == "__main__":
    main()
