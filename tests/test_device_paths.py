"""Device logic that only a GPU would otherwise exercise, run on the CPU.

A checkpoint resumed onto another device, a loss that moves with the model, the test configs pinned to the CPU,
DDP ranks asking for no more GPUs than exist, SIGTERM forwarded through ``--nproc-per-node``. The ``meta`` device
stands in for a GPU where torch allows: tensors there have a device, a dtype and a shape, and no storage.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from pipeline.train.config import load_config
from pipeline.train.loop import _load, _save, _schedule
from pipeline.train.model_io import build_network
from tests.conftest import ROOT

SMOKE = ROOT / "configs" / "smoke.yaml"


def _parts(cfg, device="cpu"):
    model = build_network(cfg.model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr)
    return model, opt, torch.optim.lr_scheduler.LambdaLR(opt, _schedule(cfg))


def test_resume_onto_another_device_keeps_the_rng_state_a_cpu_byte_tensor(tmp_path, monkeypatch):
    """``last.pt`` read for a run on another device (``meta`` standing in for ``cuda``): the saved CPU RNG state
    reaches ``torch.set_rng_state`` as a CPU uint8 tensor, weights and optimiser state land on the model's device."""
    cfg = load_config(SMOKE, [f"output.run_dir={tmp_path}"])
    torch.manual_seed(0)
    model, opt, sched = _parts(cfg)
    model(torch.randn(1, 1, 32, 32, 32)).mean().backward()
    opt.step()
    sched.step()
    torch.manual_seed(1234)
    _save(tmp_path / "last.pt", model, opt, sched, None, {"step": 1, "best": -1.0, "best_metrics": {}}, cfg)
    expected = torch.rand(5)            # what the resumed run must draw next
    torch.manual_seed(99)               # another state: resume must restore the saved one

    seen = []
    real = torch.set_rng_state
    monkeypatch.setattr(torch, "set_rng_state", lambda s: (seen.append(s), real(s))[1])
    model2, opt2, sched2 = _parts(cfg)
    state = _load(tmp_path / "last.pt", model2, opt2, sched2, None, torch.device("meta"))
    assert state["step"] == 1
    assert len(seen) == 1 and seen[0].device.type == "cpu" and seen[0].dtype == torch.uint8
    assert torch.equal(torch.rand(5), expected)
    for k, v in model.state_dict().items():
        assert torch.equal(model2.state_dict()[k], v), k
    moments = [s["exp_avg"] for s in opt2.state.values()]
    assert moments and all(m.device == next(model2.parameters()).device for m in moments)
    assert sched2.last_epoch == 1
    model3, opt3, sched3 = _parts(cfg, "meta")  # a model that lives on the other device: its moments follow it
    _load(tmp_path / "last.pt", model3, opt3, sched3, None, torch.device("meta"))
    assert seen[-1].device.type == "cpu"
    assert all(s["exp_avg"].device.type == "meta" for s in opt3.state.values()) and len(opt3.state) == len(moments)


def test_class_weighted_loss_is_built_on_the_training_device():
    """``loss.class_weights`` live on the device the logits come from (``meta`` standing in for ``cuda``)."""
    from pipeline.train.loop import _loss

    cfg = load_config(SMOKE, ["loss.class_weights=[0.2,1.0,0.5]", "loss.cldice_weight=0.2"])
    weights = list(_loss(cfg, torch.device("meta")).buffers())  # Dice's and cross-entropy's class weights
    assert len(weights) >= 2 and all(w.device.type == "meta" and w.shape == (3,) for w in weights)
    torch.manual_seed(0)
    x, y = torch.randn(2, 3, 8, 8, 8), torch.randint(0, 3, (2, 1, 8, 8, 8)).float()
    weighted = _loss(cfg, torch.device("cpu"))(x, y)
    plain = _loss(load_config(SMOKE, ["loss.cldice_weight=0.2"]), torch.device("cpu"))(x, y)
    assert torch.isfinite(weighted) and not torch.isclose(weighted, plain)  # the weights are used


def test_the_test_config_trains_on_the_cpu():
    """configs/smoke.yaml (every training test and the session's model fixture): on a GPU machine too, or
    ``test_warm_start`` compares CPU with CUDA tensors and the DDP test asks for ``cuda:1`` on one GPU."""
    assert load_config(SMOKE).train.device == "cpu"


def test_a_ddp_rank_never_asks_for_a_gpu_that_is_not_there(monkeypatch):
    from pipeline.train import distributed

    calls = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", d)))
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend: calls.append(("init", backend)))
    for k, v in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValueError, match="nproc-per-node.*1 GPU"):
        distributed.init_distributed(torch.device("cuda"))
    assert calls == []
    with pytest.raises(ValueError, match="nproc-per-node.*1 GPU"):  # refused before torchrun starts
        distributed.launch(2, ["--config", str(SMOKE)], device="auto")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)  # two GPUs: rank 1 takes the second, NCCL
    info, device = distributed.init_distributed(torch.device("cuda"))
    assert (info.rank, info.world, device) == (1, 2, torch.device("cuda", 1))
    assert calls == [("set_device", torch.device("cuda", 1)), ("init", "nccl")]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)  # on the CPU: gloo, whatever the GPU count
    calls.clear()
    assert distributed.init_distributed(torch.device("cpu"))[1] == torch.device("cpu") and calls == [("init", "gloo")]


FAKE_TORCHRUN = """#!{python}
import os, signal, sys, time
log = lambda m: open(os.environ["FAKE_TORCHRUN_LOG"], "a").write(m + "\\n")
def on_term(signum, frame):  # as torchrun's ranks: save last.pt, then exit
    log("sigterm")
    time.sleep(1.0)
    log("saved")
    sys.exit(143)
signal.signal(signal.SIGTERM, on_term)
log("started " + " ".join(sys.argv[1:3]))
time.sleep(60)
log("never terminated")
"""


def test_sigterm_to_plexus_train_nproc_reaches_torchrun_and_waits_for_it(tmp_path):
    """``plexus train --nproc-per-node 2`` under SIGTERM passes it on to torchrun (a stand-in script here, run as
    ``sys.executable -m torch.distributed.run``) and waits while it saves, instead of SIGKILLing it."""
    fake, log = tmp_path / "fake_python", tmp_path / "torchrun.log"
    fake.write_text(FAKE_TORCHRUN.format(python=sys.executable))
    fake.chmod(0o755)
    driver = textwrap.dedent(f"""
        import sys
        sys.executable = {str(fake)!r}
        from pipeline.cli import main
        sys.exit(main(["-q", "train", "--config", {str(SMOKE)!r}, "--nproc-per-node", "2",
                       "--override", "output.run_dir={tmp_path / 'run'}"]))
    """)
    proc = subprocess.Popen([sys.executable, "-c", driver], cwd=ROOT, env={**os.environ, "FAKE_TORCHRUN_LOG": str(log)})
    deadline = time.time() + 60
    while time.time() < deadline and not (log.exists() and "started" in log.read_text()):
        time.sleep(0.05)
    assert log.read_text().split("\n")[0] == "started -m torch.distributed.run"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    assert log.read_text().splitlines() == ["started -m torch.distributed.run", "sigterm", "saved"]
