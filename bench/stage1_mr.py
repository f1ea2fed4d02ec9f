"""Stage 1 on MR: how often the canal is found, and how far its centre lies from the truth, per source.

Sources (tuning sources only; bench/gen2 is kept out unless ``--gen2`` asks for it once):

1. **Real MR scans** of ``configs/real_scans.yaml``: the centre found on each axial slice against the centre of the
   reference label there (:func:`pipeline.evaluation.canal.canal_centre_errors`; a missed slice counts), and the
   brain MR, which must stay ``no spine in view``.
2. **Our MR phantoms** (``lumbar-mr``: contrast-enhanced fat-suppressed T1, CSF dark, stored PIR; ``cervical-mr``;
   seeds 1000+): the centre found against the phantom's canal axis.
3. **MR hybrids** of the registry scans (seeds 60000+): veins drawn in and beside the real sac (bright, dark or
   intermediate, :mod:`pipeline.synth.hybrid`); the truth is the hybrid's canal axis. For a scan with a reference
   label and no vertebra map the hybrid's canal is the reference's centre line (not stage 1: the truth must not
   move with the code under test); ``sct_t2s`` has neither, so its canal is stage 1's on the real scan.

A case is *found* when stage 1 says ``ok`` and its median centre error is under 5 mm (a chain on another tube
counts as missed). Usage: ``python bench/stage1_mr.py [--phantoms 4] [--seeds 4] [--gen2] [--no-doc]``
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from common import ROOT, git_rev, machine, update_doc

from pipeline.evaluation.canal import canal_centre_errors
from pipeline.io import Volume, read_image
from pipeline.spine import NO_SPINE, CanalResult, find_canal
from pipeline.synth import generate_phantom, preset_config
from pipeline.synth.hybrid import generate_hybrid_from_scan, scan_canal

REGISTRY = ROOT / "configs" / "real_scans.yaml"

HYBRID_SCANS = ("sct_t1", "sct_t2", "sct_t2s", "tptbox_t2", "totalseg_mr")
BRAIN = ROOT.parent / "shared" / "data" / "dicom_dicom2nifti_mr_sagittal" / "001_ground_truth.nii.gz"
CACHE = Path(tempfile.gettempdir()) / "plexus_stage1_mr"
FOUND_MM = 5.0


def _registry() -> dict:
    """The registry's scans by id (entries of :mod:`pipeline.io.registry`, or the older dicts)."""
    try:
        from pipeline.io.registry import read_registry  # noqa: PLC0415

        return {e.id: e for e in read_registry(REGISTRY)}
    except ImportError:
        from pipeline.synth.hybrid import read_registry  # noqa: PLC0415

        return read_registry(REGISTRY)


def _get(e, key):
    v = e.get(key) if isinstance(e, dict) else getattr(e, key, None)
    if key == "canal_ref" and v is not None and not isinstance(v, dict):
        v = {"path": v.path, "ids": list(v.ids)}
    return v


def _reference_only(image, modality):
    """A stand-in for stage 1 that finds nothing: the hybrid's canal is then the registry's reference label."""
    return CanalResult(NO_SPINE, "reference label used as the hybrid's canal", modality=modality)


def _cached(name: str, make):
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"{name}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    obj = make()
    path.write_bytes(pickle.dumps(obj))
    return obj


