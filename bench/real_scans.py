"""Run ``plexus infer`` on every real public scan of ../shared/data and report what it found (docs/real_data.md).

For each scan: the input geometry, the modality found, where the levels came from, the vertebrae on the spine
axis, the plexus volume and centreline length the shipped model found, the warnings, and the QC picture
(copied to docs/images/real_<case>.png). The scans are those of tests/test_real_data.py.

Usage: ``python bench/real_scans.py [--shared ../shared/data] [--no-doc]``
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
from pathlib import Path

from common import ROOT, git_rev, machine, update_doc

from pipeline.cli import main as plexus
from pipeline.io import read_image

sys.path.insert(0, str(ROOT))
from tests.test_real_data import CASES  # noqa: E402  (one list of real scans for the tests and this report)

DOC = ROOT / "docs" / "real_data.md"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "plexus",
                    help="model folder (default: the shipped model); another one gets its own section and pictures")
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    shipped = args.model.resolve() == (ROOT / "models" / "plexus").resolve()
    suffix = "" if shipped else f"_{args.model.name}"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        listing = tmp / "cases.csv"
        with open(listing, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["case_id", "image", "vertebrae"])
            for cid, (img, vert, _) in CASES.items():
                w.writerow([cid, args.shared / img, args.shared / vert if vert else ""])
        out = tmp / "out"
        code = plexus(["-q", "infer", str(listing), "-o", str(out), "--model", str(args.model)])
        run = json.loads((out / "run.json").read_text())
        rows = []
        for cid, (img, vert, _) in CASES.items():
            if not (out / cid / "measurements.json").exists():
                rows.append(f"| {cid} | `{img}` | failed: {next(f['error'] for f in run['failures'] if f['case_id'] == cid)} |"
                            " | | | | |")
                continue
            m = json.loads((out / cid / "measurements.json").read_text())
            vol = read_image(args.shared / img)
            sp = "x".join(f"{s:.2f}".rstrip("0").rstrip(".") for s in vol.spacing)
            axis = " < ".join(m.get("vertebra_axis_mm", {})) or "-"
            t = run["timings"].get(cid, {})
            warn = [w.split(": ", 1)[-1] for w in m["warnings"] if "no measurable centreline" not in w]
            rows.append(f"| {cid} | `{img}`{' + `' + vert + '`' if vert else ''} | {'x'.join(map(str, vol.shape))}, "
                        f"{sp} mm, {''.join(vol.axcodes)} | {m['modality']} | {m['levels_source']}: {axis} | "
                        f"{m['total_volume_mm3'] / 1000:.1f} ml, {m['centreline_length_mm'] / 10:.0f} cm | "
                        f"{t.get('total_s', 0):.0f} s | {'; '.join(warn[:2]) or '-'} |")
            (ROOT / "docs" / "images").mkdir(exist_ok=True)
            shutil.copy(out / cid / "qc.png", ROOT / "docs" / "images" / f"real_{cid}{suffix}.png")
    text = "\n".join([
        f"`python bench/real_scans.py{'' if shipped else ' --model models/' + args.model.name}` (commit {git_rev()}; "
        f"{machine()}): `plexus infer` with {'the shipped model' if shipped else args.model.name} and its defaults; "
        f"exit code {code}.", "",
        "| case | input (+ vertebra map) | grid | modality found | levels | plexus found (volume, centreline) | "
        "time | warnings |", "|---|---|---|---|---|---|---|---|", *rows, "",
        *[f"![{cid}](images/real_{cid}{suffix}.png)" for cid in CASES
          if (ROOT / "docs" / "images" / f"real_{cid}{suffix}.png").exists()],
    ])
    print(text)
    if not args.no_doc:
        update_doc(f"real_scans{suffix}", text, doc=DOC)


if __name__ == "__main__":
    main()
