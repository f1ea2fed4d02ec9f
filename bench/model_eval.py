"""Held-out evaluation of a model folder on fresh phantoms, through the full pipeline.

Phantoms with seeds never used in training (800000+), CT and MR, several spacings and storage orientations,
are segmented with :func:`pipeline.inference.segmentation.segment` (prediction back on each scan's own grid), then scored
by ``plexus evaluate`` (Dice, clDice, HD95, centreline precision/recall, calibre error per (level, channel)
from ``plexus measure`` with the phantom's vertebra map).

With ``--hybrid``, the cases are hybrid phantoms instead (:mod:`pipeline.synth.hybrid`): a synthetic plexus in the
real canal of the team's public scans in ``../shared/data`` (the lumbar CT and cervical MR of ``configs/phantom_hybrid.yaml``,
new seeds 9000+: the same two scans as in training, a plexus never seen), so real anatomy and texture around
known truth.

Usage: ``python bench/model_eval.py [--model models/plexus_phantom] [--cases 8] [--tta] [--hybrid] [--no-doc]``
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, git_rev, machine, update_doc

from pipeline.evaluation.evaluate import evaluate
from pipeline.inference.model import load_model
from pipeline.inference.segmentation import segment
from pipeline.io import write_image
from pipeline.synth import generate_phantom, preset_config, save_phantom

HYBRID_SOURCES = [("totalsegmentator/example_ct.nii.gz", "totalsegmentator/spine_report/totalseg.nii.gz", "CT"),
                  ("tptbox_samples/sample_mri/sub-mri_label-6_T2w.nii.gz",
                   "tptbox_samples/sample_mri/sub-mri_seg-vert_label-6_msk.nii.gz", "MR")]

CASES = [("lumbar-ct", (0.8, 0.8, 0.8), "RAS"), ("lumbar-mr", (0.7, 0.7, 1.2), "PIR"),
         ("thoracic-ct", (1.0, 1.0, 1.0), "LPS"), ("cervical-mr", (0.6, 0.6, 1.0), "PSR"),
         ("lumbar-ct", (0.7, 0.7, 1.0), "LPS"), ("lumbar-mr", (0.8, 0.8, 0.8), "RAS"),
         ("thoracic-ct", (0.8, 0.8, 1.2), "PIR"), ("cervical-mr", (0.8, 0.8, 0.8), "LPS")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "plexus_phantom")
    ap.add_argument("--cases", type=int, default=len(CASES))
    ap.add_argument("--out", type=Path, help="keep predictions and truth here (default: a temporary folder)")
    ap.add_argument("--tta", action=argparse.BooleanOptionalAction,
                    help="average with the left-right flipped prediction (default: the model's setting)")
    ap.add_argument("--hybrid", action="store_true", help="hybrid phantoms of ../shared/data scans instead")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--label", help="name of the model in the hybrid report (default: its folder name)")
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    model, meta = load_model(args.model)
    label = args.label or args.model.name
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        truth, pred = root / "truth", root / "pred"
        modality, times = {}, []
        for k in range(args.cases):  # beyond the 8 settings, they repeat with new seeds
            cid, ph, cfg = _hybrid_case(k, args.shared) if args.hybrid else _phantom_case(k)
            sp, orient = tuple(round(float(x), 2) for x in ph.image.spacing), "".join(ph.image.axcodes)
            save_phantom(ph, truth / cid)
            t0 = time.perf_counter()
            seg = segment(ph.image, model, meta, tta=args.tta)
            times.append(time.perf_counter() - t0)
            write_image(ph.mask.with_array((seg.labels.array == 1).astype(np.uint8)), pred / cid / "segmentation.nii.gz")
            if args.hybrid and k < len(HYBRID_SOURCES) and not args.no_doc:  # what a hybrid is, and what the model found
                from pipeline.export.qc import qc_picture

                for what, m in (("truth", ph.mask.array), (label, seg.labels.array == 1)):
                    qc_picture(ph.image, ROOT / "docs" / "images" / f"hybrid_{cfg.modality.lower()}_{what}.png",
                               mask=ph.mask.with_array(m.astype(np.uint8)),
                               title=f"hybrid {cfg.modality} ({Path(cfg.image).name}), plexus: {what}")
            modality[cid] = cfg.modality
            print(f"{cid}: {cfg.modality} {ph.image.shape} {orient} {sp} segmented in {times[-1]:.1f} s", flush=True)
        res = evaluate(pred, truth, root)
    rows = res["cases"]
    lines = ["| case | modality | Dice | clDice | HD95 (mm) | centreline P / R | calibre MAE (mm) | missed pairs |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case_id']} | {modality[r['case_id']]} | {r['dice']:.3f} | {r['cldice']:.3f} | {r['hd95_mm']:.2f} | "
                     f"{r['centreline_precision']:.2f} / {r['centreline_recall']:.2f} | {r['calibre_mae_mm']:.3f} | "
                     f"{r['calibre_missed']} of {r['calibre_pairs']} |")
    by = {}
    for m in ("CT", "MR"):
        sel = [r for r in rows if modality[r["case_id"]] == m]
        if sel:
            by[m] = {k: float(np.nanmean([r[k] for r in sel])) for k in ("dice", "cldice", "hd95_mm", "calibre_mae_mm")}
            by[m].update({k: int(sum(r[k] for r in sel)) for k in ("calibre_missed", "calibre_pairs")})
    summary = "\n".join(f"- {m}: Dice {v['dice']:.3f}, clDice {v['cldice']:.3f}, HD95 {v['hd95_mm']:.2f} mm, "
                        f"calibre MAE {v['calibre_mae_mm']:.3f} mm ({v['calibre_missed']} of {v['calibre_pairs']} "
                        f"(level, channel) pairs missed)" for m, v in by.items())
    text = "\n".join(lines)
    print(summary)
    print(text)
    if args.hybrid:
        print(f"hybrid cases (same scans as training, new plexus seeds): see above; not written to {args.model}")
        if not args.no_doc:
            update_doc(f"model_eval_hybrid_{label}", f"""### {label} on hybrid phantoms (`bench/model_eval.py --hybrid`)

