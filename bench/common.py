"""Shared helpers of the benchmark scripts: benchmark phantoms, scoring against truth, docs/benchmarks.md."""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.synth import PhantomConfig  # noqa: E402
from pipeline.synth.vessels import CHANNELS  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"

# Seeds 900000+ are never used by the tests or the sample data.
SPANS = [("L1", "S1"), ("T9", "L3"), ("C3", "T2"), ("T3", "T10"), ("L2", "S1")]
SPACINGS = [(0.5, 0.5, 0.5), (0.8, 0.8, 0.8), (1.0, 1.0, 1.0), (0.6, 0.6, 1.2), (1.5, 1.5, 1.5), (0.7, 0.7, 1.0)]
ORIENTATIONS = ["RAS", "LPS", "PIR", "PSR", "LAS"]


def bench_configs(n: int, seed0: int = 900000) -> list[PhantomConfig]:
    """``n`` varied phantom configs: spans, spacings (0.5-1.5 mm, some anisotropic), CT/MR, storage orders."""
    out = []
    for k in range(n):
        out.append(PhantomConfig(modality="CT" if k % 2 == 0 else "MR", levels=SPANS[k % len(SPANS)],
                                 spacing=SPACINGS[k % len(SPACINGS)], orientation=ORIENTATIONS[k % len(ORIENTATIONS)],
                                 seed=seed0 + k, fov_lr=32, fov_back=32, fov_front=40))
    return out


def score(rows: list[dict], truth: list[tuple[str, str, float, int]]) -> dict:
    """Errors of measured medians against truth per (level, channel); missing ones counted, and their true
    diameters listed (``missed_mm``: the error of a missed pair when it is counted as measured 0 mm)."""
    got = {(r["level"], r["channel"]): r["median_diameter_mm"] for r in rows}
    err = {"anterior": [], "posterior": []}
    missed = []
    for level, channel, d, _ in truth:
        v = got.get((level, channel), float("nan"))
        if not np.isfinite(v):
            missed.append(float(d))
            continue
        err[channel.split("_")[0]].append(v - d)
    return {"anterior": err["anterior"], "posterior": err["posterior"], "missing": len(missed), "n": len(truth),
            "missed_mm": missed}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def git_rev() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def update_doc(section: str, text: str, doc: Path = DOC) -> None:
    """Replace the ``section`` block of ``doc`` (docs/benchmarks.md by default; created when missing)."""
    path = doc
    path.parent.mkdir(exist_ok=True)
    doc = path.read_text() if path.exists() else "# Benchmarks\n\nFigures written by the scripts in `bench/`.\n"
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    block = f"{start}\n{text.strip()}\n{end}"
    if start in doc:
        doc = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, doc, flags=re.S)
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    path.write_text(doc)


__all__ = ["CHANNELS", "bench_configs", "score", "machine", "git_rev", "update_doc", "ROOT"]
