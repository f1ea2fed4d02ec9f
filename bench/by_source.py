"""Evaluation by source (issue 20): one table per source, the model beside a thresholded-vesselness baseline.

Sources: ``loso`` (hybrids, seeds 70000+, of every registry scan with ``hybrid: true``, each scored only with a model
whose ``training_scans`` holds no scan of that patient), ``gen2`` (phantoms of the independent generator ``bench/gen2``, seeds
50000+) and ``ours`` (fresh seeds 800000+ of the training generator: not held out). The model runs as
``plexus infer`` runs it (stage 1 ``find_canal``, then ``segment_in_canal`` on the canal's crop, plexus kept within
``--canal-margin`` of the canal and, on CT, not over 350 HU), the modality given; the baseline
(:mod:`frangi_baseline`) looks inside the same kept region, its threshold tuned per modality on training cases only
(phantoms of seeds 1000+, hybrids of seeds 60000+; on ``loso`` without the hybrids of the scan under test). Scored by
:func:`pipeline.evaluation.evaluate.evaluate`: calibre MAE over every (level, channel) pair of the truth, a missed
pair counting its whole true diameter. A case where stage 1 sees no spine scores an empty prediction.

Usage: ``python bench/by_source.py [--model DIR ...] [--loso-dir DIR] [--sources loso,gen2,ours]
[--cases-per-scan 2] [--gen2-cases 6] [--ours-cases 4] [--no-doc]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, git_rev, machine, update_doc
from frangi_baseline import tune, tuning_record, vesselness
from model_eval import CASES

from pipeline.batch.case import find_spine
from pipeline.evaluation.evaluate import evaluate
from pipeline.inference.crop import kept_region
from pipeline.inference.model import load_model
from pipeline.inference.segmentation import prepare_in_canal, segment_in_canal
from pipeline.io import read_image, write_image
from pipeline.io.registry import ScanEntry, read_registry
from pipeline.spine import find_canal
from pipeline.synth import generate_phantom, preset_config, save_phantom
from pipeline.synth.hybrid import generate_hybrid_from_scan, scan_canal
from pipeline.train.scans import eligible

OURS_LABEL = "fresh seeds of the training generator (not held out)"
METRICS = ("dice", "cldice", "hd95_mm", "centreline_recall", "calibre_mae_mm")
NO_MODEL = "no model that never saw it"


def training_scans(folder: Path) -> list[str]:
    """The registry ids a model folder saw in training (``metadata.json`` ``training_scans``)."""
    return list(json.loads((Path(folder) / "metadata.json").read_text()).get("training_scans", []))


def candidates(models: list[Path], loso_dir: Path | None) -> list[Path]:
    """Models to try, in order: ``--model`` as given, then the fold models of ``loso_dir`` (``DIR/<patient>/model``
    as ``bench/loso_train.py`` writes them, or ``DIR/<name>``)."""
    out = list(models)
    if loso_dir is not None:
        out += sorted({p.parent for pat in ("*/model/metadata.json", "*/metadata.json") for p in Path(loso_dir).glob(pat)})
    return out


def pick_model(scan: ScanEntry, entries: list[ScanEntry], models: list[Path], loso_dir: Path | None = None) -> Path | None:
    """The first model that saw no scan of ``scan``'s patient in training, or None (never one that saw it)."""
    return next((m for m in candidates(models, loso_dir) if eligible(training_scans(m), scan, entries)), None)


