"""``plexus train`` and ``plexus evaluate``."""

from __future__ import annotations

import os
from pathlib import Path

from ..core.errors import InputError


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train a segmentation model from a YAML config",
                       description="Train a MONAI U-Net (plexus = 1, vertebral bone = 2) as the config describes; "
                                   "writes checkpoints, metrics.csv and TensorBoard logs in output.run_dir and the "
                                   "model folder at the end.")
    p.add_argument("--config", required=True, type=Path, help="YAML config (see configs/)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="change one dotted key, e.g. train.iterations=200 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from output.run_dir/last.pt")
    p.add_argument("--stop-after", type=int, help="run this many steps now, checkpoint and stop (resume later)")
    p.add_argument("--nproc-per-node", type=int, default=1, metavar="N",
                   help="data-parallel training in N processes on this machine (torchrun; one per GPU, or gloo on "
                        "the CPU); for several nodes run torchrun yourself, see docs/scaling.md")
    p.set_defaults(func=_run_train)


def _run_train(args) -> int:
    from ..train.config import load_config
    from ..train.loop import train

    cfg = load_config(args.config, args.override)  # checked here, before any process is started
    if args.nproc_per_node != 1 and "WORLD_SIZE" not in os.environ:
        from ..train.distributed import launch

        argv = ["--config", str(args.config), *(f"--override={o}" for o in args.override),
                *(["--resume"] if args.resume else []),
                *([f"--stop-after={args.stop_after}"] if args.stop_after is not None else [])]
        return launch(args.nproc_per_node, argv, device=cfg.train.device)
    text = args.config.read_text() + ("".join(f"\n# --override {o}" for o in args.override))
    result = train(cfg, resume=args.resume, stop_after=args.stop_after, config_text=text)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        print(", ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in result.items()))
    return 0


def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="Dice, clDice, HD95, centreline and calibre errors of predictions vs truth")
    p.add_argument("pred_dir", type=Path, help="predictions: <case>/segmentation.nii.gz or <case>.nii.gz")
    p.add_argument("truth_dir", type=Path, help="truth: phantom folders <case>/ or <case>.nii.gz")
    p.add_argument("-o", "--out", type=Path, help="where to write the CSVs (default: PRED_DIR)")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args) -> int:
    from ..evaluation.evaluate import evaluate

    for d in (args.pred_dir, args.truth_dir):
        if not d.is_dir():
            raise InputError(d, "no such folder")
    res = evaluate(args.pred_dir, args.truth_dir, args.out)
    s = res["summary"]
    print(f"{s['n_cases']} cases: Dice {s['dice']:.3f}, clDice {s['cldice']:.3f}, HD95 {s['hd95_mm']:.2f} mm, "
          f"centreline precision {s['centreline_precision']:.3f} / recall {s['centreline_recall']:.3f}, "
          f"calibre MAE {s['calibre_mae_mm']:.3f} mm ({s['calibre_missed']} of {s['calibre_pairs']} (level, channel) "
          f"pairs missed, each counted at its true diameter)")
    return 0
