"""``plexus synth`` (phantoms and hybrids) and ``plexus info`` (the geometry of an image)."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from ..core.errors import InputError, UsageError
from ..core.levels import CONVENTIONS
from .args import floats, levels, usage

log = logging.getLogger("plexus")


def add_synth(sub) -> None:
    p = sub.add_parser("synth", help="generate spine phantoms with ground truth",
                       description="Generate spine CT/MR phantoms with plexus mask, vertebra map and true "
                                   "centrelines. With --count N, writes OUT/case_000 ... OUT/case_N-1. With --hybrid "
                                   "SCAN --vertebrae MAP, inserts the synthetic plexus into the real canal of a real "
                                   "scan.")
    from ..synth import PRESETS

    p.add_argument("-o", "--out", required=True, type=Path, help="output folder")
    p.add_argument("--preset", default="lumbar-ct", choices=sorted(PRESETS), help="starting point (default lumbar-ct)")
    p.add_argument("--modality", choices=["CT", "MR"], help="override the preset's modality")
    p.add_argument("--levels", type=levels, help="span, e.g. L1:S1 or C2:T1")
    p.add_argument("--spacing", type=floats, help="voxel size in mm, e.g. 0.8 or 0.7,0.7,1.5")
    p.add_argument("--orientation", help="storage axcodes, e.g. RAS, LPS, PIR")
    p.add_argument("--sacrum-mm", type=float, help="with S1 in the span: mm of fused sacrum drawn and in view below "
                   "S1 (0: the field ends at S1)")
    p.add_argument("--cranial-mm", type=float, help="mm of field above the top vertebra (default 6; with C1 in the "
                   "span, "
                   "25 shows the free top of the dens column that names the levels)")
    p.add_argument("--seed", type=int, default=0, help="random seed (case k uses seed+k)")
    p.add_argument("--count", type=int, default=1, help="number of cases")
    p.add_argument("--hybrid", type=Path, metavar="SCAN", help="a real CT/MR scan: insert the plexus into its canal "
                   "(needs --vertebrae; --preset, --levels, --spacing, --orientation, --sacrum-mm do not apply)")
    p.add_argument("--vertebrae", type=Path, help="with --hybrid: the scan's vertebra map (file or TotalSegmentator "
                   "folder)")
    p.add_argument("--vertebrae-convention", default="auto", choices=CONVENTIONS,
                   help="label convention of --vertebrae")
    p.add_argument("--max-spacing", type=float, default=1.0, help="with --hybrid: largest voxel size (mm) of the "
                   "output; "
                   "a coarser scan is resampled (default 1.0)")
    p.set_defaults(func=_run_synth)


def _run_synth(args) -> int:
    from ..synth import generate_phantom, preset_config, save_phantom

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
        with usage():
            cfg = preset_config(args.preset, seed=args.seed + k, **over)
        out = args.out if args.count == 1 else args.out / f"case_{k:03d}"
        t0 = time.perf_counter()
        save_phantom(generate_phantom(cfg), out)
        log.info("wrote %s (%s %s, %.1f s)", out, cfg.modality, "-".join(cfg.levels), time.perf_counter() - t0)
    return 0


def _run_hybrid(args) -> int:
    from ..core.volume import same_grid
    from ..io.formats import read_image
    from ..io.vertebrae import read_vertebrae
    from ..preprocess.transform import guess_modality
    from ..synth import save_phantom
    from ..synth.hybrid import HybridConfig, generate_hybrid

    if args.hybrid is None or args.vertebrae is None:
        raise UsageError("--hybrid and --vertebrae go together: a real scan and its vertebra map")
    image = read_image(args.hybrid)
    vmap = same_grid(image, read_vertebrae(args.vertebrae, args.vertebrae_convention), "vertebra map", "image")
    modality = args.modality or guess_modality(image)
    for k in range(args.count):
        with usage():
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
        note = (f"; canal size from published means (ring open or size out of range) at {', '.join(rough)}"
                if rough else "")
        log.info("wrote %s (hybrid %s, %s-%s, %.1f s)%s", out, modality, ph.verts[0].name, ph.verts[-1].name,
                 time.perf_counter() - t0, note)
    return 0


# ----------------------------------------------------------------------------------------------- info
def add_info(sub) -> None:
    p = sub.add_parser("info", help="print the geometry of an image")
    p.add_argument("image", type=Path, help="NIfTI, NRRD, MetaImage file or DICOM folder")
    p.add_argument("--series", help="DICOM SeriesInstanceUID")
    p.add_argument("--first-volume", action="store_true", help="a 4-D image (a time series, several echoes): use its "
                   "first volume (default: refuse it)")
    p.set_defaults(func=_run_info)


def _run_info(args) -> int:
    import numpy as np

    from ..io.formats import read_image

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
