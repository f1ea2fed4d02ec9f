"""The CPU work around the network on a whole-body-sized CT: onto the model grid and back.

A synthetic CT of 512 x 512 x 600 voxels (0.7 x 0.7 x 1 mm, a body filling most of the field) is put on the model
grid (orientation, 0.8 mm resampling, intensity, crop to the body) and a two-class probability map of that grid is
mapped back onto the scan, (1) with MONAI's transforms (``Spacingd`` ... ``Invertd``, as training runs them) and
(2) with ``plexus``'s array path (``pipeline.preprocess.transform.preprocess`` / ``invert``, what ``plexus infer`` runs).
Each method runs in its own process, so that its peak memory is its own.

Usage: ``python bench/grid_speed.py [--shape 512 512 600] [--no-doc]``
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time

import numpy as np
from common import git_rev, machine, update_doc


def _scan(shape):
    from pipeline.io import Volume

    arr = np.full(shape, -1000, np.int16)
    x0, x1 = int(0.12 * shape[0]), int(0.88 * shape[0])
    arr[x0:x1, x0:x1, :] = 40
    arr[shape[0] // 2 - 20:shape[0] // 2 + 20, shape[1] // 2 - 20:shape[1] // 2 + 20, :] = 400  # a "spine"
    return Volume(arr, np.diag([0.7, 0.7, 1.0, 1.0]), {"modality": "CT"})


def _run(method: str, shape, queue) -> None:
    import torch

    from pipeline.preprocess.transform import PreprocessConfig, build_transform, invert, preprocess

    vol, cfg = _scan(shape), PreprocessConfig()
    t0 = time.perf_counter()
    if method == "monai":
        from monai.data import MetaTensor
        from monai.transforms import Invertd

        transform = build_transform(cfg)
        image = transform({"image": MetaTensor(torch.from_numpy(vol.array.astype(np.float32)[None]),
                                               affine=torch.as_tensor(vol.affine)), "modality": "CT"})["image"]
        t1 = time.perf_counter()
        prob = torch.full((2, *image.shape[1:]), 0.25)
        Invertd(keys="pred", transform=transform, orig_keys="image", nearest_interp=False)(
            {"pred": MetaTensor(prob), "image": image})
    else:
        prep = preprocess(vol, cfg, "CT")
        t1 = time.perf_counter()
        image = prep.image
        invert(prep, torch.full((2, *prep.image.shape[1:]), 0.25), nearest=False)
    t2 = time.perf_counter()
    queue.put((tuple(image.shape[1:]), t1 - t0, t2 - t1, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=(512, 512, 600))
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    ctx = multiprocessing.get_context("spawn")
    rows = []
    for method, label in (("monai", "MONAI transforms (`Spacingd`, `Invertd`)"), ("arrays", "plexus array path")):
        queue = ctx.Queue()
        proc = ctx.Process(target=_run, args=(method, tuple(args.shape), queue))
        proc.start()
        grid, fwd, back, rss = queue.get()
        proc.join()
        rows.append(f"| {label} | {'x'.join(map(str, grid))} | {fwd:.1f} | {back:.1f} | {rss:.1f} |")
        print(rows[-1])
    table = ("| method | model grid | onto the model grid (s) | two classes back onto the scan (s) | peak memory (GiB) |\n"
             "|---|---|---|---|---|\n" + "\n".join(rows))
    if not args.no_doc:
        update_doc("grid_speed", f"""## Onto the model grid and back on a whole-body-sized CT (`bench/grid_speed.py`)

Command: `python bench/grid_speed.py` (commit {git_rev()}; {machine()}). A synthetic CT of
{' x '.join(map(str, args.shape))} voxels at 0.7 x 0.7 x 1 mm; orientation, resampling to 0.8 mm, intensity and crop,
then a two-class probability map back onto the scan (what `plexus infer` resamples: the background is what the
other classes leave). Each method in its own process; peak memory is the process's maximum resident size.

{table}
""")


if __name__ == "__main__":
    main()
