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

from pipeline.inference.model import build_network
from pipeline.train.config import load_config
from pipeline.train.loop import _load, _save, _schedule
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


# ------------------------------------------------------------------- the GPU-only lines, run on the CPU
def test_inference_amp_dtype_on_a_gpu_with_and_without_bf16(monkeypatch):
    from pipeline.inference.predictor import amp_dtype

    assert amp_dtype(torch.device("cpu")) is None
    for bf16, dtype in ((True, torch.bfloat16), (False, torch.float16)):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
        assert amp_dtype(torch.device("cuda")) == dtype


def test_predict_under_autocast_matches_full_precision(monkeypatch):
    """The autocast branch of ``predict`` (a GPU's), run on the CPU in bfloat16, with the flip TTA."""
    from pipeline.inference.predictor import predict

    torch.manual_seed(0)
    model = build_network(load_config(SMOKE).model).eval()
    meta = {"inference": {"patch_size": [32, 32, 32], "overlap": 0.25, "tta": True}, "outputs": {"classes": {}}}
    x = torch.randn(1, 1, 40, 36, 44)
    full = predict(x, model, meta, device=torch.device("cpu"))
    seen = []
    real = torch.autocast

    def spy(*a, **k):
        seen.append((k.get("dtype"), k.get("enabled")))
        return real(*a, **k)
    monkeypatch.setattr(torch, "autocast", spy)
    half = predict(x, model, meta, device=torch.device("cpu"), amp=torch.bfloat16)
    assert seen == [(torch.bfloat16, True)] * 2  # both passes of the TTA under autocast
    assert half.dtype == torch.float32 and half.shape == (1, 3, 40, 36, 44)
    assert torch.allclose(half.sum(1), torch.ones(1, 40, 36, 44), atol=1e-4)
    assert (half - full).abs().max() < 0.05 and not torch.equal(half, full)  # bf16: close, not identical


def test_flip_tta_mean_is_the_same_through_numpy_and_torch_flip():
    from pipeline.inference.predictor import mean_with_mirrored

    torch.manual_seed(0)
    p, m = torch.rand(1, 3, 5, 4, 6), torch.rand(1, 3, 5, 4, 6)
    expected = (p + torch.flip(m, dims=[2])) / 2
    for numpy_view in (True, False):  # the CPU path and the GPU path, both on CPU tensors
        out = mean_with_mirrored(p.clone(), m, numpy_view=numpy_view)
        assert torch.allclose(out, expected, atol=1e-7), numpy_view


def test_gpu_stitching_asks_cuda_for_its_free_memory(monkeypatch):
    from pipeline.inference.predictor import stitch_device

    gpu, cpu, shape = torch.device("cuda"), torch.device("cpu"), (400, 400, 700)
    asked = []
    for free, where in ((130 * 2**30, gpu), (6 * 2**30, cpu)):
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda d=None, free=free: (asked.append(d), (free, 140 * 2**30))[1])
        assert stitch_device(gpu, shape, 3) == where
    assert asked == [gpu, gpu]


def test_training_amp_on_a_gpu_and_a_scaled_step(monkeypatch):
    """``train.amp`` on a (pretended) GPU picks bf16 or fp16 + GradScaler; a scaled step under autocast (CPU
    bfloat16, CPU GradScaler) runs the fp16 branch's lines and changes the weights."""
    import warnings

    from pipeline.train.loop import _autocast, _loss, _step

    gpu = torch.device("cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available": the objects are built, never entered here
        for bf16, amp, dtype, scaled in ((True, "auto", torch.bfloat16, False), (False, "auto", torch.float16, True),
                                         (True, "fp16", torch.float16, True), (True, "bf16", torch.bfloat16, False)):
            monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
            ctx, scaler = _autocast(gpu, amp)
            assert (ctx.device, ctx.fast_dtype, scaler is not None) == ("cuda", dtype, scaled), amp
        assert _autocast(gpu, "off")[1] is None and _autocast(torch.device("cpu"), "auto")[1] is None
    cfg = load_config(SMOKE)
    torch.manual_seed(0)
    model, opt, _ = _parts(cfg)
    before = [p.detach().clone() for p in model.parameters()]
    x, y = torch.randn(2, 1, 32, 32, 32), torch.randint(0, 3, (2, 1, 32, 32, 32)).float()
    scaler = torch.amp.GradScaler("cpu")
    loss = _step(model, x, y, _loss(cfg, torch.device("cpu")), opt, torch.autocast("cpu", dtype=torch.bfloat16), scaler)
    assert torch.isfinite(loss) and scaler.get_scale() > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


# --------------------------------------------------------- on a real GPU only (bench/gpu_check.sh runs them)
cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                          reason="needs a CUDA device; bench/gpu_check.sh runs these on a GPU machine")


@cuda
def test_cuda_training_with_class_weights_stops_and_resumes(tmp_path):
    from pipeline.train.loop import train

    cfg = load_config(SMOKE, [f"output.run_dir={tmp_path / 'run'}", f"output.model_dir={tmp_path / 'model'}",
                              "train.device=cuda", "loss.class_weights=[0.2,1.0,0.5]", "train.amp=auto"])
    assert train(cfg, stop_after=3)["step"] == 3
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=False)  # saved from the GPU
    assert ckpt["rng"]["torch"].device.type == "cpu"
    assert train(cfg, resume=True)["step"] == 6
    assert (tmp_path / "model" / "model.pt").exists()


@cuda
def test_cuda_prediction_matches_the_cpu_prediction():
    from pipeline.inference.predictor import predict

    torch.manual_seed(0)
    model = build_network(load_config(SMOKE).model).eval()
    meta = {"inference": {"patch_size": [32, 32, 32], "overlap": 0.25, "tta": True}, "outputs": {"classes": {}}}
    x = torch.randn(1, 1, 40, 36, 44)
    cpu = predict(x, model, meta, device=torch.device("cpu"))
    gpu = torch.device("cuda")
    out = predict(x.to(gpu), model.to(gpu), meta, device=gpu)  # AMP, stitching on the GPU, torch.flip TTA
    assert out.device.type == "cuda" and out.dtype == torch.float32
    assert (out.cpu() - cpu).abs().max() < 0.05