Command: `python bench/model_eval.py --hybrid --model {args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model} --cases {args.cases} --label {label}` (commit {git_rev()}; {machine()}).
A synthetic plexus (seeds 9000+) in the real canal of the lumbar CT and cervical MR that `configs/phantom_hybrid.yaml`
also uses (other seeds): real anatomy and texture, a plexus no model has seen; not an independent patient.

{summary}

{text}

Case 0 (CT) and 1 (MR), truth and this model's plexus:
![CT truth](images/hybrid_ct_truth.png) ![CT {label}](images/hybrid_ct_{label}.png)
![MR truth](images/hybrid_mr_truth.png) ![MR {label}](images/hybrid_mr_{label}.png)
""")
        return
    (args.model / "heldout_metrics.json").write_text(json.dumps({"by_modality": by, "cases": rows}, indent=2))
    if not args.no_doc:
        update_doc("model_eval", f"""## Shipped model on held-out phantoms (`bench/model_eval.py`)

Command: `python bench/model_eval.py --model {args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model} --cases {args.cases}{'' if args.tta is None else ' --tta' if args.tta else ' --no-tta'}`
(commit {git_rev()}; {machine()}). {len(rows)} fresh phantoms (seeds 800000+, never in training), segmented
on their own grids through the full pipeline, scored by `plexus evaluate`; calibre MAE is the mean absolute
error of the per-(level, channel) median diameter measured by `plexus measure` on the predicted mask, over every
pair of the truth: a pair the prediction never found counts its whole true diameter (the count is shown).
Mean segmentation time per case on this CPU: {np.mean(times):.1f} s. Targets: Dice >= 0.85 (CT) / 0.80 (MR),
clDice >= 0.85, calibre MAE <= 0.25 mm.

{summary}

{text}
""")


def _phantom_case(k: int):
    preset, sp, orient = CASES[k % len(CASES)]
    cfg = preset_config(preset, spacing=sp, orientation=orient, seed=800000 + k, fov_lr=34, fov_back=34, fov_front=42)
    return f"heldout_{k:02d}_{preset}", generate_phantom(cfg), cfg


@functools.cache
def _source(shared: Path, img_rel: str, vert_rel: str):
    """A hybrid source scan and its vertebra map, read once for all its cases."""
    from pipeline.io import read_image, same_grid
    from pipeline.io.vertebrae import read_vertebrae

    if not (shared / img_rel).exists():
        raise SystemExit(f"{shared / img_rel}: absent; --hybrid needs the team's ../shared/data (or --shared)")
    image = read_image(shared / img_rel)
    return image, same_grid(image, read_vertebrae(shared / vert_rel), "vertebra map", "image")


def _hybrid_case(k: int, shared: Path):
    from pipeline.synth.hybrid import HybridConfig, generate_hybrid

    img_rel, vert_rel, modality = HYBRID_SOURCES[k % len(HYBRID_SOURCES)]
    image, vmap = _source(shared, img_rel, vert_rel)
    cfg = HybridConfig(image=img_rel, vertebrae=vert_rel, modality=modality, seed=9000 + k)
    return f"hybrid_{k:02d}_{modality.lower()}", generate_hybrid(image, vmap, cfg), cfg


if __name__ == "__main__":
    main()