class Runner:
    """Stage 1, the model and the baseline on one case at a time; predictions kept for :func:`evaluate`."""

    def __init__(self, root: Path, margin: float, crop_margin: float = 25.0):
        self.root, self.margin, self.crop_margin = root, margin, crop_margin
        self._models: dict[Path, tuple] = {}

    def model(self, folder: Path):
        if folder not in self._models:
            self._models[folder] = load_model(folder)
        return self._models[folder]

    def stage1(self, image, modality: str):
        canal = find_spine(image, modality)
        region = kept_region(canal.canal, image.array, image.spacing, self.margin, modality) if canal.found else None
        return canal, region

    def predict(self, image, modality: str, canal, folder: Path) -> np.ndarray:
        if not canal.found:
            return np.zeros(image.shape, bool)
        model, meta = self.model(folder)
        crop = prepare_in_canal(image, canal, meta, modality=modality, crop_margin_mm=self.crop_margin)
        return segment_in_canal(image, model, meta, crop, roi_mm=self.margin).labels.array == 1

    def save(self, method: str, cid: str, image, mask: np.ndarray) -> None:
        write_image(image.with_array(mask.astype(np.uint8), kind="segmentation"),
                    self.root / "pred" / method / cid / "segmentation.nii.gz")

    def score(self, method: str) -> dict[str, dict]:
        if not (self.root / "pred" / method).exists():
            return {}
        res = evaluate(self.root / "pred" / method, self.root / "truth", self.root / "eval" / method)
        return {r["case_id"]: r for r in res["cases"]}


def our_phantom(k: int, seed: int):
    preset, sp, orient = CASES[k % len(CASES)]
    return generate_phantom(preset_config(preset, spacing=sp, orientation=orient, seed=seed, fov_lr=34, fov_back=34,
                                          fov_front=42))


def tuning_set(run: Runner, registry: dict, scans: dict, n_phantoms: int, n_hybrids: int) -> list[dict]:
    """Training cases for the baseline's thresholds: our generator's training seeds 1000+ and hybrids 60000+."""
    recs = []
    cases = [(f"phantom_{1000 + k}", "ours", lambda k=k: our_phantom(k, 1000 + k)) for k in range(n_phantoms)]
    for sid in scans:
        cases += [(f"tune_{sid}_{60000 + j}", sid, lambda sid=sid, j=j: generate_hybrid_from_scan(scans[sid], 60000 + j))
                  for j in range(n_hybrids)]
    for name, source, make in cases:
        ph = make()
        modality = ph.config.modality
        canal, region = run.stage1(ph.image, modality)
        if canal.found:
            recs.append(tuning_record(vesselness(ph.image, region, modality), ph.mask.array > 0, modality, source))
        print(f"tuning case {name} ({modality}): stage 1 {canal.status}", flush=True)
    return recs


def run_case(run: Runner, cid: str, image, modality: str, models: list[Path], thr: float, facts: dict) -> dict:
    t0 = time.perf_counter()
    canal, region = run.stage1(image, modality)
    for m in models:
        run.save(_key(m), cid, image, run.predict(image, modality, canal, m))
    v = vesselness(image, region, modality) if canal.found else np.zeros(image.shape, np.float32)
    run.save("baseline", cid, image, v > thr if np.isfinite(thr) else np.zeros(image.shape, bool))
    print(f"{cid}: {modality} {image.shape}, stage 1 {canal.status}, {time.perf_counter() - t0:.0f} s", flush=True)
    return {**facts, "case_id": cid, "modality": modality, "stage1": canal.status, "threshold": thr}


def _fmt(x: float, nd: int = 3) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"


def _cells(rows: list[dict]) -> list[str]:
    out = []
    for k in METRICS:
        vals = [r[k] for r in rows]
        fin = [x for x in vals if np.isfinite(x)]
        s = _fmt(float(np.mean(fin)) if fin else float("nan"), 2 if k == "hd95_mm" else 3)
        if k == "hd95_mm" and len(fin) < len(vals):
            s += f" ({len(vals) - len(fin)} empty)"
        out.append(s)
    out.append(f"{sum(r['calibre_missed'] for r in rows)} of {sum(r['calibre_pairs'] for r in rows)}")
    return out


