"""The shipped model beside the classical method a user could try first: Frangi vesselness, thresholded.

Frangi (scikit-image, bright tubes, sigmas 0.5-2.5 mm) computed on the model-grid image, restricted to the
spinal canal (given to Frangi for free: the true plexus dilated by 5 mm, a generous canal ROI a user would
draw by hand), thresholded per modality at the value that maximises the mean Dice on training phantoms (seeds 1000+, as in
configs/phantom.yaml), then scored on the same held-out phantoms as ``bench/model_eval.py`` (seeds 800000+).

Usage: ``python bench/seg_vs_frangi.py [--model models/plexus_phantom] [--no-doc]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import ROOT, git_rev, machine, update_doc
from model_eval import CASES
from scipy import ndimage
from skimage.filters import frangi

from pipeline.evaluation.metrics import cldice, dice
from pipeline.inference.model import load_model
from pipeline.inference.segmentation import segment
from pipeline.synth import generate_phantom, preset_config


def vesselness(ph) -> tuple[np.ndarray, np.ndarray]:
    """Frangi response inside the canal ROI, on the image's own grid, and the truth mask."""
    img = ph.image.array.astype(np.float32)
    sp = float(np.mean(ph.image.spacing))
    v = frangi(img, sigmas=[s / sp for s in (0.5, 1.0, 1.5, 2.5)], black_ridges=False)
    truth = ph.mask.array > 0
    roi = ndimage.distance_transform_edt(~truth, sampling=ph.image.spacing) <= 5.0
    return np.where(roi, v, 0.0), truth


def phantom(preset, sp, orient, seed):
    return generate_phantom(preset_config(preset, spacing=sp, orientation=orient, seed=seed, fov_lr=34,
                                          fov_back=34, fov_front=42))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "plexus_phantom")
    ap.add_argument("--tune", type=int, default=4, help="training phantoms used to tune the threshold")
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    tune: dict[str, list] = {"CT": [], "MR": []}
    for k in range(args.tune):
        ph = phantom(*CASES[k % len(CASES)], seed=1000 + k)
        tune[ph.config.modality].append(vesselness(ph))
    thr = {}
    for mod, pairs in tune.items():  # one threshold per modality: Frangi responses scale with intensity
        levels = np.quantile(np.concatenate([v[v > 0] for v, _ in pairs]), np.linspace(0.5, 0.995, 60))
        scores = [np.mean([dice(v > t, m) for v, m in pairs]) for t in levels]
        thr[mod] = float(levels[int(np.argmax(scores))])
        print(f"Frangi threshold {mod} {thr[mod]:.4g} (training Dice {max(scores):.3f})")
    model, meta = load_model(args.model)
    lines = ["| case | modality | model Dice | model clDice | Frangi Dice | Frangi clDice |", "|---|---|---|---|---|---|"]
    agg = {"model": [], "frangi": []}
    for k, (preset, sp, orient) in enumerate(CASES):
        ph = phantom(preset, sp, orient, 800000 + k)
        v, truth = vesselness(ph)
        fr = v > thr[ph.config.modality]
        pred = segment(ph.image, model, meta).labels.array == 1
        row = (dice(pred, truth), cldice(pred, truth), dice(fr, truth), cldice(fr, truth))
        agg["model"].append(row[:2])
        agg["frangi"].append(row[2:])
        lines.append(f"| heldout_{k:02d}_{preset} | {ph.config.modality} | " + " | ".join(f"{x:.3f}" for x in row) + " |")
        print(lines[-1], flush=True)
    m, f = np.mean(agg["model"], 0), np.mean(agg["frangi"], 0)
    summary = (f"| method | Dice | clDice |\n|---|---|---|\n| plexus model | {m[0]:.3f} | {m[1]:.3f} |\n"
               f"| Frangi in the canal, tuned threshold | {f[0]:.3f} | {f[1]:.3f} |")
    print(summary)
    if not args.no_doc:
        update_doc("seg_vs_frangi", f"""## Segmentation beside Frangi vesselness (`bench/seg_vs_frangi.py`)

Command: `python bench/seg_vs_frangi.py` (commit {git_rev()}; {machine()}). Frangi (scikit-image, bright
ridges, sigmas 0.5/1/1.5/2.5 mm) restricted to a canal ROI it gets for free (the true plexus dilated by 5 mm),
threshold tuned for Dice per modality on {args.tune} training phantoms
({", ".join(f"{m} {v:.4g}" for m, v in thr.items())}); both methods scored on the held-out
phantoms of `bench/model_eval.py`.

{summary}

{chr(10).join(lines)}
""")


if __name__ == "__main__":
    main()
