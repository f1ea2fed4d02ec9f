"""The ``plexus`` command line.

Exit codes: 0 success; 1 some cases of a batch failed, or a bug in plexus (its traceback on stderr, then one line
naming the command); 2 a usage or input error (one line on stderr: ``error: <file>: <problem>``).

The commands import their stage lazily, so that ``plexus --help`` and a usage error answer without loading torch.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from . import __version__
from .core.errors import InputError, PlexusError, Terminated, UsageError
from .core.levels import CONVENTIONS

log = logging.getLogger("plexus")


@contextlib.contextmanager
def _usage() -> Iterator[None]:
    """Turn the ``ValueError`` of a config built from the command line (it names the parameter) into a
    :class:`UsageError`; a ``ValueError`` anywhere else is a bug."""
    try:
        yield
    except PlexusError:
        raise
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _floats(text: str, n: int = 3) -> tuple[float, ...]:
    try:
        vals = tuple(float(x) for x in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {n} comma-separated numbers, got {text!r}") from None
    if len(vals) == 1:
        vals = vals * n
    if len(vals) != n:
        raise argparse.ArgumentTypeError(f"expected {n} comma-separated numbers, got {text!r}")
    return vals


def _levels(text: str) -> tuple[str, str]:
    parts = text.replace("-", ":").split(":")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected TOP:BOTTOM such as L1:S1, got {text!r}")
    return parts[0].upper(), parts[1].upper()


def _anchor(text: str) -> str:
    """``--anchor NAME@Z``, checked when the command line is read (a usage error before any work)."""
    from .postprocess.vertebrae import parse_anchor

    try:
        parse_anchor(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--anchor: ")) from None
    return text


def _shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N such as 2/8, got {text!r}") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"expected K/N with 1 <= K <= N, got {text!r}")
    return k, n


# ---------------------------------------------------------------------------------------------- synth
def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="generate spine phantoms with ground truth",
                       description="Generate spine CT/MR phantoms with plexus mask, vertebra map and true "
                                   "centrelines. With --count N, writes OUT/case_000 ... OUT/case_N-1. With --hybrid "
                                   "SCAN --vertebrae MAP, inserts the synthetic plexus into the real canal of a real scan.")
    from .synth import PRESETS

    p.add_argument("-o", "--out", required=True, type=Path, help="output folder")
    p.add_argument("--preset", default="lumbar-ct", choices=sorted(PRESETS), help="starting point (default lumbar-ct)")
    p.add_argument("--modality", choices=["CT", "MR"], help="override the preset's modality")
    p.add_argument("--levels", type=_levels, help="span, e.g. L1:S1 or C2:T1")
    p.add_argument("--spacing", type=_floats, help="voxel size in mm, e.g. 0.8 or 0.7,0.7,1.5")
    p.add_argument("--orientation", help="storage axcodes, e.g. RAS, LPS, PIR")
    p.add_argument("--sacrum-mm", type=float, help="with S1 in the span: mm of fused sacrum drawn and in view below "
                   "S1 (0: the field ends at S1)")
    p.add_argument("--cranial-mm", type=float, help="mm of field above the top vertebra (default 6; with C1 in the span, "
                   "25 shows the free top of the dens column that names the levels)")
    p.add_argument("--seed", type=int, default=0, help="random seed (case k uses seed+k)")
    p.add_argument("--count", type=int, default=1, help="number of cases")
    p.add_argument("--hybrid", type=Path, metavar="SCAN", help="a real CT/MR scan: insert the plexus into its canal "
                   "(needs --vertebrae; --preset, --levels, --spacing, --orientation, --sacrum-mm do not apply)")
    p.add_argument("--vertebrae", type=Path, help="with --hybrid: the scan's vertebra map (file or TotalSegmentator folder)")
    p.add_argument("--vertebrae-convention", default="auto", choices=CONVENTIONS, help="label convention of --vertebrae")
    p.add_argument("--max-spacing", type=float, default=1.0, help="with --hybrid: largest voxel size (mm) of the output; "
                   "a coarser scan is resampled (default 1.0)")
    p.set_defaults(func=_run_synth)


def _run_synth(args) -> int:
    from .synth import generate_phantom, preset_config, save_phantom

    if args.count < 1:
        raise UsageError(f"--count: expected a positive number, got {args.count}")
    if args.hybrid is not None or args.vertebrae is not None:
        return _run_hybrid(args)

    over = {k: getattr(args, k) for k in ("modality", "levels", "spacing", "orientation") if getattr(args, k)}
    for key in ("sacrum_mm", "cranial_mm"):
        if getattr(args, key) is not None:
            over[key] = getattr(args, key)
    from tqdm import tqdm

    for k in tqdm(range(args.count), desc="phantoms", disable=args.count == 1):
        with _usage():
            cfg = preset_config(args.preset, seed=args.seed + k, **over)
        out = args.out if args.count == 1 else args.out / f"case_{k:03d}"
        t0 = time.perf_counter()
        save_phantom(generate_phantom(cfg), out)
        log.info("wrote %s (%s %s, %.1f s)", out, cfg.modality, "-".join(cfg.levels), time.perf_counter() - t0)
    return 0


def _run_hybrid(args) -> int:
    from .core.volume import same_grid
    from .io.formats import read_image
    from .io.vertebrae import read_vertebrae
    from .preprocess.transform import guess_modality
    from .synth import save_phantom
    from .synth.hybrid import HybridConfig, generate_hybrid

    if args.hybrid is None or args.vertebrae is None:
        raise UsageError("--hybrid and --vertebrae go together: a real scan and its vertebra map")
    image = read_image(args.hybrid)
    vmap = same_grid(image, read_vertebrae(args.vertebrae, args.vertebrae_convention), "vertebra map", "image")
    modality = args.modality or guess_modality(image)
    for k in range(args.count):
        with _usage():
            cfg = HybridConfig(image=str(args.hybrid), vertebrae=str(args.vertebrae), modality=modality,
                               seed=args.seed + k, spacing=args.max_spacing)
        out = args.out if args.count == 1 else args.out / f"case_{k:03d}"
        t0 = time.perf_counter()
        try:
            ph = generate_hybrid(image, vmap, cfg)
        except ValueError as exc:  # a vertebra map the canal cannot be found from
            raise InputError(args.vertebrae, str(exc)) from None
        save_phantom(ph, out)
        rough = [c["level"] for c in ph.info["canal"] if c["found_by"] != "ring"]
        note = f"; canal size from published means (ring open or size out of range) at {', '.join(rough)}" if rough else ""
        log.info("wrote %s (hybrid %s, %s-%s, %.1f s)%s", out, modality, ph.verts[0].name, ph.verts[-1].name,
                 time.perf_counter() - t0, note)
    return 0


# ----------------------------------------------------------------------------------------------- info
def _add_info(sub) -> None:
    p = sub.add_parser("info", help="print the geometry of an image")
    p.add_argument("image", type=Path, help="NIfTI, NRRD, MetaImage file or DICOM folder")
    p.add_argument("--series", help="DICOM SeriesInstanceUID")
    p.add_argument("--first-volume", action="store_true", help="a 4-D image (a time series, several echoes): use its first volume (default: refuse it)")
    p.set_defaults(func=_run_info)


def _run_info(args) -> int:
    import numpy as np

    from .io.formats import read_image

    vol = read_image(args.image, series=args.series, first_volume=args.first_volume)
    print(f"file:      {vol.path} ({vol.meta.get('format')})")
    print(f"shape:     {vol.shape}  dtype {vol.array.dtype}")
    print(f"spacing:   {tuple(round(float(s), 4) for s in vol.spacing)} mm")
    print(f"axcodes:   {''.join(vol.axcodes)}  (world frame RAS)")
    print(f"modality:  {vol.meta.get('modality') or 'unknown'}")
    print(f"range:     {float(np.min(vol.array)):.1f} .. {float(np.max(vol.array)):.1f}")
    print("affine:\n" + np.array2string(vol.affine, precision=4, suppress_small=True))
    for w in vol.meta.get("warnings", []):
        print(f"warning: {w}", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------------------------- demo
def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="run the pipeline on the shipped sample data")
    p.add_argument("--sample-dir", type=Path, default=Path("sample_data"), help="folder of sample cases")
    p.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder")
    p.add_argument("--model", type=Path, default=Path("models/plexus_phantom"), help="model folder")
    p.set_defaults(func=_run_demo)


def _run_demo(args) -> int:
    from .batch.demo import run_demo

    return run_demo(args.sample_dir, args.out, args.model)


# -------------------------------------------------------------------------------------------- measure
def _add_measure(sub) -> None:
    from .postprocess.measure import MeasureOptions

    d = MeasureOptions()
    p = sub.add_parser("measure", help="centrelines and calibre per vertebral level and channel of a plexus mask",
                       description="Measure the epidural venous plexus of MASK (any readable format; label 1 = "
                                   "plexus unless --label says otherwise). Writes calibre.csv, calibre.schema.csv, "
                                   "centerlines.json, measurements.json and qc.png into OUT_DIR.")
    p.add_argument("mask", type=Path, help="plexus mask (NIfTI, NRRD, .seg.nrrd, MetaImage or DICOM)")
    p.add_argument("-o", "--out", required=True, type=Path, help="output folder")
    p.add_argument("--image", type=Path, help="the scan, for the QC picture")
    p.add_argument("--first-volume", action="store_true", help="a 4-D --image (a time series, several echoes): use "
                   "its first volume (default: refuse it)")
    p.add_argument("--vertebrae", type=Path, help="vertebra label map on the mask's grid (levels)")
    p.add_argument("--vertebrae-convention", choices=CONVENTIONS, default="auto", help="label ids of --vertebrae "
                   "(auto: TotalSegmentator when ids 29-50 are present, SPIDER when its canal label 100 is, else VerSe)")
    p.add_argument("--probabilities", type=Path, help="plexus probability map (sub-voxel calibre)")
    p.add_argument("--bone", type=Path, help="without --vertebrae: a label map of vertebral bone to find and name the "
                   "vertebrae from (e.g. plexus infer's segmentation.nii.gz with --bone-label 2)")
    p.add_argument("--bone-label", type=int, help="label of bone in --bone (default: every label > 0)")
    p.add_argument("--lumbar-count", type=int, choices=[4, 5, 6], default=5, help="lumbar vertebrae above the sacrum")
    p.add_argument("--anchor", type=_anchor, metavar="NAME@Z", help="with --bone and no sacrum in view: vertebra NAME at world "
                   "height Z mm, e.g. L3@120")
    p.add_argument("--label", type=int, default=d.label, help="label value of the plexus in MASK (default 1)")
    p.add_argument("--min-volume", type=float, default=d.min_volume_mm3, help="drop specks below this (mm3)")
    p.add_argument("--window", type=float, default=d.window_mm, help="along-vessel averaging window (mm)")
    p.add_argument("--max-gap-to-bone", type=float, default=d.max_gap_to_bone_mm, help="with --vertebrae or --bone: "
                   "drop parts of the mask that never come this close to a vertebra (mm; 0 keeps everything)")
    p.set_defaults(func=_run_measure)


def _run_measure(args) -> int:
    from .export.measure_case import measure_case
    from .export.tables import format_table
    from .postprocess.measure import MeasureOptions

    with _usage():
        opts = MeasureOptions(label=args.label, min_volume_mm3=args.min_volume, window_mm=args.window,
                              max_gap_to_bone_mm=args.max_gap_to_bone,
                              vertebrae_convention=args.vertebrae_convention, lumbar_count=args.lumbar_count,
                              anchor=args.anchor)
    res = measure_case(args.mask, args.out, image_path=args.image, vertebrae_path=args.vertebrae,
                       probabilities_path=args.probabilities, bone_path=args.bone, bone_label=args.bone_label,
                       options=opts, first_volume=args.first_volume)
    print(format_table(res.rows))
    print(f"\nwrote {args.out}/: calibre.csv, centerlines.json, measurements.json, qc.png, segmentation.seg.nrrd, "
          f"centerlines.mrk.json, centerlines.vtp, load_in_slicer.py "
          f"({res.summary['timings_s']['total'] if 'timings_s' in res.summary else 0:.1f} s)")
    return 0


# ---------------------------------------------------------------------------------------------- infer
def _nonneg_mm(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a length in mm, got {text!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"expected a length >= 0 mm, got {text!r}")
    return v


def _add_infer(sub) -> None:
    p = sub.add_parser("infer", help="segment and measure a batch of scans with a trained model",
                       description="Segment the plexus in every input scan and measure it. INPUT: image files, DICOM "
                                   "series folders, folders of scans (one case each), glob patterns, or a CSV/TXT "
                                   "list (CSV columns image[,case_id,vertebrae]). Exit code 0 when every case "
                                   "succeeded, 1 when some failed (listed in run.json), 2 on a usage error.")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("-o", "--out", required=True, type=Path, help="output folder (one sub-folder per case)")
    p.add_argument("--model", type=Path, default=Path("models/plexus_phantom"), help="model folder")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--vertebrae", help="vertebra map (one case) or folder of maps named by case id (levels)")
    p.add_argument("--vertebrae-convention", choices=CONVENTIONS, default="auto",
                   help="label ids of --vertebrae (auto: TotalSegmentator when ids 29-50 are present, SPIDER when its "
                        "canal label 100 is, else VerSe); a folder of TotalSegmentator per-structure masks "
                        "(vertebrae_L3.nii.gz...) is read as such")
    p.add_argument("--lumbar-count", type=int, choices=[4, 5, 6], default=5, help="without --vertebrae, levels are "
                   "named from the model's vertebral bone counting up from the sacrum: lumbar vertebrae above it")
    p.add_argument("--anchor", type=_anchor, metavar="NAME@Z", help="without --vertebrae and with no sacrum in view: the vertebra "
                   "NAME whose body lies at world height Z mm (RAS z), e.g. L3@120; levels are NA otherwise")
    p.add_argument("--modality", choices=["auto", "ct", "mr"], default="auto", help="default: from DICOM tags "
                   "or intensities (stated in measurements.json)")
    p.add_argument("--series", help="DICOM SeriesInstanceUID to read from series folders")
    p.add_argument("--first-volume", action="store_true", help="a 4-D image (a time series, several echoes): use its first volume (default: refuse it)")
    p.add_argument("--crop-margin", type=_nonneg_mm, default=25.0, metavar="MM", help="stage 2: the network "
                   "sees the vertebral canal found by stage 1 grown by MM (default 25: the vertebral bodies, "
                   "foramina and laminae around it)")
    p.add_argument("--canal-margin", type=_nonneg_mm, default=4.0, metavar="MM", help="plexus is kept only within "
                   "MM of the canal (default 4: the rim at its bony wall and the veins' entry into the foramina)")
    p.add_argument("--overlap", type=float, help="sliding-window overlap (default: the model's)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, help="average with the left-right flipped "
                   "prediction (default: the model's setting, inference.tta in its metadata.json)")
    p.add_argument("--save-probabilities", action="store_true", help="also write probabilities.nii.gz")
    p.add_argument("--overwrite", action="store_true", help="redo cases that are already finished")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local (this machine) or ray (a Ray cluster: pip install -e '.[distributed]')")
    p.add_argument("--address", help="Ray cluster address (default: start a local Ray instance)")
    p.add_argument("--ray-cpus", type=int, help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--ray-actors", type=int, help="network actors holding the model (default: one per GPU of the "
                   "cluster, 1 without GPUs)")
    p.add_argument("--shard", type=_shard, metavar="K/N", help="process only shard K of N (1-based) of the cases, "
                   "for job arrays writing into one output folder; then run 'plexus summarize OUT_DIR'")
    p.add_argument("--workers", type=int, help="processes measuring and exporting while the network runs on the "
                   "next case (default on GPU: one per three cores beyond two, 1 to 4; 0 on CPU, where they "
                   "would only compete for the cores)")
    p.set_defaults(func=_run_infer)


def _run_infer(args) -> int:
    from .batch.local import run_batch
    from .batch.options import InferOptions

    options = InferOptions.from_namespace(args)  # checked here, before any work
    if options.executor == "ray":
        from .batch.ray_runner import require_ray

        require_ray()  # a clear error before any work when Ray is not installed
    return run_batch(args.inputs, args.out, options).exit_code


# ---------------------------------------------------------------------------------------------- train
def _add_train(sub) -> None:
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
    from .train.config import load_config
    from .train.loop import train

    cfg = load_config(args.config, args.override)  # checked here, before any process is started
    if args.nproc_per_node != 1 and "WORLD_SIZE" not in os.environ:
        from .train.distributed import launch

        argv = ["--config", str(args.config), *(f"--override={o}" for o in args.override),
                *(["--resume"] if args.resume else []),
                *([f"--stop-after={args.stop_after}"] if args.stop_after is not None else [])]
        return launch(args.nproc_per_node, argv, device=cfg.train.device)
    text = args.config.read_text() + ("".join(f"\n# --override {o}" for o in args.override))
    result = train(cfg, resume=args.resume, stop_after=args.stop_after, config_text=text)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        print(", ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in result.items()))
    return 0


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="Dice, clDice, HD95, centreline and calibre errors of predictions vs truth")
    p.add_argument("pred_dir", type=Path, help="predictions: <case>/segmentation.nii.gz or <case>.nii.gz")
    p.add_argument("truth_dir", type=Path, help="truth: phantom folders <case>/ or <case>.nii.gz")
    p.add_argument("-o", "--out", type=Path, help="where to write the CSVs (default: PRED_DIR)")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args) -> int:
    from .evaluation.evaluate import evaluate

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


# --------------------------------------------------------------------------------------------- report
def _add_report(sub) -> None:
    p = sub.add_parser("report", help="build OUT_DIR/report.html from the finished cases of OUT_DIR")
    p.add_argument("out_dir", type=Path, help="folder holding one sub-folder per case")
    p.set_defaults(func=_run_report)


def _run_report(args) -> int:
    from .export.report import build_report

    if not args.out_dir.is_dir():
        raise InputError(args.out_dir, "no such folder")
    print(f"wrote {build_report(args.out_dir)}")
    return 0


def _add_summarize(sub) -> None:
    p = sub.add_parser("summarize", help="rebuild summary.csv, run.json and report.html of an infer output folder",
                       description="Merge what is finished in OUT_DIR (e.g. after 'plexus infer --shard K/N' jobs): "
                                   "summary.csv from every finished case, run.json from run.json and every "
                                   "run.shard-*.json, and report.html.")
    p.add_argument("out_dir", type=Path, help="the output folder of plexus infer")
    p.set_defaults(func=_run_summarize)


def _run_summarize(args) -> int:
    from .batch.summary import summarize

    run = summarize(args.out_dir)
    print(f"{run['n_finished']} finished cases, {len(run['failures'])} failed, from {', '.join(run['records'])}; "
          f"wrote {args.out_dir}/summary.csv, run.json, report.html")
    return 1 if run["failures"] else 0


# ----------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plexus", description=__doc__.splitlines()[0] + " "
                                     "Find the epidural venous plexus in spine CT/MR and measure its calibre.")
    parser.add_argument("--version", action="version", version=f"plexus {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_synth, _add_info, _add_infer, _add_summarize, _add_measure, _add_train, _add_evaluate, _add_report,
                _add_demo):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    previous = _terminate_like_ctrl_c()
    try:
        return int(args.func(args) or 0)
    except PlexusError as exc:  # the user's input, arguments or disk: one line
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an output or system problem outside a batch case: one line, no traceback
        print(f"error: {exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug in plexus: its traceback, then one line naming the command
        log.error("plexus %s failed with an unexpected error (a bug; please report it with this traceback):",
                  args.command, exc_info=True)
        print(f"error: plexus {args.command}: bug: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminate_like_ctrl_c():
    """SIGTERM (a scheduler's kill, ``timeout``) unwinds like Ctrl-C: checkpoints saved, partial outputs removed."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise Terminated()

    return signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    sys.exit(main())
