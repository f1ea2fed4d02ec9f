"""Leave-one-scan-out models: ``configs/plexus.yaml`` once per patient of the training scans, without that patient.

The default model (``models/plexus``) sees the label maps of every registry scan that has a vertebra map
(``configs/real_scans.yaml``), so it may not be scored on hybrids of those scans. For each such patient this script
trains the same recipe with ``data.randomised.exclude_scans`` set to the patient's scans, into
``runs/loso/<patient>/`` (model folder ``runs/loso/<patient>/model``, whose ``metadata.json`` lists the scans it saw);
``bench/by_source.py --loso-dir runs/loso`` then scores each fold only on the scans it never saw. Patients whose
scans are not training sources need no fold: the default model never saw them.

Every fold starts, as the default model does, from ``models/plexus_base`` (which saw no real scan), so no fold
inherits the held-out patient. Runs are resumable: a fold with ``last.pt`` continues (``--resume``), a finished
one is skipped. The label-map cache is shared with the base run (same seeds, same files).

Usage: ``python bench/loso_train.py [--config configs/plexus.yaml] [--only PATIENT] [--stop-after N]
[--out runs/loso] [--override KEY=VALUE ...]``
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from common import ROOT

from pipeline.train.config import load_config
from pipeline.train.scans import loso_folds, randomised_scans, read_registry


def folds_to_train(config: Path) -> list[tuple[str, list[str]]]:
    """(patient, its scan ids) for every patient with a scan among the config's randomised training scans."""
    cfg = load_config(config)
    entries = read_registry(cfg.data.randomised.scans)
    used = {e.id for e in randomised_scans(cfg)}
    return [(group, held) for group, held, _ in loso_folds(entries) if set(held) & used]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "plexus.yaml")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "loso")
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "plexus_base" / "cache",
                    help="label-map and phantom cache shared by the runs")
    ap.add_argument("--only", help="train this patient's fold only")
    ap.add_argument("--stop-after", type=int, help="steps per fold now (resume later)")
    ap.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                    help="a change to the recipe, for every fold (repeatable; as plexus train --override)")
    args = ap.parse_args()
    for group, held in folds_to_train(args.config):
        if args.only and group != args.only:
            continue
        run = args.out / group
        if (run / "model" / "metadata.json").exists():
            print(f"{group}: done ({run / 'model'})")
            continue
        run.mkdir(parents=True, exist_ok=True)
        if not (run / "cache").exists():
            args.cache.mkdir(parents=True, exist_ok=True)
            (run / "cache").symlink_to(args.cache.resolve())
        cmd = [sys.executable, "-m", "pipeline.cli", "train", "--config", str(args.config),
               "--override", f"data.randomised.exclude_scans=[{', '.join(held)}]",
               "--override", f"output.run_dir={run}", "--override", f"output.model_dir={run / 'model'}",
               "--override", f"output.name=plexus_loso_{group}"]
        for o in args.override:
            cmd += ["--override", o]
        if (run / "last.pt").exists():
            cmd.append("--resume")
        if args.stop_after:
            cmd += ["--stop-after", str(args.stop_after)]
        print(f"{group}: training without {', '.join(held)}", flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
