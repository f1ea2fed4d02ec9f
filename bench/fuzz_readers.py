"""Fuzz the image readers with atheris (coverage-guided, libFuzzer) for a bounded time per format.

Every input is a mutation of a small valid file (NIfTI, gzipped NIfTI, NRRD, MetaImage, one slice of a 3-slice
DICOM series). ``read_image`` must either read it or raise ``InputError`` (the one-line error the CLI prints);
anything else (another exception, a hang over 20 s, a crash of the interpreter) is counted as a crash, and
the input is kept in ``bench/fuzz_crashes/`` (git-ignored) to reproduce it. Results go to docs/reliability.md.

    pip install atheris            # Linux x86_64 / aarch64 wheels
    python bench/fuzz_readers.py --seconds 120        # per format
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FORMATS = {"nifti": ".nii", "nifti-gz": ".nii.gz", "nrrd": ".nrrd", "metaimage": ".mha", "dicom": ".dcm"}
CRASHES = ROOT / "bench" / "fuzz_crashes"
MAX_VOXELS = 4_000_000  # the readers refuse larger declared images before allocating (as the CLI does at 1e9)


def _seeds(fmt: str, folder: Path) -> list[Path]:
    """Small valid files of ``fmt`` written by plexus itself (and a DICOM slice written with pydicom)."""
    import numpy as np

    from pipeline.io import Volume, write_image

    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "dicom":
        from tests.dicom_fixture import write_series

        write_series(folder / "series", [0.0, 1.0, 2.0], size=8)
        return sorted((folder / "series").glob("*.dcm"))
    out = []
    for k, (dtype, ax) in enumerate([(np.int16, "RAS"), (np.float32, "LPS"), (np.uint8, "PIR")]):
        arr = (np.arange(6 * 5 * 4).reshape(6, 5, 4) % 97).astype(dtype)
        aff = np.diag([0.8, 0.9, 1.5, 1.0])
        from pipeline.io import reorient

        out.append(write_image(reorient(Volume(arr, aff, {"warnings": []}), ax), folder / f"seed{k}{FORMATS[fmt]}"))
    return out


def worker(fmt: str, seconds: int, stats_path: Path) -> None:
    """Run atheris on one format (a child process: a hard crash or hang ends only this run)."""
    import atheris

    with atheris.instrument_imports(include=["pipeline", "nrrd", "nibabel", "pydicom", "SimpleITK"]):
        from pipeline.core.errors import InputError
        from pipeline.io import UNEXPECTED, read_image

    work = Path(tempfile.mkdtemp(prefix=f"fuzz-{fmt}-"))
    seeds = _seeds(fmt, work / "seeds")
    corpus = work / "corpus"
    corpus.mkdir()
    for p in seeds[:1] if fmt == "dicom" else seeds:  # DICOM: the middle slice is mutated, the others fixed
        shutil.copy(p, corpus / p.name)
    if fmt == "dicom":
        target = seeds[1]
    else:
        target = work / f"input{FORMATS[fmt]}"
    stats = {"format": fmt, "inputs": 0, "read_ok": 0, "input_errors": 0, "crashes": 0, "kinds": {},
             "safety_net": 0, "net_kinds": {}}
    last = [time.time()]

    def save() -> None:
        stats_path.write_text(json.dumps(stats, indent=1))

    def one_input(data: bytes) -> None:
        target.write_bytes(data)
        stats["inputs"] += 1
        try:
            read_image(target.parent if fmt == "dicom" else target, max_voxels=MAX_VOXELS)
            stats["read_ok"] += 1
        except InputError as exc:
            stats["input_errors"] += 1
            if UNEXPECTED in str(exc):  # refused only by the reader's safety net: a check worth adding
                stats["safety_net"] = stats.get("safety_net", 0) + 1
                kind = str(exc).split("(" + UNEXPECTED, 1)[1].split(":")[0]
                stats["net_kinds"][kind] = stats["net_kinds"].get(kind, 0) + 1
        except Exception as exc:  # anything else would reach the user as a traceback
            stats["crashes"] += 1
            tb = traceback.extract_tb(exc.__traceback__)[-1]
            kind = f"{type(exc).__name__} at {Path(tb.filename).name}:{tb.lineno}"
            if kind not in stats["kinds"]:
                CRASHES.mkdir(exist_ok=True)
                name = f"{fmt}-{len(stats['kinds'])}{FORMATS[fmt]}"
                (CRASHES / name).write_bytes(data)
                stats["kinds"][kind] = {"count": 0, "example": name, "message": str(exc)[:200]}
            stats["kinds"][kind]["count"] += 1
        if time.time() - last[0] > 2:
            last[0] = time.time()
            save()

    CRASHES.mkdir(exist_ok=True)
    atheris.Setup([sys.argv[0], f"-max_total_time={seconds}", "-timeout=20", "-rss_limit_mb=6144",
                   f"-artifact_prefix={CRASHES}/{fmt}-", "-print_final_stats=0", str(corpus)], one_input)
    try:
        atheris.Fuzz()
    finally:
        save()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=120, help="fuzzing time per format")
    ap.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--stats", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.seconds, args.stats)
    try:
        import atheris  # noqa: F401
    except ImportError:
        sys.exit("atheris is not installed: pip install atheris")
    results = []
    for fmt in args.formats:
        stats_path = Path(tempfile.mkstemp(suffix=".json")[1])
        t0, left = time.time(), args.seconds
        total = {"format": fmt, "inputs": 0, "read_ok": 0, "input_errors": 0, "crashes": 0, "kinds": {},
                 "safety_net": 0, "net_kinds": {}}
        while left > 2:  # libFuzzer stops at a hang or hard crash: record it and go on for the time left
            stats_path.write_text("{}")
            proc = subprocess.run([sys.executable, __file__, "--worker", fmt, "--seconds", str(int(left)),
                                   "--stats", str(stats_path)], cwd=ROOT, capture_output=True, text=True,
                                  env={**os.environ, "PYTHONWARNINGS": "ignore"})
            part = json.loads(stats_path.read_text() or "{}")
            for k in ("inputs", "read_ok", "input_errors", "crashes", "safety_net"):
                total[k] += part.get(k, 0)
            for kind, n in part.get("net_kinds", {}).items():
                total["net_kinds"][kind] = total["net_kinds"].get(kind, 0) + n
            for kind, v in part.get("kinds", {}).items():
                total["kinds"].setdefault(kind, {**v, "count": 0})["count"] += v["count"]
            if proc.returncode != 0:  # libFuzzer saw a hang, an out-of-memory or a hard crash: replay it alone
                made = sorted(CRASHES.glob(f"{fmt}-*-*"), key=lambda q: q.stat().st_mtime)
                example = made[-1] if made else None
                reason = _replay(fmt, example) if example else f"fuzzer exited {proc.returncode}"
                total["crashes"] += 1
                total["kinds"].setdefault(reason, {"count": 0, "example": example.name if example else "-",
                                                   "message": proc.stderr.strip().splitlines()[-1][:200]
                                                   if proc.stderr.strip() else ""})
                total["kinds"][reason]["count"] += 1
            left = args.seconds - (time.time() - t0)
        total["seconds"] = round(time.time() - t0)
        results.append(total)
        print(f"{fmt}: {total['inputs']} inputs in {total['seconds']} s, {total['read_ok']} read, "
              f"{total['input_errors']} refused with InputError ({total['safety_net']} only by the safety net), "
              f"{total['crashes']} crashes", flush=True)
        for kind, v in total["kinds"].items():
            print(f"   {v['count']:6d} x {kind}: {v['message'][:120]} (bench/fuzz_crashes/{v['example']})")
    _write_doc(results, args.seconds)


def _replay(fmt: str, example: Path) -> str:
    """Read a libFuzzer artifact in a fresh process (no instrumentation): what happens to a user."""
    with tempfile.TemporaryDirectory() as d:
        if fmt == "dicom":
            sys.path.insert(0, str(ROOT))
            from tests.dicom_fixture import write_series

            target = sorted(write_series(Path(d) / "s", [0.0, 1.0, 2.0], size=8).glob("*.dcm"))[1]
            arg = target.parent
        else:
            target = arg = Path(d) / f"input{FORMATS[fmt]}"
        shutil.copy(example, target)
        code = ("import sys; from pipeline.io import read_image; from pipeline.core.errors import InputError\n"
                f"try: read_image({str(arg)!r}, max_voxels={MAX_VOXELS})\nexcept InputError: pass")
        try:
            rc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, timeout=60).returncode
        except subprocess.TimeoutExpired:
            return "hang over 60 s on replay"
    return "fuzzer-only (replays cleanly: instrumentation or malloc limit)" if rc == 0 else f"replay exit code {rc}"


def _write_doc(results: list[dict], seconds: int) -> None:
    from common import git_rev, machine, update_doc

    lines = [f"`python bench/fuzz_readers.py --seconds {seconds}` (atheris, coverage-guided; commit {git_rev()}; "
             f"{machine()}). Seeds: small valid files written by plexus; inputs: their mutations.", "",
             "| format | inputs tried | read | refused (InputError) | of which by the safety net | crashes | kinds of crash |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        kinds = "; ".join(f"{k} x{v['count']}" for k, v in r["kinds"].items()) or "none"
        net = ", ".join(f"{k} x{n}" for k, n in r["net_kinds"].items())
        lines.append(f"| {r['format']} | {r['inputs']} | {r['read_ok']} | {r['input_errors']} | {r['safety_net']}"
                     f"{' (' + net + ')' if net else ''} | {r['crashes']} | {kinds} |")
    update_doc("fuzz", "\n".join(lines), doc=ROOT / "docs" / "reliability.md")


if __name__ == "__main__":
    main()
