"""plexus infer: every input kind, grid identity, batch safety (kill, corrupt case, re-run), devices."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from pipeline.batch.cases import discover
from pipeline.cli import main
from pipeline.io import read_image
from tests.conftest import ROOT, shared


def _infer(args, model):
    return main(["-q", "infer", *map(str, args), "--model", str(model)])


def test_discovery_of_every_input_kind(scans, tmp_path):
    assert [c.case_id for c in discover([str(scans)])] == ["broken", "case_LPS", "case_PIR", "case_RAS"]
    assert [c.case_id for c in discover([str(scans / "case_L*.nii.gz")])] == ["case_LPS"]
    lst = tmp_path / "list.txt"
    lst.write_text(f"{scans / 'case_RAS.nii.gz'}\n# a comment\n{scans / 'missing.nii.gz'}\n")
    found = discover([str(lst)])
    assert [c.case_id for c in found] == ["case_RAS", "missing"] and found[1].error
    csvp = tmp_path / "list.csv"
    csvp.write_text(f"case_id,image\nmine,{scans / 'case_PIR.nii.gz'}\n")
    assert discover([str(csvp)])[0].case_id == "mine"


def test_dicom_series_folder_is_one_case():
    folder = shared("dicom_totalseg_example_ct")
    cases = discover([str(folder)])
    assert len(cases) == 1 and cases[0].case_id == folder.name


def test_outputs_on_the_input_grid_and_one_bad_case(scans, smoke_model_dir, tmp_path):
    out = tmp_path / "out"
    code = _infer([scans, "-o", out, "--save-probabilities"], smoke_model_dir)
    assert code == 1  # the broken case failed, the others finished
    run = json.loads((out / "run.json").read_text())
    assert [f["case_id"] for f in run["failures"]] == ["broken"]
    assert "broken.nii.gz" in run["failures"][0]["error"]
    for ax in ("RAS", "LPS", "PIR"):
        img = read_image(scans / f"case_{ax}.nii.gz")
        seg = read_image(out / f"case_{ax}" / "segmentation.nii.gz")
        assert seg.shape == img.shape and seg.array.dtype == np.uint8
        np.testing.assert_allclose(seg.affine, img.affine, atol=1e-5)
        assert read_image(out / f"case_{ax}" / "probabilities.nii.gz").shape == img.shape
        assert (out / f"case_{ax}" / "calibre.csv").exists() and (out / f"case_{ax}" / "qc.png").exists()
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("case_id,level,channel")
    assert {line.split(",")[0] for line in summary[1:]} == {"case_LPS", "case_PIR", "case_RAS"}
    assert "broken" in (out / "report.html").read_text()
    # a re-run skips what is finished and retries only the failed case
    t0 = time.perf_counter()
    assert _infer([scans, "-o", out], smoke_model_dir) == 1
    assert time.perf_counter() - t0 < 30


def test_killed_run_leaves_no_finished_looking_case_and_rerun_completes(scans, smoke_model_dir, tmp_path):
    out = tmp_path / "out"
    inputs = [str(scans / f"case_{ax}.nii.gz") for ax in ("RAS", "LPS", "PIR")]
    cmd = [sys.executable, "-m", "pipeline.cli", "-q", "infer", *inputs, "-o", str(out), "--model", str(smoke_model_dir)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob(".*partial*")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    for d in out.iterdir() if out.exists() else []:
        if not d.name.startswith(".") and d.is_dir():
            assert (d / ".complete").exists(), f"{d} looks finished but is partial"
    done_before = {d.name for d in out.iterdir() if (d / ".complete").exists()} if out.exists() else set()
    assert len(done_before) < 3
    assert _infer([*inputs, "-o", out], smoke_model_dir) == 0
    assert {d.name for d in out.iterdir() if (d / ".complete").exists()} == {"case_RAS", "case_LPS", "case_PIR"}
    assert not [p for p in out.iterdir() if "partial" in p.name or p.name.endswith(".lock")]


def test_cuda_device_without_gpu_is_an_error_and_auto_falls_back(scans, smoke_model_dir, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code = _infer([scans / "case_RAS.nii.gz", "-o", tmp_path / "o", "--device", "cuda"], smoke_model_dir)
    assert code == 2 and "no CUDA device" in capsys.readouterr().err
    assert _infer([scans / "case_RAS.nii.gz", "-o", tmp_path / "o", "--device", "auto"], smoke_model_dir) == 0
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert run["device"] == "cpu"


def test_missing_model_folder_is_a_clear_error(scans, tmp_path, capsys):
    code = main(["infer", str(scans / "case_RAS.nii.gz"), "-o", str(tmp_path / "o"), "--model", str(tmp_path)])
    assert code == 2 and "not a model folder" in capsys.readouterr().err


def test_default_workers_none_on_cpu_and_one_per_three_spare_cores_on_gpu():
    import torch

    from pipeline.batch.options import default_workers

    assert default_workers(torch.device("cpu"), cores=64) == 0
    gpu = torch.device("cuda")  # a device object only: nothing runs on it
    assert [default_workers(gpu, cores=n) for n in (1, 2, 4, 8, 16, 64)] == [1, 1, 1, 2, 4, 4]


def test_worker_processes_give_the_same_outputs(scans, smoke_model_dir, tmp_path):
    inputs = [scans / "case_RAS.nii.gz", scans / "case_PIR.nii.gz"]
    assert _infer([*inputs, "-o", tmp_path / "inline", "--workers", "0"], smoke_model_dir) == 0
    assert _infer([*inputs, "-o", tmp_path / "pool", "--workers", "1"], smoke_model_dir) == 0
    for case in ("case_RAS", "case_PIR"):
        a = (tmp_path / "inline" / case / "calibre.csv").read_text()
        b = (tmp_path / "pool" / case / "calibre.csv").read_text()
        assert a == b
    run = json.loads((tmp_path / "pool" / "run.json").read_text())
    assert set(run["timings"]) == {"case_RAS", "case_PIR"}
    assert all("postprocess_s" in t and "network_s" in t for t in run["timings"].values())
