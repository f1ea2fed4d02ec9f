"""Accuracy of ``plexus measure`` against phantom truth, beside the naive method.

Phantoms with seeds the tests never use, 0.5-1.5 mm voxels (some anisotropic), CT- and MR-like, stored
RAS / LPS / sagittal. Per (level, channel) median diameter compared with truth:

* plexus (mask): ``measure`` on the true binary mask;
* plexus (exact fraction): ``measure`` with the phantom's exact partial-volume fraction as ``--probabilities``:
  a best case, a probability map no network gives;
* network (``--model``, default the shipped ``models/plexus_phantom``): what ``plexus infer`` gets, the scan
  segmented by the model (its default TTA) and measured on its own mask, alone and with its own probabilities;
* naive: skeletonize the mask and take 2 x the distance transform at each skeleton voxel (same channel and
  level labels as plexus, so only the diameter estimate differs).

Every method gets the phantom's vertebra map, so the levels are the same and only the calibre differs.

Usage: ``python bench/measure_accuracy.py [--cases 15] [--model models/plexus_phantom] [--no-network] [--no-doc]``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import edt
import numpy as np
from common import ROOT, bench_configs, git_rev, machine, score, update_doc
from scipy.spatial import cKDTree
from skimage.morphology import skeletonize

from pipeline.inference.model import load_model
from pipeline.inference.segmentation import segment
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
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "plexus_phantom", help="model folder of the "
                    "network rows")
    ap.add_argument("--no-network", action="store_true", help="leave out the network rows")
    ap.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args()
    methods = ("plexus", "plexus_prob", *(() if args.no_network else ("net_mask", "net_prob")), "naive")
    agg = {m: {"anterior": [], "posterior": [], "missing": 0, "n": 0, "missed_mm": []} for m in methods}
    net = None if args.no_network else load_model(args.model)
    lines = ["| case | span | voxel (mm) | storage | plexus ant/post MAE | with exact fraction (best case) | "
             + ("network mask | network mask + probabilities | " if net else "") + "naive | time (s) |",
             "|---|---|---|---|---|---|" + ("---|---|" if net else "") + "---|---|"]
    for k, cfg in enumerate(bench_configs(args.cases)):
        ph = generate_phantom(cfg)
        t0 = time.perf_counter()
        res = measure(ph.mask, vertebrae=ph.vertebrae)
        dt = time.perf_counter() - t0
        res_p = measure(ph.mask, vertebrae=ph.vertebrae, probabilities=ph.fraction)
        results = [("plexus", res.rows), ("plexus_prob", res_p.rows)]
        if net is not None:  # as plexus infer: the network's mask, alone and with its own probabilities
            seg = segment(ph.image, *net, keep_probabilities=True)
            mask = ph.mask.with_array((seg.labels.array == 1).astype(np.uint8))
            prob = ph.mask.with_array(seg.probabilities[1].astype(np.float32, copy=False))
            results += [("net_mask", measure(mask, vertebrae=ph.vertebrae).rows),
                        ("net_prob", measure(mask, vertebrae=ph.vertebrae, probabilities=prob).rows)]
        cells = []
        for name, rows in (*results, ("naive", naive_rows(ph.mask, res))):
            s = score(rows, ph.truth_calibre)
            for key in ("anterior", "posterior"):
                agg[name][key] += s[key]
            agg[name]["missing"] += s["missing"]
            agg[name]["missed_mm"] += s["missed_mm"]
            agg[name]["n"] += s["n"]
            cells.append(f"{np.mean(np.abs(s['anterior'])):.3f} / {np.mean(np.abs(s['posterior'])):.3f}"
                         + (f" ({s['missing']} missing)" if s["missing"] else ""))
        sp = "x".join(f"{v:g}" for v in cfg.spacing)
        lines.append(f"| {k} ({cfg.modality}, seed {cfg.seed}) | {'-'.join(cfg.levels)} | {sp} | {cfg.orientation} | "
                     + " | ".join(cells) + f" | {dt:.1f} |")
        print(lines[-1], flush=True)
    summary = ["", "| method | anterior MAE (mm) | posterior MAE (mm) | worst (mm) | bias (mm) | missing | "
               "MAE, missed pairs at their true diameter (mm) |", "|---|---|---|---|---|---|---|"]
    labels = {"plexus": "plexus, true binary mask",
              "plexus_prob": "plexus, true mask + the phantom's exact partial-volume fraction (best case)",
              "net_mask": f"plexus infer: {args.model.name}'s mask",
              "net_prob": f"plexus infer: {args.model.name}'s mask + its own probabilities",
              "naive": "naive: skeleton + 2 x distance transform of the true mask"}
    for name in methods:
        label = labels[name]
        a, p = np.array(agg[name]["anterior"]), np.array(agg[name]["posterior"])
        allv = np.concatenate([a, p])
        counted = np.concatenate([np.abs(allv), agg[name]["missed_mm"]])
        summary.append(f"| {label} | {np.mean(np.abs(a)):.3f} | {np.mean(np.abs(p)):.3f} | "
                       f"{np.max(np.abs(allv)):.2f} | {np.mean(allv):+.3f} | {agg[name]['missing']} of {agg[name]['n']} | "
                       f"{np.mean(counted):.3f} |")
    text = "\n".join(summary)
    print(text)
    if not args.no_doc:
        update_doc("measure_accuracy", f"""## Calibre accuracy (`bench/measure_accuracy.py`)

Command: `python bench/measure_accuracy.py --cases {args.cases}{' --no-network' if net is None else ''}` (commit {git_rev()}; {machine()}).
Per (level, channel) median diameter against phantom truth, mean absolute error over all
(level, channel) pairs of {args.cases} phantoms (seeds 900000+, never used by tests), voxels 0.5-1.5 mm,
CT- and MR-like, stored RAS/LPS/PIR/PSR/LAS. Target: under 0.15 mm for anterior and posterior channels.
The exact-fraction row is a best case: the phantom's own partial-volume fraction as the probability map, which
no network gives. {'The plexus infer rows are what a user gets: the scan segmented by `' + str(args.model.name) + '` (read from its model folder, default TTA), measured on its mask, alone and with its own probabilities.' if net else 'Run without --no-network for the rows of what plexus infer gets.'}
Every method gets the phantom's vertebra map (the same levels). Anterior/posterior MAE, worst and bias are over
the pairs found; the last column counts every pair of the truth, a missed one at its whole true diameter.
{text}

Per case (anterior / posterior MAE, mm):

{chr(10).join(lines)}
""")


if __name__ == "__main__":
    main()
