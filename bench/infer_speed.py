"""End-to-end speed of ``plexus infer`` beside the bare network on the same input.

A lumbar CT phantom of about 140 x 140 x 270 voxels (and optionally more cases) is run (1) through the bare
network: preprocessing done beforehand, only MONAI sliding-window inference timed (two passes when the model
declares flip test-time augmentation, as ``plexus infer`` then runs); (2) through the whole
``plexus infer`` (read, preprocess, network, inverse resampling, measurement, every export, QC picture),
in one run on the same machine. The ratio of the two is the pipeline's overhead (target: <= 1.3x on GPU where
the network dominates; on 2 CPU cores reported as measured). Paired repeats (``--repeats``) give medians.

``--full-spine``: the issue's GPU case instead, a CT of 512 x 512 x 600 voxels (0.7 x 0.7 x 1.25 mm, C1 to the
sacrum inside a body of 320 x 240 mm); generated once (about a minute, 5 GB) and kept in ``--cache``; the
``--cases`` case files are links to that one scan (the same input each time, read and decompressed each time).

Usage: ``python bench/infer_speed.py [--model models/plexus_phantom] [--device auto] [--cases 1] [--repeats 3]
[--workers N] [--same-case] [--full-spine [--cache DIR]] [--no-doc]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import ROOT, git_rev, machine, update_doc

from pipeline.batch.local import run_batch
from pipeline.batch.options import InferOptions, default_workers
from pipeline.inference.model import load_model
from pipeline.inference.predictor import amp_dtype, pick_device, stitch_device
from pipeline.inference.segmentation import prepare_in_canal
from pipeline.io import Volume, read_image, write_image
from pipeline.spine import find_canal
from pipeline.synth import PhantomConfig, generate_phantom


def bare_network(prep_image, model, meta, device) -> float:
    """Seconds of MONAI sliding-window inference alone on a preprocessed image, as ``plexus infer`` runs it
    (two passes when the model declares flip test-time augmentation)."""
    from monai.inferers import sliding_window_inference

    x = prep_image[None].float().to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    passes = [x, torch.flip(x, dims=[2])] if meta["inference"].get("tta") else [x]
    amp = amp_dtype(device)  # as predict()
    with torch.no_grad(), torch.autocast(device_type=device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
        for inp in passes:
            sliding_window_inference(inp, tuple(meta["inference"]["patch_size"]), 4, model,
                                     overlap=meta["inference"]["overlap"], mode="gaussian", sw_device=device,
                                     device=stitch_device(device, tuple(x.shape[2:]), 3))  # as segment() stitches
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def canal_crop(image, meta):
    """What ``plexus infer`` gives the network now: the box around the canal stage 1 finds, on the model grid."""
    return prepare_in_canal(image, find_canal(image, "CT"), meta, modality="CT").prepared.image


def full_spine_scan(path: Path, *, shape=(512, 512, 600), spacing=(0.7, 0.7, 1.25), seed: int = 710000) -> Path:
    """A whole-spine CT of ``shape`` voxels written to ``path`` (kept: generating it takes about a minute).

    The spine phantom (C1 to the sacrum, its usual field of view around the canal, its own skin behind the back)
    is set into a body of 320 x 240 mm (soft tissue, 42 HU, noise 20 HU) in air, with its back on the body's
    back, the sacrum at the bottom of the field and the rest of the slices pelvis soft tissue."""
    if path.exists():
        return path
    ph = generate_phantom(PhantomConfig(levels=("C1", "S1"), spacing=spacing, seed=seed, sacrum_mm=30.0))
    block = ph.image.array
    if any(b > s for b, s in zip(block.shape, shape)):
        raise ValueError(f"shape: the spine phantom {block.shape} does not fit in {shape}")
    rng = np.random.default_rng(seed)
    i, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    x0, y0 = (shape[0] - block.shape[0]) // 2, int(0.12 * shape[1])       # the block's back 12 % into the field
    a, b = 160.0 / spacing[0], 120.0 / spacing[1]                          # body semi-axes, voxels
    yc = y0 + 20 + b                                                       # the body's back on the phantom's skin
    body = ((i - shape[0] / 2) / a) ** 2 + ((j - yc) / b) ** 2 <= 1.0
    arr = np.full(shape, -1000, np.int16)
    z0 = shape[2] - block.shape[2]                                         # spine at the top, pelvis below
    for k in range(shape[2]):
        sl = np.where(body, rng.normal(42.0, 20.0, shape[:2]), -1000.0).astype(np.int16)
        if k >= z0:
            sl[x0:x0 + block.shape[0], y0:y0 + block.shape[1]] = block[:, :, k - z0]
        arr[:, :, k] = sl
    aff = ph.image.affine.copy()
    aff[:3, 3] = ph.image.affine[:3, 3] - ph.image.affine[:3, :3] @ np.array([x0, y0, z0])
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_image(Volume(arr, aff, {"modality": "CT"}), path)


def _link(src: Path, dst: Path) -> Path:
    """``dst`` as a hard link to ``src`` (a symbolic link across file systems)."""
    try:
        os.link(src, dst)
    except OSError:  # another file system
        os.symlink(src.resolve(), dst)
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "plexus_phantom")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--cases", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="paired runs (bare network, then plexus infer); medians")
    ap.add_argument("--workers", type=int, help="measurement worker processes (default: plexus infer's, 0 on CPU)")
    ap.add_argument("--full-spine", action="store_true", help="the 512 x 512 x 600 whole-spine CT instead")
    ap.add_argument("--cache", type=Path, default=ROOT / "bench_output", help="where the full-spine scan is kept")
    ap.add_argument("--same-case", action="store_true", help="lumbar: the --cases files are links to one phantom "
                    "(read each time; spares generating one per case, as --full-spine does)")
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    if args.cases < 1 or args.repeats < 1:
        ap.error("--cases and --repeats: expected at least 1")
    device = pick_device(args.device)
    model, meta = load_model(args.model, device)
    with tempfile.TemporaryDirectory() as tmp:
        files, preps = [], []  # preps: the distinct inputs (the bare network runs on each)
        if args.full_spine:
            scan = full_spine_scan(args.cache / "full_spine_ct_512x512x600.nii.gz")
            for k in range(args.cases):
                files.append(_link(scan, Path(tmp) / f"full_spine_{k}.nii.gz"))
            image = read_image(scan)
            preps.append(canal_crop(image, meta))
            what = f"full-spine CT phantom {'x'.join(map(str, image.shape))} at 0.7 x 0.7 x 1.25 mm"
            del image
        else:
            for k in range(args.cases):
                if args.same_case and k:
                    files.append(_link(files[0], Path(tmp) / f"lumbar_{k}.nii.gz"))
                    continue
                ph = generate_phantom(PhantomConfig(levels=("L2", "S1"), spacing=(0.8, 0.8, 0.8), seed=700000 + k,
                                                    fov_lr=55, fov_back=50, fov_front=60))
                files.append(write_image(ph.image, Path(tmp) / f"lumbar_{k}.nii.gz"))
                preps.append(canal_crop(ph.image, meta))
            what = f"lumbar CT phantom {'x'.join(map(str, ph.image.shape))} at 0.8 mm{' (one phantom, linked)' if args.same_case else ''}"
        bare_network(preps[0], model, meta, device)  # warm-up: first-call allocations are no part of either figure
        options = InferOptions(model=args.model, device=args.device, overwrite=True, workers=args.workers)
        nets, totals, ratios, stage_rows = [], [], [], []
        peak = 0.0 if device.type == "cuda" else float("nan")
        for r in range(args.repeats):  # each repeat: the bare network on every case, then the whole batch
            net = sum(bare_network(x, model, meta, device) for x in preps) / len(preps)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            run_batch([str(f) for f in files], Path(tmp) / "out", options)
            total = (time.perf_counter() - t0) / args.cases
            if device.type == "cuda":
                peak = max(peak, torch.cuda.max_memory_allocated() / 2**30)
            stages = json.loads((Path(tmp) / "out" / "run.json").read_text())["timings"]
            stage_rows.append({k: sum(t.get(k, 0.0) for t in stages.values()) / max(len(stages), 1)
                               for k in ("read_s", "stage1_s", "network_s", "postprocess_s")})
            nets.append(net)
            totals.append(total)
            ratios.append(total / net)
            print(f"repeat {r + 1}: bare network {net:.2f} s, end to end {total:.2f} s/case, ratio {total / net:.2f}x")
    med = statistics.median
    mean = {k: med(row[k] for row in stage_rows) for k in stage_rows[0]}
    workers = args.workers if args.workers is not None else default_workers(device)
    table = (f"| input | device | workers | bare network (s) | plexus infer end to end (s/case) | ratio | "
             f"read+preprocess wait / of which stage 1 / network+inverse / measure+export (s/case) | peak GPU memory |\n"
             f"|---|---|---|---|---|---|---|---|\n| {what}, {args.cases} case(s) | "
             f"{device} | {workers} | {med(nets):.2f} | {med(totals):.2f} | {med(ratios):.2f}x "
             f"({min(ratios):.2f}-{max(ratios):.2f}) | "
             f"{mean['read_s']:.2f} / {mean['stage1_s']:.2f} / {mean['network_s']:.2f} / {mean['postprocess_s']:.2f} | "
             f"{'-' if peak != peak else f'{peak:.2f} GiB'} |")
    print(table)
    if not args.no_doc:
        key = (f"infer_speed_{'full_spine_' if args.full_spine else ''}{device.type}"
               + ("" if args.cases == 1 and args.workers is None else f"_{args.cases}_cases_{workers}_workers"))
        target = ("Targets on one GPU: one such case end to end in under 10 s, a batch of 20 at under 5 s per case, "
                  "end to end within 1.2x of the bare network."
                  if args.full_spine else
                  "Target on 2 CPU cores: a lumbar CT of about 140 x 140 x 270 voxels in under 60 s."
                  if device.type == "cpu" else "Target on one GPU: end to end within 1.2x of the bare network.")
        update_doc(key, f"""## Inference speed on {device.type.upper()}{', full-spine CT' if args.full_spine else ''}, {args.cases} case(s), {workers} worker(s) (`bench/infer_speed.py`)

Command: `python bench/infer_speed.py --device {args.device} --cases {args.cases} --repeats {args.repeats}{'' if args.workers is None else f' --workers {args.workers}'}{' --full-spine' if args.full_spine else ''}{' --same-case' if args.same_case else ''}` (commit {git_rev()}; {machine()}{'; GPU ' + torch.cuda.get_device_name(device) if device.type == 'cuda' else ''}).
Bare network = MONAI sliding-window inference on what `plexus infer` gives the network (canal first: the box
around the canal stage 1 finds, grown by 25 mm, on the model grid; both passes of the flip TTA the model
declares); end to end = the whole `plexus infer` run divided by the cases (model loading, read, preprocess,
network, inverse resampling, measurement, every export and QC picture, summary and report), same inputs, same
process, after one warm-up pass. Each of {args.repeats} repeats times the bare network, then the batch; the table
gives medians, and the ratio's range over the repeats (a shared 2-core machine varies by about 20 % from run to run).
{target}

{table}
""")


if __name__ == "__main__":
    main()
