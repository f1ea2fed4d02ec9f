"""The record of a batch run: per-case timings and failures, ``run.json`` (or a shard's ``run.shard-K-of-N.json``),
``summary.csv`` and ``report.html``, and the closing line."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import __version__
from ..core.atomic import write_text
from ..core.errors import PlexusError
from ..export.report import build_report
from ..inference.model import ModelMetadata
from .cases import CaseInput
from .folder import finished
from .options import InferOptions
from .summary import write_summary_csv


@dataclass
class RunRecord:
    """What this run did: ``cases`` maps a case id to its timings (s) and status, ``failures`` lists the
    ``run.json`` entries of the failed cases (:func:`failure`)."""

    started: float = field(default_factory=time.time)
    cases: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)


def failure(case: CaseInput, exc: BaseException) -> dict:
    """The ``run.json`` entry of a failed case: one line naming the input and the problem."""
    msg = str(exc) if isinstance(exc, PlexusError) else f"{case.path}: {type(exc).__name__}: {exc}"
    return {"case_id": case.case_id, "input": str(case.path), "error": msg}


def report_end(out: Path, cases: list[CaseInput], record: RunRecord, options: InferOptions) -> int:
    """Print the closing line of a batch; return its exit code (0: no case failed, 1: some did)."""
    n_ok = sum(finished(out, c.case_id) for c in cases)
    then = (f"when every shard is done: plexus summarize {out}" if options.shard
            else "summary.csv, run.json, report.html")
    print(f"{n_ok} of {len(cases)} cases finished ({len(record.cases)} by this run), {len(record.failures)} failed; "
          f"outputs in {out}/ ({then})")
    return 1 if record.failures else 0


def write_record(out: Path, cases: list[CaseInput], record: RunRecord, meta: ModelMetadata, options: InferOptions,
                 device: torch.device) -> None:
    """Write this run's record; rebuild summary.csv, run.json and report.html (a shard leaves those to
    ``plexus summarize``, so that N jobs never race on them)."""
    run = {"plexus_version": __version__, "torch": torch.__version__, "model": str(options.model),
           "model_name": meta.name, "device": str(device),
           "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
           "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.started)),
           "wall_s": round(time.time() - record.started, 2), "n_inputs": len(cases),
           "timings": record.cases, "failures": record.failures}
    shard = options.shard
    if shard is not None:
        run["shard"] = f"{shard[0]}/{shard[1]}"
        write_text(out / f"run.shard-{shard[0]}-of-{shard[1]}.json", json.dumps(run, indent=2))
        return
    write_text(out / "run.json", json.dumps(run, indent=2))
    write_summary_csv(out)
    build_report(out)
