"""``python -m gen2 --out DIR --cases N --seed S`` (from bench/): N gen2 cases, CT and MR alternating."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gen2 import generate_case  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gen2", description=__doc__)
    ap.add_argument("--out", required=True, type=Path, help="folder that receives one sub-folder per case")
    ap.add_argument("--cases", type=int, default=4, help="number of cases (CT, MR, CT, ...)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the first case; case k gets seed + k")
    ap.add_argument("--region", choices=("cervical", "thoracic", "lumbar"), default=None,
                    help="force the region (default: drawn per case)")
    a = ap.parse_args(argv)
    if a.cases < 1:
        ap.error("--cases: at least 1")
    for k in range(a.cases):
        mod = "CT" if k % 2 == 0 else "MR"
        t0 = time.perf_counter()
        d = generate_case(a.seed + k, mod, a.out / f"gen2_{a.seed + k:06d}_{mod.lower()}", region=a.region)
        print(f"{d}  {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
