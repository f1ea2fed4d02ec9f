"""Batch summaries: ``summary.csv``, ``run.json`` and ``report.html`` of an output folder (``plexus summarize``).

A local run writes its record to ``run.json``; each job of a sharded batch (``plexus infer --shard K/N``, e.g. a
SLURM array) writes ``run.shard-K-of-N.json`` instead, and ``plexus summarize OUT_DIR`` merges whatever records
and finished cases are there. The tables are always rebuilt from the finished case folders themselves, so the
summary of N shards equals that of one run over the same cases.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.atomic import write_text
from ..core.errors import InputError
from ..export.report import build_report
from ..export.tables import calibre_csv_text, read_calibre_csv
from ..postprocess.measure import COLUMNS
from .folder import DONE


def finished_cases(out: Path) -> list[Path]:
    """The complete case folders of ``out``, sorted by case id."""
    return sorted(p.parent for p in out.glob(f"*/{DONE}") if not p.parent.name.startswith("."))


def write_summary_csv(out: Path) -> Path | None:
    """``summary.csv``: every (level, channel) row of every finished case, ``case_id`` first."""
    header, body = None, []
    for d in finished_cases(out):
        if not (d / "calibre.csv").exists():  # a case with a status and no plexus (no spine in view)
            status = json.loads((d / "measurements.json").read_text()).get("status", "no calibre")
            text = calibre_csv_text([_status_row()], first={"case_id": d.name}, last={"status": status})
            head, rest = text.split("\n", 1)
            header = header or head
            body.append(rest)
            continue
        rows = read_calibre_csv(d / "calibre.csv")
        head, rest = calibre_csv_text(rows, first={"case_id": d.name}, last={"status": "ok"}).split("\n", 1)
        header = header or head
        body.append(rest)
    if header is None:
        return None
    write_text(out / "summary.csv", header + "\n" + "".join(body))
    return out / "summary.csv"


def _status_row() -> dict:
    """The one row of a case without a plexus: no level, no channel, every figure empty."""
    return {c: ("NA" if c in ("level", "channel") else 0 if c == "n_points" else float("nan")) for c in COLUMNS}


def merge_records(out: Path) -> dict:
    """One run record from ``run.json`` and every ``run.shard-*.json`` of ``out``.

    Timings are kept per case (the latest record wins); a failure is listed only while its case is not finished.
    """
    paths = sorted(out.glob("run.shard-*.json")) + ([out / "run.json"] if (out / "run.json").exists() else [])
    if not paths:
        raise InputError(out, "no run.json or run.shard-*.json: not a plexus infer output folder")
    recs = [json.loads(p.read_text()) for p in paths]
    recs.sort(key=lambda r: r.get("started", ""))
    done = {d.name for d in finished_cases(out)}
    timings: dict = {}
    failures: dict = {}
    for r in recs:
        timings.update(r.get("timings", {}))
        for f in r.get("failures", []):
            failures[f["case_id"]] = f
    merged = {k: recs[-1].get(k) for k in ("plexus_version", "torch", "model", "model_name", "device", "gpu")}
    merged.update({
        "started": recs[0].get("started"), "records": [p.name for p in paths],
        "wall_s": round(sum(float(r.get("wall_s", 0)) for r in recs), 2),
        "n_inputs": sum(int(r.get("n_inputs", 0)) for r in recs if "shard" in r) or int(recs[-1].get("n_inputs", 0)),
        "n_finished": len(done),
        "timings": {k: timings[k] for k in sorted(timings) if k in done},
        "failures": [failures[k] for k in sorted(failures) if k not in done],
    })
    return merged


def summarize(out: Path) -> dict:
    """Rebuild ``summary.csv``, ``run.json`` and ``report.html`` of ``out`` from what is finished there."""
    out = Path(out)
    if not out.is_dir():
        raise InputError(out, "no such folder")
    merged = merge_records(out)
    write_summary_csv(out)
    write_text(out / "run.json", json.dumps(merged, indent=2))
    build_report(out)
    return merged
