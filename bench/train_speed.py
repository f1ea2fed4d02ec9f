"""Training throughput: iterations per second, the fraction of time spent waiting for data, peak GPU memory.

Runs ``--steps`` steps of a config (default configs/phantom.yaml) in a scratch run folder and reads the
figures from its metrics.csv (``sec_per_step``, ``data_wait_fraction``). On a GPU, the peak memory torch allocated
(``torch.cuda.max_memory_allocated``) and the speed-up over the 2-core CPU figure of the same config in
docs/benchmarks.md (section ``train_speed_auto`` or ``train_speed_cpu``, with its commit) are shown beside.

Usage: ``python bench/train_speed.py [--config configs/phantom.yaml] [--steps 200] [--device auto]
[--override KEY=VALUE ...] [--no-doc]``
"""

from __future__ import annotations

import argparse
import csv
import re
import tempfile
from pathlib import Path

import torch
from common import DOC, ROOT, git_rev, machine, update_doc

from pipeline.inference.predictor import pick_device
from pipeline.train.config import load_config
from pipeline.train.loop import train


def cpu_baseline(doc: str, config: str, batch_patch: str) -> tuple[float, str] | None:
    """Iterations/s and commit of the CPU figure of ``config`` at ``batch_patch`` (e.g. ``2 x 64x64x64``) in the
    text of docs/benchmarks.md, or ``None`` when it has none."""
    for key in ("train_speed_cpu", "train_speed_auto"):
        m = re.search(rf"<!-- {key}:start -->(.*?)<!-- {key}:end -->", doc, flags=re.S)
        if not m:
            continue
        commit = re.search(r"\(commit (\w+)", m.group(1))
        row = re.search(rf"^\| {re.escape(config)} \| (?:auto|cpu) \| {re.escape(batch_patch)} \| ([0-9.]+) \|",
                        m.group(1), flags=re.M)
        if row:
            return float(row.group(1)), commit.group(1) if commit else "unknown"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "phantom.yaml")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                    help="change one config key, e.g. data.synthetic.count=6 (fewer phantoms to generate)")
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    device = pick_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(args.config, [f"output.run_dir={tmp}/run", f"output.model_dir={tmp}/model",
                                        f"train.val_every={10 ** 9}", f"train.device={args.device}", *args.override])
        cache = ROOT / "runs" / "phantom" / "cache"  # reuse the phantoms of a previous run when present
        if cache.exists() and not args.override:
            (Path(tmp) / "run").mkdir(parents=True)
            (Path(tmp) / "run" / "cache").symlink_to(cache)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        train(cfg, stop_after=args.steps)
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
        rows = list(csv.DictReader(open(Path(tmp) / "run" / "metrics.csv")))
    last = rows[-1]
    its = 1 / float(last["sec_per_step"])
    batch_patch = f"{cfg.train.batch_size} x {'x'.join(map(str, cfg.train.patch_size))}"
    base = cpu_baseline(DOC.read_text(), args.config.name, batch_patch) if device.type == "cuda" and DOC.exists() else None
    table = (f"| config | device | batch x patch | iterations/s | data-loading wait | peak GPU memory | vs 2-core CPU |\n"
             f"|---|---|---|---|---|---|---|\n"
             f"| {args.config.name} | {cfg.train.device} | {batch_patch} | {its:.2f} | "
             f"{100 * float(last['data_wait_fraction']):.1f} % | {'-' if peak != peak else f'{peak:.2f} GiB'} | "
             f"{f'{its / base[0]:.1f}x ({base[0]:.2f} it/s at commit {base[1]})' if base else '-'} |")
    print(table)
    if not args.no_doc:
        gpu = f"; GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
        over = "".join(f" --override {o}" for o in args.override)
        target = " Target on one GPU: at least 20x the 2-core CPU iterations/s." if device.type == "cuda" else ""
        update_doc(f"train_speed_{args.device}", f"""## Training throughput on {device.type.upper()} (`bench/train_speed.py`)

Command: `python bench/train_speed.py --steps {args.steps} --device {args.device}{over}` (commit {git_rev()}; {machine()}{gpu}),
{args.steps} steps, {cfg.train.num_workers} DataLoader worker(s), cached preprocessed phantoms.{target}

{table}
""")


if __name__ == "__main__":
    main()
