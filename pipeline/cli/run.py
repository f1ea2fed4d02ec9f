"""``plexus infer``, ``measure``, ``summarize``, ``report`` and ``demo``: the pipeline on scans and masks."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.errors import InputError
from ..core.levels import CONVENTIONS
from .args import anchor, nonneg_mm, shard, usage


# -------------------------------------------------------------------------------------------- measure
def add_measure(sub) -> None:
    from ..postprocess.measure import MeasureOptions

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
                   "(auto: TotalSegmentator when ids 29-50 are present, SPIDER when its canal label 100 is, else "
                   "VerSe)")
    p.add_argument("--probabilities", type=Path, help="plexus probability map (sub-voxel calibre)")
    p.add_argument("--bone", type=Path, help="without --vertebrae: a label map of vertebral bone to find and name the "
                   "vertebrae from (e.g. plexus infer's segmentation.nii.gz with --bone-label 2)")
    p.add_argument("--bone-label", type=int, help="label of bone in --bone (default: every label > 0)")
    p.add_argument("--lumbar-count", type=int, choices=[4, 5, 6], default=5, help="lumbar vertebrae above the sacrum")
    p.add_argument("--anchor", type=anchor, metavar="NAME@Z", help="with --bone and no sacrum in view: vertebra NAME "
                   "at world "
                   "height Z mm, e.g. L3@120")
    p.add_argument("--label", type=int, default=d.label, help="label value of the plexus in MASK (default 1)")
    p.add_argument("--min-volume", type=float, default=d.min_volume_mm3, help="drop specks below this (mm3)")
    p.add_argument("--window", type=float, default=d.window_mm, help="along-vessel averaging window (mm)")
    p.add_argument("--max-gap-to-bone", type=float, default=d.max_gap_to_bone_mm, help="with --vertebrae or --bone: "
                   "drop parts of the mask that never come this close to a vertebra (mm; 0 keeps everything)")
    p.set_defaults(func=_run_measure)


def _run_measure(args) -> int:
    from ..export.measure_case import measure_case
    from ..export.tables import format_table
    from ..postprocess.measure import MeasureOptions

    with usage():
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
def add_infer(sub) -> None:
    p = sub.add_parser("infer", help="segment and measure a batch of scans with a trained model",
                       description="Segment the plexus in every input scan and measure it. INPUT: image files, DICOM "
                                   "series folders, folders of scans (one case each), glob patterns, or a CSV/TXT "
                                   "list (CSV columns image[,case_id,vertebrae]). Exit code 0 when every case "
                                   "succeeded, 1 when some failed (listed in run.json), 2 on a usage error.")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("-o", "--out", required=True, type=Path, help="output folder (one sub-folder per case)")
    p.add_argument("--model", type=Path, default=Path("models/plexus"), help="model folder")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--vertebrae", help="vertebra map (one case) or folder of maps named by case id (levels)")
    p.add_argument("--vertebrae-convention", choices=CONVENTIONS, default="auto",
                   help="label ids of --vertebrae (auto: TotalSegmentator when ids 29-50 are present, SPIDER when its "
                        "canal label 100 is, else VerSe); a folder of TotalSegmentator per-structure masks "
                        "(vertebrae_L3.nii.gz...) is read as such")
    p.add_argument("--lumbar-count", type=int, choices=[4, 5, 6], default=5, help="without --vertebrae, levels are "
                   "named from the model's vertebral bone counting up from the sacrum: lumbar vertebrae above it")
    p.add_argument("--anchor", type=anchor, metavar="NAME@Z", help="without --vertebrae and with no sacrum in view: "
                   "the vertebra "
                   "NAME whose body lies at world height Z mm (RAS z), e.g. L3@120; levels are NA otherwise")
    p.add_argument("--modality", choices=["auto", "ct", "mr"], default="auto", help="default: from DICOM tags "
                   "or intensities (stated in measurements.json)")
    p.add_argument("--series", help="DICOM SeriesInstanceUID to read from series folders")
    p.add_argument("--first-volume", action="store_true", help="a 4-D image (a time series, several echoes): use its "
                   "first volume (default: refuse it)")
    p.add_argument("--crop-margin", type=nonneg_mm, default=25.0, metavar="MM", help="stage 2: the network "
                   "sees the vertebral canal found by stage 1 grown by MM (default 25: the vertebral bodies, "
                   "foramina and laminae around it)")
    p.add_argument("--canal-margin", type=nonneg_mm, default=4.0, metavar="MM", help="plexus is kept only within "
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
    p.add_argument("--shard", type=shard, metavar="K/N", help="process only shard K of N (1-based) of the cases, "
                   "for job arrays writing into one output folder; then run 'plexus summarize OUT_DIR'")
    p.add_argument("--workers", type=int, help="processes measuring and exporting while the network runs on the "
                   "next case (default on GPU: one per three cores beyond two, 1 to 4; 0 on CPU, where they "
                   "would only compete for the cores)")
    p.set_defaults(func=_run_infer)


def _run_infer(args) -> int:
    from ..batch.local import run_batch
    from ..batch.options import InferOptions

    options = InferOptions.from_namespace(args)  # checked here, before any work
    if options.executor == "ray":
        from ..batch.ray_runner import require_ray

        require_ray()  # a clear error before any work when Ray is not installed
    return run_batch(args.inputs, args.out, options).exit_code


# --------------------------------------------------------------------------------------------- report
def add_report(sub) -> None:
    p = sub.add_parser("report", help="build OUT_DIR/report.html from the finished cases of OUT_DIR")
    p.add_argument("out_dir", type=Path, help="folder holding one sub-folder per case")
    p.set_defaults(func=_run_report)


def _run_report(args) -> int:
    from ..export.report import build_report

    if not args.out_dir.is_dir():
        raise InputError(args.out_dir, "no such folder")
    print(f"wrote {build_report(args.out_dir)}")
    return 0


def add_summarize(sub) -> None:
    p = sub.add_parser("summarize", help="rebuild summary.csv, run.json and report.html of an infer output folder",
                       description="Merge what is finished in OUT_DIR (e.g. after 'plexus infer --shard K/N' jobs): "
                                   "summary.csv from every finished case, run.json from run.json and every "
                                   "run.shard-*.json, and report.html.")
    p.add_argument("out_dir", type=Path, help="the output folder of plexus infer")
    p.set_defaults(func=_run_summarize)


def _run_summarize(args) -> int:
    from ..batch.summary import summarize

    run = summarize(args.out_dir)
    print(f"{run['n_finished']} finished cases, {len(run['failures'])} failed, from {', '.join(run['records'])}; "
          f"wrote {args.out_dir}/summary.csv, run.json, report.html")
    return 1 if run["failures"] else 0


# ----------------------------------------------------------------------------------------------- demo
def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="run the pipeline on the shipped sample data")
    p.add_argument("--sample-dir", type=Path, default=Path("sample_data"), help="folder of sample cases")
    p.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder")
    p.add_argument("--model", type=Path, default=Path("models/plexus"), help="model folder")
    p.set_defaults(func=_run_demo)


def _run_demo(args) -> int:
    from ..batch.demo import run_demo

    return run_demo(args.sample_dir, args.out, args.model)
