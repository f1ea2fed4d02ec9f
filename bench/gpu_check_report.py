"""The ``gpu_check`` section of docs/benchmarks.md: what ``bench/gpu_check.sh`` ran on a GPU and how each step ended.

Usage: ``python bench/gpu_check_report.py --step NAME=CODE:SECONDS ... [--seconds S] [--dry-run]``
(``bench/gpu_check.sh`` calls it); ``--pending`` writes the section saying that no GPU figure is measured yet.
"""

from __future__ import annotations

import argparse

from common import git_rev, machine, update_doc

# step of bench/gpu_check.sh -> what it measures and where its figures go
STEPS = {
    "tests": ("device-touching tests on CUDA (tests/test_device_paths.py with its CUDA-only tests, "
              "tests/test_inference_eval.py)", "the step's log"),
    "infer_lumbar_1": ("`plexus infer` beside the bare network, lumbar CT, 1 case", "infer_speed_cuda"),
    "infer_lumbar_20": ("the same, 20 cases (one phantom, linked)", "infer_speed_cuda_20_cases_*"),
    "infer_full_spine_1": ("full-spine CT 512 x 512 x 600, 1 case (target: < 10 s end to end)", "infer_speed_full_spine_cuda"),
    "infer_full_spine_20": ("full-spine CT, 20 cases (target: < 5 s per case)", "infer_speed_full_spine_cuda_20_cases_*"),
    "train": ("training iterations/s, configs/phantom.yaml (target: >= 20x the 2-core CPU)", "train_speed_cuda"),
}

PENDING = """## GPU check (`bench/gpu_check.sh`)

**Not yet measured.** No GPU has been lent to this project yet, so there is no GPU figure in this file: the
sections `infer_speed_cuda*`, `infer_speed_full_spine_cuda*` and `train_speed_cuda` do not exist until
`bash bench/gpu_check.sh` runs on a machine with a CUDA device (under 8 minutes on one GPU, unattended). It
will then write them and replace this section with the GPU, the commit and how each step ended:

{steps}"""


def parse_step(text: str) -> tuple[str, str, float | None]:
    """``NAME=CODE:SECONDS`` (or ``NAME=dry``) -> (name, code, seconds); ValueError naming ``--step`` otherwise."""
    name, sep, rest = text.partition("=")
    if not sep or name not in STEPS:
        raise ValueError(f"--step: expected NAME=CODE:SECONDS with NAME one of {', '.join(STEPS)}, got {text!r}")
    code, _, secs = rest.partition(":")
    try:
        return name, code, float(secs) if secs else None
    except ValueError:
        raise ValueError(f"--step: seconds are not a number in {text!r}") from None


def step_list() -> str:
    return "\n".join(f"- `{name}`: {what} -> {where}" for name, (what, where) in STEPS.items())


def section(results: list[tuple[str, str, float | None]] | None, *, gpu: str = "", seconds: float | None = None,
            commit: str = "", host: str = "") -> str:
    """The section's text: pending (``results`` None) or one row per step of a run."""
    if results is None:
        return PENDING.format(steps=step_list())
    status = {"0": "passed", "124": "**past its time limit**", "137": "**killed at its time limit**",
              "skipped": "**skipped: the 8-minute deadline was reached**"}
    rows = ["| step | what | result | time (s) |", "|---|---|---|---|"]
    for name, code, secs in results:
        rows.append(f"| `{name}` | {STEPS[name][0]} | {status.get(code, f'**failed (exit {code})**')} | "
                    f"{'-' if secs is None else f'{secs:.0f}'} |")
    failed = sum(code != "0" for _, code, _ in results)
    missing = [n for n in STEPS if n not in {r[0] for r in results}]
    return (f"## GPU check (`bench/gpu_check.sh`)\n\n"
            f"Run at commit {commit} on {gpu} ({host}), {seconds:.0f} s in all; {len(results) - failed} of "
            f"{len(results)} steps passed{'; not run: ' + ', '.join(missing) if missing else ''}. "
            f"Figures in the sections each step names below; a failed step's section keeps its previous content.\n\n"
            + "\n".join(rows) + "\n\n" + step_list())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--step", action="append", default=[], help="NAME=CODE:SECONDS of one step (repeatable)")
    ap.add_argument("--seconds", type=float, default=0.0, help="the whole check's wall time")
    ap.add_argument("--pending", action="store_true", help="write the 'not yet measured' section")
    ap.add_argument("--dry-run", action="store_true", help="print the section instead of writing it")
    args = ap.parse_args()
    if args.pending or args.dry_run and all(s.endswith("=dry") for s in args.step):
        text = section(None)
    else:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
        text = section([parse_step(s) for s in args.step], gpu=gpu, seconds=args.seconds, commit=git_rev(),
                       host=machine())
    if args.dry_run:
        print(text)
    else:
        update_doc("gpu_check", text)


if __name__ == "__main__":
    main()
