"""Training throughput: iterations per second and the fraction of time spent waiting for data.

Runs ``--steps`` steps of a config (default configs/phantom.yaml) in a scratch run folder and reads the
figures from its metrics.csv (``sec_per_step``, ``data_wait_fraction``).

Usage: ``python bench/train_speed.py [--config configs/phantom.yaml] [--steps 200] [--device auto] [--no-doc]``
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

from common import ROOT, git_rev, machine, update_doc

from pipeline.train.config import load_config
from pipeline.train.loop import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "phantom.yaml")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(args.config, [f"output.run_dir={tmp}/run", f"output.model_dir={tmp}/model",
                                        f"train.val_every={10 ** 9}", f"train.device={args.device}"])
        cache = ROOT / "runs" / "phantom" / "cache"  # reuse the phantoms of a previous run when present
        if cache.exists():
            (Path(tmp) / "run").mkdir(parents=True)
            (Path(tmp) / "run" / "cache").symlink_to(cache)
        train(cfg, stop_after=args.steps)
        rows = list(csv.DictReader(open(Path(tmp) / "run" / "metrics.csv")))
    last = rows[-1]
    sps = float(last["sec_per_step"])
    table = (f"| config | device | batch x patch | iterations/s | data-loading wait |\n|---|---|---|---|---|\n"
             f"| {args.config.name} | {cfg.train.device} | {cfg.train.batch_size} x {'x'.join(map(str, cfg.train.patch_size))} | "
             f"{1 / sps:.2f} | {100 * float(last['data_wait_fraction']):.1f} % |")
    print(table)
    if not args.no_doc:
        update_doc(f"train_speed_{args.device}", f"""## Training throughput (`bench/train_speed.py`)

Command: `python bench/train_speed.py --steps {args.steps} --device {args.device}` (commit {git_rev()}; {machine()}),
{args.steps} steps, {cfg.train.num_workers} DataLoader worker(s), cached preprocessed phantoms.

{table}
""")


if __name__ == "__main__":
    main()
