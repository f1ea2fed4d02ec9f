"""plexus train on configs/smoke.yaml: trains, validates, checkpoints, resumes bit-for-bit, writes a model."""

from __future__ import annotations

import json

import pytest
import torch

from pipeline.cli import main
from pipeline.core.errors import InputError
from pipeline.inference.model import load_model
from pipeline.train.config import load_config
from pipeline.train.loop import train
from tests.conftest import ROOT

SMOKE = ROOT / "configs" / "smoke.yaml"


def _cfg(tmp, name, *extra):
    return load_config(SMOKE, [f"output.run_dir={tmp / name}", f"output.model_dir={tmp / (name + '_model')}",
                               "data.synthetic.seed=500", *extra])


def test_smoke_trains_and_writes_a_loadable_model(tmp_path):
    result = train(_cfg(tmp_path, "a"))
    assert result["step"] == 6 and 0.0 <= result["val_dice"] <= 1.0
    run = tmp_path / "a"
    for f in ("last.pt", "best.pt", "metrics.csv", "config.yaml"):
        assert (run / f).exists(), f
    model, meta = load_model(tmp_path / "a_model")
    assert meta["outputs"]["classes"]["1"] == "epidural venous plexus"
    assert meta["preprocess"]["spacing"] == [1.6, 1.6, 1.6]
    assert "train:" in meta["training"]["config"]
    with torch.no_grad():
        out = model(torch.zeros(1, 1, 32, 32, 32))
    assert out.shape == (1, 3, 32, 32, 32)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    train(_cfg(tmp_path, "full"))
    train(_cfg(tmp_path, "split"), stop_after=4)
    assert torch.load(tmp_path / "split" / "last.pt", weights_only=False)["state"]["step"] == 4
    assert not (tmp_path / "split_model").exists()  # not finished yet: no model folder
    train(_cfg(tmp_path, "split"), resume=True)
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=False)["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_config_errors_name_the_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMOKE.read_text().replace("train:\n", "train:\n  iteratoins: 5\n"))
    with pytest.raises(InputError, match="train.iteratoins: unknown key"):
        load_config(bad)
    with pytest.raises(InputError, match="train.batch_size"):
        load_config(SMOKE, ["train.batch_size=0"])
    with pytest.raises(InputError, match="preprocess.*unknown key 'spaceing'"):
        load_config(SMOKE, ["preprocess.spaceing=[1,1,1]"])
    with pytest.raises(InputError, match="preprocess.*spacing"):
        load_config(SMOKE, ["preprocess.spacing=[1,0,1]"])
    with pytest.raises(InputError, match="patch_size"):
        load_config(SMOKE, ["train.patch_size=[30,32,32]"])
    assert main(["train", "--config", str(bad)]) == 2
    assert "iteratoins" in capsys.readouterr().err


def test_model_folder_faults_are_clear(tmp_path):
    train(_cfg(tmp_path, "m"))
    folder = tmp_path / "m_model"
    weights = folder / "model.pt"
    data = weights.read_bytes()
    weights.write_bytes(data[:-10] + b"0123456789")
    with pytest.raises(InputError, match="checksum"):
        load_model(folder)
    weights.write_bytes(data)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["network"]["channels"] = [8, 16, 32]
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="do not fit"):
        load_model(folder)
    (folder / "model.pt").unlink()
    with pytest.raises(InputError, match="missing"):
        load_model(folder)
    with pytest.raises(InputError, match="not a model folder"):
        load_model(tmp_path)


@pytest.mark.parametrize("sig, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_ctrl_c_or_sigterm_saves_last_checkpoint_then_resume_finishes(tmp_path, sig, code):
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "int"
    cmd = [sys.executable, "-m", "pipeline.cli", "-q", "train", "--config", str(SMOKE),
           "--override", f"output.run_dir={run}", "--override", f"output.model_dir={tmp_path / 'int_model'}",
           "--override", "train.iterations=1000", "--override", "train.val_every=5000"]
    # a runner started as a background job ignores SIGINT, and the child would inherit that: reset it to default
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    metrics = run / "metrics.csv"   # one row per step: signal a few steps in (a fast machine runs the tiny
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) > 3):
        time.sleep(0.02)            # net at hundreds of steps a second, so no fixed sleep)
    proc.send_signal(getattr(signal, sig))
    assert proc.wait(timeout=60) == code
    step = torch.load(run / "last.pt", weights_only=False)["state"]["step"]
    assert 0 < step < 1000
    assert main(["-q", "train", "--config", str(SMOKE), "--resume", "--override", f"output.run_dir={run}",
                 "--override", f"output.model_dir={tmp_path / 'int_model'}", "--override", "train.iterations=1000",
                 "--override", "train.val_every=5000"]) == 0
    assert torch.load(run / "last.pt", weights_only=False)["state"]["step"] == 1000
    assert (tmp_path / "int_model" / "model.pt").exists()


def test_warm_start_from_a_model_folder(tmp_path):
    train(_cfg(tmp_path, "stage1"))
    cfg = _cfg(tmp_path, "stage2", f"model.init_from={tmp_path / 'stage1_model'}")
    train(cfg, stop_after=0)
    start = torch.load(tmp_path / "stage1_model" / "model.pt", weights_only=True)
    now = torch.load(tmp_path / "stage2" / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(start[k], now[k]) for k in start)
    train(cfg)                      # the finished model names its warm start without this machine's path
    net = json.loads((tmp_path / "stage2_model" / "metadata.json").read_text())["network"]
    first = json.loads((tmp_path / "stage1_model" / "metadata.json").read_text())
    assert net["init_from"] == "stage1_model" and net["init_from_sha256"] == first["weights"]["sha256"]
    load_model(tmp_path / "stage2_model")
    with pytest.raises(InputError, match="not a model folder"):
        train(_cfg(tmp_path, "stage3", f"model.init_from={tmp_path}"), stop_after=0)