def table(groups: list[tuple[str, str, list[dict], list[dict]]]) -> str:
    """Rows: (what, model name, model rows, baseline rows); each metric 'model / baseline'."""
    head = ("| scan or modality | model | cases (no spine) | Dice | clDice | HD95 (mm) | centreline recall "
            "| calibre MAE (mm) | missed pairs |")
    lines = [head, "|" + "---|" * 9]
    for what, name, mrows, brows in groups:
        if not mrows and name == NO_MODEL:
            b = _cells(brows) if brows else ["-"] * 6
            lines.append(f"| {what} | {NO_MODEL} | {len(brows)} | " + " | ".join(f"- / {x}" for x in b) + " |")
            continue
        m, b = _cells(mrows), _cells(brows)
        nos = sum(r["stage1"] != "ok" for r in brows)
        lines.append(f"| {what} | {name} | {len(brows)} ({nos}) | " + " | ".join(f"{x} / {y}" for x, y in zip(m, b)) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, action="append", default=[], help="a model folder (repeatable)")
    ap.add_argument("--loso-dir", type=Path, help="one model folder per fold: DIR/<scan_id>/")
    ap.add_argument("--sources", default="loso,gen2,ours")
    ap.add_argument("--cases-per-scan", type=int, default=2)
    ap.add_argument("--gen2-cases", type=int, default=6)
    ap.add_argument("--ours-cases", type=int, default=4)
    ap.add_argument("--tune-phantoms", type=int, default=4, help="training phantoms (seeds 1000+) for the thresholds")
    ap.add_argument("--tune-hybrids", type=int, default=1, help="training hybrids per scan (seeds 60000+)")
    ap.add_argument("--scans", help="comma-separated registry ids (default: every scan with hybrid: true)")
    ap.add_argument("--canal-margin", type=float, default=4.0)
    ap.add_argument("--registry", type=Path, default=ROOT / "configs" / "real_scans.yaml")
    ap.add_argument("--out", type=Path, help="keep cases and predictions here (default: a temporary folder)")
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    sources = [s for s in args.sources.split(",") if s]
    if not set(sources) <= {"loso", "gen2", "ours"}:
        raise SystemExit(f"--sources: expected loso, gen2, ours; got {args.sources!r}")
    if not args.model and (args.loso_dir is None or set(sources) - {"loso"}):
        raise SystemExit("--model: give at least one model folder (gen2 and ours are scored with every --model)")
    entries = read_registry(args.registry)
    registry = {e.id: e for e in entries}
    hybrid_ids = [sid for sid, e in registry.items() if e.hybrid and e.image is not None
                  and (not args.scans or sid in args.scans.split(","))]
    tmp = tempfile.mkdtemp(prefix="by_source_")
    root = args.out or Path(tmp)
    run = Runner(root, args.canal_margin)
    scans = {}
    for sid in hybrid_ids:
        try:
            scans[sid] = scan_canal(registry[sid], find_canal)
        except (ValueError, OSError) as exc:
            print(f"{sid}: no hybrids ({exc})", flush=True)
    recs = tuning_set(run, registry, scans, args.tune_phantoms, args.tune_hybrids)
    thresholds = {m: tune(recs, m) for m in ("CT", "MR")}
    cases, results = [], {}
    if "loso" in sources:
        for sid, sc in scans.items():
            mod = registry[sid].modality
            chosen = pick_model(registry[sid], entries, args.model, args.loso_dir)
            if chosen is None:
                print(f"{sid}: {NO_MODEL} (every model given saw it in training)", flush=True)
            thr = tune(recs, mod, exclude=sid)
            for j in range(args.cases_per_scan):
                ph = generate_hybrid_from_scan(sc, 70000 + j)
                cid = f"loso_{sid}_{70000 + j}"
                save_phantom(ph, root / "truth" / cid)
                facts = {"source": "loso", "scan": sid, "canal_source": ph.info.get("canal_source"),
                         "vein_polarity": ph.info.get("vein_polarity"), "vein_cnr": ph.info.get("vein_cnr"),
                         "models": [chosen] if chosen else []}
                cases.append(run_case(run, cid, ph.image, mod, [chosen] if chosen else [], thr[0], facts))
    if "gen2" in sources:
        from gen2 import generate_case  # the independent generator (bench/gen2): no stand-in, a failure stops

        for k in range(args.gen2_cases):
            mod, seed = ("CT", "MR")[k % 2], 50000 + k
            cid = f"gen2_{mod.lower()}_{seed}"
            folder = Path(generate_case(seed, mod, root / "gen2" / cid))
            shutil.copytree(folder, root / "truth" / cid, dirs_exist_ok=True)
            facts = {"source": "gen2", "generator": "bench/gen2", "models": list(args.model)}
            cases.append(run_case(run, cid, read_image(folder / "image.nii.gz"), mod, args.model,
                                  thresholds[mod][0], facts))
    if "ours" in sources:
        for k in range(args.ours_cases):
            ph = our_phantom(k, 800000 + k)
            cid = f"ours_{800000 + k}"
            save_phantom(ph, root / "truth" / cid)
            facts = {"source": "ours", "models": list(args.model)}
            cases.append(run_case(run, cid, ph.image, ph.config.modality, args.model,
                                  thresholds[ph.config.modality][0], facts))
    methods = ["baseline", *{_key(m) for c in cases for m in c["models"]}]
    for meth in methods:
        results[meth] = run.score(meth)
    report(args, sources, cases, results, thresholds, recs, registry)
    if args.out is None:
        shutil.rmtree(tmp, ignore_errors=True)


