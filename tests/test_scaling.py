"""Beyond one process: job-array shards, ``plexus summarize``, DDP training (torchrun, gloo), Ray batches."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from pipeline.batch.cases import CaseInput, select_shard
from pipeline.cli import main
from pipeline.inference.model import load_model
from pipeline.io import read_image
from tests.conftest import ROOT


def test_shards_cover_every_case_exactly_once_whatever_the_order():
    cases = [CaseInput(f"c{k:02d}", f"/x/c{k:02d}.nii.gz") for k in range(11)]
    for n in (1, 2, 3, 5, 11, 13):
        parts = [select_shard(cases, k, n) for k in range(1, n + 1)]
        ids = [c.case_id for part in parts for c in part]
        assert sorted(ids) == [c.case_id for c in cases] and len(ids) == len(set(ids))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
        again = [select_shard(list(reversed(cases)), k, n) for k in range(1, n + 1)]
        assert [[c.case_id for c in p] for p in parts] == [[c.case_id for c in p] for p in again]
    with pytest.raises(ValueError, match="--shard"):
        select_shard(cases, 4, 3)


def test_three_shards_then_summarize_equal_one_run(scans, smoke_model_dir, tmp_path, capsys):
    inputs = [str(scans / f"case_{ax}.nii.gz") for ax in ("RAS", "LPS", "PIR")] + [str(scans / "broken.nii.gz")]
    model = ["--model", str(smoke_model_dir)]
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    assert main(["-q", "infer", *inputs, "-o", str(single), *model]) == 1          # broken.nii.gz fails
    codes = [main(["-q", "infer", *inputs, "-o", str(sharded), "--shard", f"{k}/3", *model]) for k in (1, 2, 3)]
    assert sorted(codes) == [0, 0, 1]
    assert not (sharded / "summary.csv").exists()     # shards leave the summary to plexus summarize
    assert sorted(p.name for p in sharded.glob("run.shard-*.json")) == [f"run.shard-{k}-of-3.json" for k in (1, 2, 3)]
    capsys.readouterr()
    assert main(["summarize", str(sharded)]) == 1     # one case failed: summarize says so too
    assert "3 finished cases, 1 failed" in capsys.readouterr().out
    assert (sharded / "summary.csv").read_text() == (single / "summary.csv").read_text()
    a, b = (json.loads((d / "run.json").read_text()) for d in (single, sharded))
    assert set(a["timings"]) == set(b["timings"]) == {"case_RAS", "case_LPS", "case_PIR"}
    assert [f["case_id"] for f in a["failures"]] == [f["case_id"] for f in b["failures"]] == ["broken"]
    assert b["n_inputs"] == 4 and (sharded / "report.html").exists()


def test_summarize_of_a_folder_without_runs_is_a_clear_error(tmp_path, capsys):
    assert main(["summarize", str(tmp_path)]) == 2
    assert "not a plexus infer output folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["infer", "x.nii.gz", "-o", str(tmp_path), "--shard", "0/3"])
    assert info.value.code == 2


def _train_cli(tmp_path, name, *extra):
    return [sys.executable, "-m", "pipeline.cli", "-q", "train", "--config", str(ROOT / "configs" / "smoke.yaml"),
            "--override", f"output.run_dir={tmp_path / name}", "--override", f"output.model_dir={tmp_path / name}_model",
            "--override", "train.iterations=12", "--override", "train.val_every=6", *extra]


def _tail(stderr: str) -> str:
    """What every rank printed before failing, without progress bars and warnings (torchrun's summary hides it)."""
    lines = [ln for ln in stderr.splitlines() if "step/s" not in ln and "case/s" not in ln and "Warning" not in ln]
    return "\n".join(lines)[-6000:]


def _last_metrics(run) -> dict:
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    return {k: float(v) for k, v in rows[-1].items() if k.startswith("val_") and v}


def test_ddp_two_gloo_processes_match_one_process_and_resume(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run(_train_cli(tmp_path, "one"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, _tail(one.stderr)
    first = subprocess.run(_train_cli(tmp_path, "ddp", "--nproc-per-node", "2", "--stop-after", "6"), cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, _tail(first.stderr)
    assert torch.load(tmp_path / "ddp" / "last.pt", weights_only=False)["state"]["step"] == 6
    second = subprocess.run(_train_cli(tmp_path, "ddp", "--nproc-per-node", "2", "--resume"), cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, _tail(second.stderr)
    a, b = _last_metrics(tmp_path / "one"), _last_metrics(tmp_path / "ddp")
    assert set(a) == set(b) and all(abs(a[k] - b[k]) < 0.05 for k in ("val_dice", "val_dice_bone")), (a, b)
    wa = torch.load(tmp_path / "one" / "last.pt", weights_only=False)["model"]
    wb = torch.load(tmp_path / "ddp" / "last.pt", weights_only=False)["model"]
    assert list(wa) == list(wb)  # rank 0 saved the bare network, not DDP's "module." wrapper
    # the model folder written by rank 0 loads and runs in a single process
    model, meta = load_model(tmp_path / "ddp_model")
    lines = (tmp_path / "ddp" / "metrics.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in lines[1:]] == list(range(1, 13))  # one writer, no duplicated steps
    assert meta["training"]["steps"] in (6, 12) and sum(p.numel() for p in model.parameters()) > 0


# ---------------------------------------------------------------------------------------------------- Ray
def _ray():
    return pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[distributed]'; the CI does)")


def test_ray_executor_gives_the_local_outputs(scans, smoke_model_dir, tmp_path):
    _ray()
    inputs = [str(scans / f"case_{ax}.nii.gz") for ax in ("RAS", "LPS", "PIR")] + [str(scans / "broken.nii.gz")]
    model = ["--model", str(smoke_model_dir)]
    assert main(["-q", "infer", *inputs, "-o", str(tmp_path / "local"), *model]) == 1
    assert main(["-q", "infer", *inputs, "-o", str(tmp_path / "ray"), "--executor", "ray", "--ray-cpus", "2",
                 *model]) == 1
    for case in ("case_RAS", "case_LPS", "case_PIR"):
        for name in ("calibre.csv", "centerlines.json"):
            assert (tmp_path / "local" / case / name).read_text() == (tmp_path / "ray" / case / name).read_text()
        a, b = (read_image(tmp_path / d / case / "segmentation.nii.gz") for d in ("local", "ray"))
        assert np.array_equal(a.array, b.array) and np.allclose(a.affine, b.affine)
    assert (tmp_path / "local" / "summary.csv").read_text() == (tmp_path / "ray" / "summary.csv").read_text()
    run = json.loads((tmp_path / "ray" / "run.json").read_text())
    assert [f["case_id"] for f in run["failures"]] == ["broken"] and "truncated or corrupt" in run["failures"][0]["error"]
    assert set(run["timings"]) == {"case_RAS", "case_LPS", "case_PIR"}


def test_ray_worker_killed_mid_batch_loses_no_case(scans, smoke_model_dir, tmp_path):
    _ray()
    out = tmp_path / "out"
    inputs = [str(scans / f"case_{ax}.nii.gz") for ax in ("RAS", "LPS", "PIR")]
    result: dict = {}
    batch = threading.Thread(target=lambda: result.setdefault("code", main(
        ["-q", "infer", *inputs, "-o", str(out), "--executor", "ray", "--ray-cpus", "2", "--model",
         str(smoke_model_dir)])))
    batch.start()
    killed = None
    deadline = time.time() + 240
    while killed is None and batch.is_alive() and time.time() < deadline:
        for line in subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout.splitlines():
            if "ray::_finish" in line:  # a worker process measuring a case right now
                os.kill(int(line.split()[0]), signal.SIGKILL)
                killed = line
                break
        time.sleep(0.02)
    batch.join(timeout=300)
    assert killed, "no Ray worker was caught running a case"
    assert result.get("code") == 0  # the killed task was retried
    assert {d.name for d in out.iterdir() if (d / ".complete").exists()} == {"case_RAS", "case_LPS", "case_PIR"}
    assert not [p.name for p in out.iterdir() if ".partial" in p.name or p.name.endswith(".lock")]


def test_ray_executor_without_ray_says_how_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    assert main(["infer", "x.nii.gz", "-o", str(tmp_path), "--executor", "ray"]) == 2
    assert 'pip install -e ".[distributed]"' in capsys.readouterr().err
