"""bench/gpu_check.sh and its writers, on the CPU: the script's syntax and steps (``--dry-run``), the section it
writes into docs/benchmarks.md, and the CPU baseline ``bench/train_speed.py`` compares a GPU with."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))

import gpu_check_report as report  # noqa: E402
from train_speed import cpu_baseline  # noqa: E402

SCRIPT = ROOT / "bench" / "gpu_check.sh"


def test_the_script_parses_and_its_dry_run_lists_every_step_within_eight_minutes():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    doc = (ROOT / "docs" / "benchmarks.md").read_text()
    run = subprocess.run(["bash", str(SCRIPT), "--dry-run"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    steps = re.findall(r"^== (\w+) \(limit (\d+) s\): (.*)$", run.stdout, flags=re.M)
    assert [s[0] for s in steps] == list(report.STEPS)
    assert re.search(r"^DEADLINE=(\d+)$", SCRIPT.read_text(), flags=re.M).group(1) == "480"  # 8 minutes in all
    assert all(0 < int(s[1]) <= 480 for s in steps)
    benches = {name: cmd for name, _, cmd in steps if "bench/" in cmd}
    assert len(benches) == 5 and all("--device cuda" in cmd for cmd in benches.values())
    assert sum("--full-spine" in c for c in benches.values()) == 2
    assert sorted(re.search(r"--cases (\d+)", c).group(1) for c in benches.values() if "infer_speed" in c) == [
        "1", "1", "20", "20"]
    assert "**Not yet measured.**" in run.stdout
    assert (ROOT / "docs" / "benchmarks.md").read_text() == doc  # a dry run writes nothing
    bad = subprocess.run(["bash", str(SCRIPT), "--now"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_the_section_says_how_each_step_ended(tmp_path):
    results = [report.parse_step("tests=0:41"), report.parse_step("infer_lumbar_1=124:45"),
               report.parse_step("infer_lumbar_20=skipped:0")]
    text = report.section(results, gpu="NVIDIA H200", seconds=86, commit="abc1234", host="16 cores")
    assert "Run at commit abc1234 on NVIDIA H200" in text and "1 of 3 steps passed" in text
    assert "skipped: the 8-minute deadline" in text
    assert "| `infer_lumbar_1` |" in text and "past its time limit" in text and "| 45 |" in text
    assert "not run: infer_full_spine_1, infer_full_spine_20, train" in text
    with pytest.raises(ValueError, match="--step"):
        report.parse_step("warp=0:1")
    from common import update_doc

    doc = tmp_path / "benchmarks.md"
    update_doc("gpu_check", report.section(None), doc)
    assert "**Not yet measured.**" in doc.read_text() and "train_speed_cuda" in doc.read_text()


def test_train_speed_finds_the_cpu_figure_it_compares_a_gpu_with():
    doc = ("<!-- train_speed_auto:start -->\n## Training throughput\n\nCommand: `python bench/train_speed.py` "
           "(commit 840c110; AMD EPYC, 2 cores)\n\n| config | device | batch x patch | iterations/s | data-loading wait |"
           "\n|---|---|---|---|---|\n| phantom.yaml | auto | 2 x 64x64x64 | 3.32 | 1.1 % |\n"
           "<!-- train_speed_auto:end -->\n")
    assert cpu_baseline(doc, "phantom.yaml", "2 x 64x64x64") == (3.32, "840c110")
    assert cpu_baseline(doc, "phantom.yaml", "4 x 96x96x96") is None   # another batch: no comparison
    assert cpu_baseline("", "phantom.yaml", "2 x 64x64x64") is None


FAKE_PY = """#!/usr/bin/env bash
# stands in for the interpreter: records its arguments, fails the step named in FAIL_ON
echo "$*" >> "$CALLS"
[[ -n "${FAIL_ON:-}" && "$*" == *"$FAIL_ON"* ]] && exit 3
exit 0
"""


@pytest.mark.parametrize("fail_on, code", [("", 0), ("train_speed.py", 1)])
def test_a_run_records_every_step_and_counts_the_failed_ones(tmp_path, fail_on, code):
    """The non-dry path with a stand-in interpreter (no GPU, nothing measured): the CUDA check, each step under its
    limit, the report writer given every step's exit code; the exit code is the number of failed steps."""
    fake, calls = tmp_path / "python", tmp_path / "calls.txt"
    fake.write_text(FAKE_PY)
    fake.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "PY": str(fake), "CALLS": str(calls), "FAIL_ON": fail_on,
           "GPU_CHECK_LOG": str(tmp_path / "logs")}
    run = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == code, run.stdout + run.stderr
    lines = calls.read_text().splitlines()
    assert "torch.cuda.is_available()" in lines[0]
    assert [ln.split()[0] for ln in lines[1:7]] == ["-m"] + ["bench/infer_speed.py"] * 4 + ["bench/train_speed.py"]
    reported = re.findall(r"--step (\w+)=(\w+):\d+", lines[7])
    assert lines[7].startswith("bench/gpu_check_report.py --seconds")
    assert reported == [(n, "3" if n == "train" and fail_on else "0") for n in report.STEPS]
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == sorted(f"{n}.log" for n in report.STEPS)