def _key(model) -> str:
    """The folder name of a model's predictions."""
    return "model_" + _rel(model).replace("/", "_")


def _rel(p) -> str:
    p = Path(p)
    return str(p.relative_to(ROOT)) if p.is_absolute() and p.is_relative_to(ROOT) else str(p)


VISIBILITY = ((1.0, float("inf"), "visible (CNR >= 1)"), (0.3, 1.0, "faint (0.3 <= CNR < 1)"),
              (0.0, 0.3, "invisible (CNR < 0.3)"))


def visibility_table(cases: list[dict], results: dict) -> str:
    """The leave-one-scan-out hybrids again, grouped by how visible their veins came out (``vein_cnr`` of
    :func:`pipeline.synth.hybrid.vein_visibility`) and, on MR, by vein polarity: every case is in one row of each."""
    def row(what: str, cs: list[dict]) -> str:
        m = [results[_key(c["models"][0])][c["case_id"]]["dice"] for c in cs if c["models"]]
        b = [results["baseline"][c["case_id"]]["dice"] for c in cs]
        cnr = [c["vein_cnr"] for c in cs if c.get("vein_cnr") is not None]
        return (f"| {what} | {len(cs)} | {', '.join(sorted({c['scan'] for c in cs}))} | "
                f"{_fmt(float(np.median(cnr)) if cnr else None, 2)} | {_fmt(float(np.mean(m)) if m else None)} / "
                f"{_fmt(float(np.mean(b)) if b else None)} |")

    lines = ["| group | cases | scans | median CNR | Dice model / baseline |", "|---|---|---|---|---|"]
    for lo, hi, name in VISIBILITY:
        cs = [c for c in cases if c.get("vein_cnr") is not None and lo <= c["vein_cnr"] < hi]
        if cs:
            lines.append(row(name, cs))
    for pol in ("bright", "dark", "intermediate"):
        cs = [c for c in cases if c.get("vein_polarity") == pol]
        if cs:
            lines.append(row(f"MR, veins {pol}", cs))
    cs = [c for c in cases if c["modality"] == "CT"]
    if cs:
        lines.append(row("CT (venous phase)", cs))
    return ("### Leave-one-scan-out hybrids by how visible the veins are\n\n"
            "The same cases as the table above. CNR: |mean in the drawn veins - mean within 2 voxels around them| / SD "
            "around them, on the hybrid image (texture and anatomy count as noise). A dark vein drawn against dark "
            "tissue (a flow void beside bone on T2) or a 1-3 mm vein in a 3 mm CT voxel barely changes the image: "
            "hard for any method to find, and the rows below show how much of the table that is.\n\n" + "\n".join(lines))