def phantom_cases(n: int) -> list[tuple[str, Volume, object]]:
    out = []
    for k in range(n):
        for preset, seed0 in (("lumbar-mr", 1000), ("cervical-mr", 2000)):
            if preset == "cervical-mr" and k >= max(1, n // 2):
                continue
            seed = seed0 + k
            sp = [(0.8, 0.8, 1.2), (1.2, 1.2, 3.0), (1.0, 1.0, 1.0), (0.9, 0.9, 4.0)][k % 4]
            orient = ["PIR", "RAS", "LPS", "PSR"][k % 4]
            cfg = preset_config(preset, seed=seed, spacing=sp, orientation=orient)

            def make(cfg=cfg):
                ph = generate_phantom(cfg)
                return ph.image, ph.axis
            img, axis = _cached(f"{preset}_{seed}_{sp[2]}_{orient}", make)
            out.append((f"{preset} {seed} ({orient}, {sp[0]:g}x{sp[2]:g} mm)", img, axis))
    return out


def hybrid_cases(seeds: int) -> list[tuple[str, Volume, object]]:
    reg = _registry()
    out = []
    for sid in HYBRID_SCANS:
        e = reg[sid]
        finder = _reference_only if (_get(e, "canal_ref") and not _get(e, "vertebrae")) else find_canal
        scan = None
        for seed in range(60000, 60000 + seeds):
            def make(e=e, seed=seed, finder=finder):
                nonlocal scan
                scan = scan or scan_canal(e, finder)
                ph = generate_hybrid_from_scan(scan, seed)
                return ph.image, ph.axis, ph.info.get("vein_polarity", "bright")
            img, axis, pol = _cached(f"hybrid_{sid}_{seed}", make)
            out.append((f"{sid} {seed} ({pol} veins)", img, axis))
    return out


def axis_errors(res, axis) -> np.ndarray:
    """Distance (mm) of each centreline point from the true canal axis, within the axis's span."""
    if not res.found:
        return np.full(1, np.inf)
    u, v, s = axis.to_straight(res.centreline)
    inside = (s >= axis.s.min()) & (s <= axis.s.max())
    return np.hypot(u, v)[inside] if inside.any() else np.full(1, np.inf)


def run_cases(cases) -> list[dict]:
    rows = []
    for name, img, axis in cases:
        t = time.perf_counter()
        res = find_canal(img, "MR")
        dt = time.perf_counter() - t
        err = axis_errors(res, axis)
        med = float(np.median(err))
        rows.append({"name": name, "status": res.status, "median": med, "found": bool(med <= FOUND_MM), "s": dt,
                     "reason": res.reason})
    return rows


def real_rows() -> list[dict]:
    reg = _registry()
    rows = []
    for sid in ("totalseg_mr", "tptbox_t2", "sct_t2", "sct_t1", "sct_t2s"):
        e = reg[sid]
        vol = read_image(_get(e, "image"))
        t = time.perf_counter()
        res = find_canal(vol, "MR")
        dt = time.perf_counter() - t
        row = {"name": sid, "status": res.status, "s": dt, "reason": res.reason}
        ref_entry = _get(e, "canal_ref")
        if ref_entry and res.found:
            r = nib.load(ref_entry["path"])
            ref = Volume(np.isin(np.asarray(r.dataobj), ref_entry["ids"]).astype(np.uint8), r.affine)
            errs = canal_centre_errors(res.centreline, ref)
            fin = errs[np.isfinite(errs)]
            row.update(slices=f"{np.isfinite(errs).mean() * 100:.0f} %",
                       median=float(np.median(fin)) if fin.size else np.inf,
                       p90=float(np.percentile(fin, 90)) if fin.size else np.inf)
        rows.append(row)
    if BRAIN.exists():
        res = find_canal(read_image(BRAIN), "MR")
        rows.append({"name": "brain MR (must be no spine)", "status": res.status, "s": res.seconds,
                     "reason": res.reason})
    return rows


def gen2_rows(n: int) -> list[dict]:
    """bench/gen2 MR phantoms, seeds 50000+ (held out: run once, never tuned on), against their canal region."""
    from gen2 import build_case  # noqa: PLC0415

    rows = []
    for k in range(n):
        case = build_case(50000 + k, "MR", None)
        ref = Volume(case.extras["canal_region"].astype(np.uint8), case.extras["affine_ras"])
        t = time.perf_counter()
        res = find_canal(case.image, "MR")
        dt = time.perf_counter() - t
        errs = canal_centre_errors(res.centreline, ref) if res.found else np.full(1, np.inf)
        med = float(np.median(errs))
        rows.append({"name": f"gen2 MR {50000 + k} ({case.meta.get('region')})", "status": res.status,
                     "median": med, "found": bool(med <= FOUND_MM), "s": dt, "reason": res.reason})
    return rows


def summarise(rows: list[dict]) -> str:
    found = [r for r in rows if r["found"]]
    med = np.median([r["median"] for r in found]) if found else float("nan")
    return f"{len(found)}/{len(rows)} | {med:.1f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phantoms", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--gen2", type=int, default=0, help="also run this many bench/gen2 MR phantoms (held out)")
    ap.add_argument("--only", default="real,phantoms,hybrids", help="comma-separated subset of real,phantoms,hybrids")
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args(argv)
    lines = []
    if "real" in args.only:
        lines += ["| real MR scan | status | reference slices found | centre error median / 90th (mm) | s |",
                  "|---|---|---|---|---|"]
        for r in real_rows():
            err = f"{r['median']:.1f} / {r['p90']:.1f}" if "median" in r else "-"
            lines.append(f"| {r['name']} | {r['status']} | {r.get('slices', '-')} | {err} | {r['s']:.2f} |")
            print(lines[-1], "" if r["status"] == "ok" else r["reason"], flush=True)
        lines.append("")
    groups = []
    if "phantoms" in args.only:
        groups.append(("our MR phantoms", run_cases(phantom_cases(args.phantoms))))
    if "hybrids" in args.only:
        rows = run_cases(hybrid_cases(args.seeds))
        for sid in HYBRID_SCANS:
            groups.append((f"hybrids of {sid}", [r for r in rows if r["name"].startswith(sid + " ")]))
    if args.gen2:  # only when asked: held out, never part of the tuning runs
        groups.append(("bench/gen2 MR (held out)", gen2_rows(args.gen2)))
    if groups:
        lines += ["| source | found (median error < 5 mm) | median centre error of those found (mm) | slowest (s) |",
                  "|---|---|---|---|"]
    for title, rows in groups:
        for r in rows:
            print(f"  {r['name']}: {r['status']} median {r['median']:.1f} mm {r['s']:.2f} s"
                  + ("" if r["status"] == "ok" else f" ({r['reason']})"), flush=True)
        lines.append(f"| {title} | {summarise(rows)} | {max(r['s'] for r in rows):.2f} |")
        print(lines[-1], flush=True)
    text = ("## Stage 1 on MR\n\n" + __doc__.split("\n\n")[0] + "\n\n" + "\n".join(lines)
            + f"\n\n`python bench/stage1_mr.py --phantoms {args.phantoms} --seeds {args.seeds} --gen2 {args.gen2}`; "
            f"{machine()}, "
            f"commit {git_rev()}.")
    if not args.no_doc:
        update_doc("stage1-mr", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
