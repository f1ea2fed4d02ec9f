"""``plexus evaluate PRED_DIR TRUTH_DIR``: segmentation and calibre accuracy of predictions against truth.

Cases are matched by id: ``PRED_DIR/<case>/segmentation.nii.gz`` (what ``plexus infer`` writes) or
``PRED_DIR/<case>.nii.gz``, against ``TRUTH_DIR/<case>/plexus_mask.nii.gz`` (a phantom folder, whose
``vertebrae.nii.gz`` and ``truth_calibre.csv`` also give the calibre error) or ``TRUTH_DIR/<case>.nii.gz``.
Writes ``evaluation_cases.csv`` (Dice, clDice, HD95, centreline precision/recall, calibre MAE per case),
``evaluation_calibre.csv`` (error per case, level and channel) and ``evaluation_summary.json``.

Calibre MAE is over every (level, channel) pair of the truth: a pair the prediction never found counts its whole
true diameter as its error (:func:`.metrics.calibre_score`); ``calibre_missed`` of ``calibre_pairs`` say how many.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from ..core.atomic import write_text
from ..core.errors import InputError
from ..export.tables import read_calibre_csv
from ..io.formats import read_label_map
from ..postprocess.measure import measure
from .metrics import calibre_score, centreline_precision_recall, cldice, dice, hd95


def _pairs(pred_dir: Path, truth_dir: Path) -> list[tuple[str, Path, Path]]:
    preds = {p.parent.name: p for p in pred_dir.glob("*/segmentation.nii.gz")}
    preds.update({p.name[:-7]: p for p in pred_dir.glob("*.nii.gz")})
    out = []
    for cid, p in sorted(preds.items()):
        t = truth_dir / cid / "plexus_mask.nii.gz"
        t = t if t.exists() else truth_dir / f"{cid}.nii.gz"
        if t.exists():
            out.append((cid, p, t))
    if not out:
        raise InputError(pred_dir, f"no prediction matches a case of {truth_dir}")
    return out


def evaluate(pred_dir: str | Path, truth_dir: str | Path, out_dir: str | Path | None = None) -> dict:
    """Evaluate every matched case; write the CSVs and summary into ``out_dir`` (default ``pred_dir``).

    Returns
    -------
    dict
        ``summary`` (means over the cases: ``dice``, ``cldice`` in [0, 1], ``hd95_mm``, centreline precision and
        recall, ``calibre_mae_mm``; counts ``calibre_missed``, ``calibre_pairs``, ``n_cases``) and ``cases`` (one
        row per case).
    """
    pred_dir, truth_dir = Path(pred_dir), Path(truth_dir)
    out_dir = Path(out_dir or pred_dir)
    cases, cal_rows = [], []
    for cid, p, t in _pairs(pred_dir, truth_dir):
        pv, tv = read_label_map(p), read_label_map(t)
        if pv.shape != tv.shape:
            raise InputError(p, f"grid {pv.shape} differs from the truth's {tv.shape}")
        pm, tm = pv.array == 1, tv.array == 1
        prec, rec = centreline_precision_recall(pm, tm, tv.spacing)
        row = {"case_id": cid, "dice": dice(pm, tm), "cldice": cldice(pm, tm), "hd95_mm": hd95(pm, tm, tv.spacing),
               "centreline_precision": prec, "centreline_recall": rec, "calibre_mae_mm": float("nan"),
               "calibre_missed": 0, "calibre_pairs": 0}
        vert, truth_csv = t.parent / "vertebrae.nii.gz", t.parent / "truth_calibre.csv"
        if vert.exists() and truth_csv.exists():
            res = measure(pv.with_array(pm.astype(np.uint8)), vertebrae=read_label_map(vert))
            score = calibre_score(res.rows, truth_csv)
            truth_rows = read_calibre_csv(truth_csv)
            for tr, e in zip(truth_rows, score["errors_mm"]):
                cal_rows.append({"case_id": cid, "level": tr["level"], "channel": tr["channel"], "error_mm": e,
                                 "missed": int(not np.isfinite(e))})
            row.update(calibre_mae_mm=score["mae_mm"], calibre_missed=score["missed"], calibre_pairs=score["pairs"])
        cases.append(row)
    counts = ("calibre_missed", "calibre_pairs")
    summary = {k: float(np.nanmean([c[k] for c in cases])) for k in cases[0] if k != "case_id" and k not in counts}
    summary.update({k: int(sum(c[k] for c in cases)) for k in counts})
    summary["n_cases"] = len(cases)
    write_text(out_dir / "evaluation_cases.csv", _csv(cases))
    write_text(out_dir / "evaluation_calibre.csv",
               _csv(cal_rows) if cal_rows else "case_id,level,channel,error_mm,missed\n")
    write_text(out_dir / "evaluation_summary.json", json.dumps({"summary": summary, "cases": cases}, indent=2))
    return {"summary": summary, "cases": cases}


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()