def report(args, sources, cases, results, thresholds, recs, registry) -> None:
    per_case = []
    for c in cases:
        row = {k: v for k, v in c.items() if k != "models"}
        row["baseline"] = results["baseline"].get(c["case_id"])
        row["model"] = {_rel(m): results[_key(m)].get(c["case_id"]) for m in c["models"]}
        per_case.append(row)
    parts = []
    for src in sources:
        sel = [c for c in cases if c["source"] == src]
        groups = []
        keys = sorted({(c["scan"], c["modality"]) for c in sel}) if src == "loso" else \
            sorted({("all", c["modality"]) for c in sel}, key=lambda x: x[1])
        for key in keys:
            cs = [c for c in sel if (c.get("scan", "all"), c["modality"]) == key]
            brows = [results["baseline"][c["case_id"]] | {"stage1": c["stage1"]} for c in cs]
            what = f"{key[0]} ({key[1]})" if src == "loso" else key[1]
            models = sorted({m for c in cs for m in c["models"]}) or [None]
            for m in models:
                mrows = [results[_key(m)][c["case_id"]] for c in cs] if m else []
                groups.append((what, _rel(m) if m else NO_MODEL, mrows, brows))
        title = {"loso": "Leave-one-scan-out hybrids (seeds 70000+; each scan scored by a model that never saw it)",
                 "gen2": "Independent generator `bench/gen2` (seeds 50000+; never used in training)",
                 "ours": f"Our generator: {OURS_LABEL}, seeds 800000+"}[src]
        parts.append(f"### {title}\n\n{table(groups)}")
        print(parts[-1], flush=True)
    if "loso" in sources:
        parts.append(visibility_table([c for c in cases if c["source"] == "loso"], results))
        print(parts[-1], flush=True)
    thr = ", ".join(f"{m} {_fmt(t, 4)} (training Dice {_fmt(d)}, {n} cases)" for m, (t, d, n) in thresholds.items())
    cmd = "python bench/by_source.py " + " ".join(
        [f"--model {_rel(m)}" for m in args.model] + ([f"--loso-dir {_rel(args.loso_dir)}"] if args.loso_dir else [])
        + ([f"--scans {args.scans}"] if args.scans else []) + [f"--sources {','.join(sources)}", f"--cases-per-scan {args.cases_per_scan}", f"--gen2-cases {args.gen2_cases}",
           f"--ours-cases {args.ours_cases}", f"--tune-phantoms {args.tune_phantoms}", f"--tune-hybrids {args.tune_hybrids}"])
    loso_thr = sorted({(c["scan"], round(c["threshold"], 5)) for c in cases if c["source"] == "loso"})
    out = {"command": cmd, "commit": git_rev(), "machine": machine(), "thresholds": {m: t for m, (t, _, _) in thresholds.items()},
           "loso_thresholds": dict(loso_thr), "cases": per_case}
    if args.no_doc:  # a trial run leaves the published figures alone
        if args.out is not None:
            (args.out / "by_source.json").write_text(json.dumps(out, indent=1, default=float))
        return
    (ROOT / "docs" / "by_source.json").write_text(json.dumps(out, indent=1, default=float))
    update_doc("by_source", f"""## Evaluation by source (issue 20)

Command: `{cmd}` (commit {git_rev()}; {machine()}); per-case figures in `docs/by_source.json`.
Each cell is **model / baseline**. The model runs as `plexus infer` does (stage 1, then the network on the
canal's crop, plexus kept within {args.canal_margin:g} mm of the canal and, on CT, not over 350 HU; modality given). The baseline is Frangi
vesselness (`bench/frangi_baseline.py`: sigmas 0.5-2.5 mm, both polarities on MR) in the same kept region
(stage 1's canal grown by {args.canal_margin:g} mm; on CT not over 350 HU), thresholded per modality as tuned on training cases only (our generator's
seeds 1000+ and hybrids of seeds 60000+): {thr}; on the leave-one-scan-out table the threshold of scan X is tuned
without X's hybrids ({", ".join(f"{s} {t:.4g}" for s, t in loso_thr)}). Calibre MAE is over every (level, channel)
pair of the truth, a pair never measured counting its whole true diameter; "missed pairs" counts them. A case
where stage 1 finds no spine (count in brackets) is scored as an empty prediction (Dice 0, every pair missed).
Hybrids of scans without a vertebra map take their canal from stage 1 (or the scan's canal reference where stage 1
lies off it) and level names from SCT's labels or a guess (`pipeline/synth/hybrid.py`).

{chr(10).join(parts)}
""")


if __name__ == "__main__":
    sys.exit(main())
