"""``plexus train``: the training loop, validation, checkpoints and resume.

* a progress bar with loss and speed; validation every ``train.val_every`` steps on whole validation volumes
  (sliding-window inference): plexus Dice, clDice and, where phantom truth is known, the calibre error of
  ``plexus measure``;
* ``metrics.csv`` and TensorBoard logs in the run folder; ``last.pt`` and ``best.pt`` checkpoints with
  optimiser, scheduler and RNG state; ``--resume`` continues bit-for-bit from ``last.pt`` (samples are a pure
  function of their index, see :mod:`.data`); Ctrl-C saves ``last.pt`` first;
* the model folder (weights, ``metadata.json``, model card) at the end, from the best checkpoint.
"""

from __future__ import annotations

import csv
import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from ..core.atomic import atomic_path, write_text
from ..inference.model import build_network, load_model
from ..inference.predictor import pick_device
from .config import TrainConfig
from .data import SampleStream, all_cases, augmentation, preprocess_case, split
from .distributed import DistInfo, barrier, gather_objects, init_distributed, rank_sample_indices, shutdown
from .model_folder import write_model_folder
from .randomised import RandomisedStream, label_case_files, load_label_cases
from .validate import validate_case

log = logging.getLogger("plexus")


def _autocast(device: torch.device, amp: str):
    """Autocast context and gradient scaler of ``train.amp`` on ``device``: bf16 (no scaler) or fp16 with a
    ``GradScaler`` on a GPU, full precision on the CPU or with ``off``."""
    if device.type != "cuda" or amp == "off":
        return torch.autocast(device_type=device.type, enabled=False), None
    dtype = torch.bfloat16 if amp in ("auto", "bf16") and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return torch.autocast(device_type="cuda", dtype=dtype), scaler


def _step(model, x, y, loss_fn, opt, autocast, scaler) -> torch.Tensor:
    """One optimiser step on the batch ``x`` (B, 1, X, Y, Z), ``y`` (B, 1, X, Y, Z) under ``autocast``, through
    ``scaler`` when there is one (fp16); returns the loss."""
    opt.zero_grad(set_to_none=True)
    with autocast:
        loss = loss_fn(model(x), y)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    else:
        loss.backward()
        opt.step()
    return loss


def _schedule(cfg: TrainConfig):
    total, warm = cfg.train.iterations, cfg.optim.warmup_iterations

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, total - warm)
        if cfg.optim.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
        if cfg.optim.schedule == "poly":
            return (1 - min(t, 1.0)) ** 0.9
        return 1.0
    return factor


class _TrainLoss(torch.nn.Module):
    """Dice + cross-entropy (class weights as buffers), plus ``cldice_weight`` x soft clDice of the plexus."""

    def __init__(self, dice_ce: torch.nn.Module, cl: torch.nn.Module | None, cldice_weight: float):
        super().__init__()
        self.dice_ce, self.cl, self.cldice_weight = dice_ce, cl, cldice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.dice_ce(logits, target)
        if self.cl is not None:
            prob = torch.softmax(logits.float(), 1)[:, 1:2]
            loss = loss + self.cldice_weight * self.cl((target == 1).float(), prob)
        return loss


def _loss(cfg: TrainConfig, device: torch.device) -> torch.nn.Module:
    """The training loss ``loss(logits, target)``, its class weights (``loss.class_weights``) on ``device``."""
    from monai.losses import DiceCELoss, SoftclDiceLoss

    w = torch.tensor(cfg.loss.class_weights, dtype=torch.float32) if cfg.loss.class_weights else None
    dice_ce = DiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=cfg.loss.dice_weight,
                         lambda_ce=cfg.loss.ce_weight, weight=w)
    cl = SoftclDiceLoss(iter_=3, smooth=1.0) if cfg.loss.cldice_weight > 0 else None
    return _TrainLoss(dice_ce, cl, cfg.loss.cldice_weight).to(device)


def _seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def train(cfg: TrainConfig, *, resume: bool = False, stop_after: int | None = None,
          config_text: str | None = None) -> dict:
    """Run (or resume) a training and write its model folder at the end.

    Under torchrun (``WORLD_SIZE`` > 1) every rank runs this function; see :mod:`.distributed`.

    Parameters
    ----------
    cfg : TrainConfig
        The validated config (:func:`~pipeline.train.config.load_config`).
    resume : bool
        Continue from ``output.run_dir/last.pt``.
    stop_after : int, optional
        Steps to run now, then checkpoint and stop (resume later).
    config_text : str, optional
        The config file's text, stored in the model folder's ``metadata.json``.

    Returns
    -------
    dict
        ``step`` and the best validation metrics (``val_dice``, ``val_dice_bone``, ``val_cldice`` in [0, 1], and
        ``val_calibre_mae`` in mm where phantom truth is known).
    """
    info, device = init_distributed(pick_device(cfg.train.device))
    try:
        result = _train(cfg, info, device, resume, stop_after, config_text)
        barrier(info)  # every rank ends together, after rank 0 has written its files: an orderly teardown
        return result
    finally:
        shutdown(info)


def _train(cfg: TrainConfig, info: DistInfo, device: torch.device, resume: bool, stop_after: int | None,
           config_text: str | None) -> dict:
    run = Path(cfg.output.run_dir)
    main = info.is_main
    if main:
        run.mkdir(parents=True, exist_ok=True)
        write_text(run / "config.yaml", config_text or yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    _seed_everything(cfg.train.seed + info.rank, cfg.train.deterministic)
    if main:
        all_cases(cfg)  # rank 0 generates the synthetic phantoms (and label maps) once; the others read them
        label_case_files(cfg, run / "cache")
    barrier(info)
    cases = all_cases(cfg)
    train_cases, val_cases = split(cases, cfg.data.val_fraction, cfg.data.split_seed)
    log.info("%d training and %d validation cases; device %s%s", len(train_cases), len(val_cases), device,
             f" (rank {info.rank} of {info.world})" if info.active else "")
    cached = [preprocess_case(c, cfg) for c in _progress(train_cases, "preprocessing", main)]
    val = [(c, preprocess_case(c, cfg)) for c in val_cases[: cfg.train.val_cases][info.rank::info.world]]
    model = build_network(cfg.model).to(device)
    # the warm start's checksum, kept in the run's state for the model folder (a resumed run has it from last.pt)
    state = {"step": 0, "best": -1.0, "best_metrics": {}, "init_from_sha256": None}
    if cfg.model.init_from is not None and not (resume and (run / "last.pt").exists()):
        start, start_meta = load_model(cfg.model.init_from)   # checksum and architecture checked
        model.load_state_dict(start.state_dict())
        state["init_from_sha256"] = start_meta.weights.sha256
        log.info("initialised from %s", cfg.model.init_from)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(cfg))
    autocast, scaler = _autocast(device, cfg.train.amp)
    loss_fn = _loss(cfg, device)
    if resume and (run / "last.pt").exists():
        state = _load(run / "last.pt", model, opt, sched, scaler, device)
        log.info("resumed from step %d", state["step"])
    net = model  # the bare network: checkpoints, validation and the model folder
    if info.active:  # DDP starts every rank from rank 0's weights and averages the gradients
        model = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda"
                                                          else None)
    B = cfg.train.batch_size
    stream = SampleStream(cached, augmentation(cfg.augment, cfg.train.patch_size, cfg.train.pos_fraction),
                          cfg.train.seed, cfg.train.iterations * B)
    rs = cfg.data.randomised
    if rs is not None:  # domain randomisation: most samples' images synthesised from label maps
        stream = RandomisedStream(load_label_cases(label_case_files(cfg, run / "cache")), stream,
                                  probability=rs.probability, patch=cfg.train.patch_size, pos=cfg.train.pos_fraction,
                                  aug=cfg.augment, seed=cfg.train.seed, length=cfg.train.iterations * B,
                                  ranges=rs.randomisation_ranges(), p_real_image=rs.p_real_image)
    subset = torch.utils.data.Subset(stream, rank_sample_indices(state["step"], cfg.train.iterations, B, info))
    loader = torch.utils.data.DataLoader(subset, batch_size=B // info.world, shuffle=False,
                                         num_workers=cfg.train.num_workers, persistent_workers=False,
                                         pin_memory=device.type == "cuda")
    writer = _tensorboard(run) if main else None
    metrics_path = run / "metrics.csv"
    end = cfg.train.iterations if stop_after is None else min(cfg.train.iterations, state["step"] + stop_after)
    from tqdm import tqdm

    bar = tqdm(total=end - state["step"], desc="training", unit="step", dynamic_ncols=True, disable=not main)
    wait = busy = 0.0
    t_last = time.perf_counter()
    model.train()
    try:
        for batch in loader:
            if state["step"] >= end:
                break
            t_data = time.perf_counter()
            wait += t_data - t_last
            x, y = batch["image"].to(device), batch["label"].to(device)
            loss = _step(model, x, y, loss_fn, opt, autocast, scaler)
            sched.step()
            state["step"] += 1
            t_last = time.perf_counter()
            busy += t_last - t_data
            row = {"step": state["step"], "loss": float(loss.detach()), "lr": opt.param_groups[0]["lr"],
                   "sec_per_step": (wait + busy) / max(bar.n + 1, 1), "data_wait_fraction": wait / max(wait + busy, 1e-9)}
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}", wait=f"{row['data_wait_fraction']:.0%}")
            if state["step"] % cfg.train.val_every == 0 or state["step"] == cfg.train.iterations:
                row.update(_validate(net, val, cfg, device, info))
                model.train()
                score = row.get("val_dice", 0.0)
                if score > state["best"]:
                    state["best"], state["best_metrics"] = score, {k: v for k, v in row.items() if k.startswith("val_")}
                    if main:
                        _save(run / "best.pt", net, opt, sched, scaler, state, cfg)
                if main:
                    _save(run / "last.pt", net, opt, sched, scaler, state, cfg)
                    bar.write(f"step {state['step']}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items()
                                                                    if k.startswith("val_")))
            if main:
                _log_row(metrics_path, row, writer)
            t_last = time.perf_counter()  # validation and logging are not data wait
    except KeyboardInterrupt:
        if main:
            _save(run / "last.pt", net, opt, sched, scaler, state, cfg)
        bar.close()
        log.warning("interrupted at step %d: saved %s; continue with --resume", state["step"], run / "last.pt")
        raise
    bar.close()
    if main:
        _save(run / "last.pt", net, opt, sched, scaler, state, cfg)
    if writer is not None:
        writer.close()
    result = {"step": state["step"], **state["best_metrics"]}
    if state["step"] >= cfg.train.iterations and main:
        src = run / "best.pt" if (run / "best.pt").exists() else run / "last.pt"
        folder = cfg.output.model_dir or Path("models") / cfg.output.name
        write_model_folder(folder, torch.load(src, map_location="cpu", weights_only=False), cfg,
                           config_text=(run / "config.yaml").read_text())
        result["model_dir"] = str(folder)
        log.info("wrote model folder %s", folder)
    return result


def _progress(items, desc, show: bool = True):
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="case", dynamic_ncols=True, disable=not show)


@torch.no_grad()
def _validate(model, val, cfg: TrainConfig, device, info: DistInfo | None = None) -> dict:
    """Mean validation metrics over every rank's share of the validation cases (the same on every rank)."""
    model.eval()
    mine = [validate_case(model, case, item, cfg, device) for case, item in val]
    scores = [s for part in gather_objects(info or DistInfo(), mine) for s in part]
    out = {}
    for key in scores[0] if scores else []:
        vals = [s[key] for s in scores if s.get(key) is not None and np.isfinite(s[key])]
        if vals:
            out[key] = float(np.mean(vals))
    return out


def _tensorboard(run: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency; an environment without it still trains
        log.warning("tensorboard is not installed: metrics go to metrics.csv only")
        return None
    return SummaryWriter(str(run / "tensorboard"))


def _log_row(path: Path, row: dict, writer) -> None:
    keys = ["step", "loss", "lr", "sec_per_step", "data_wait_fraction", "val_dice", "val_dice_bone", "val_cldice",
            "val_calibre_mae"]
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow(row)
    if writer is not None:
        for k, v in row.items():
            if k != "step":
                writer.add_scalar(k, v, row["step"])


def _save(path: Path, model, opt, sched, scaler, state, cfg) -> None:
    ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None, "state": state,
            "config": cfg.model_dump(mode="json"), "rng": {"torch": torch.get_rng_state(),
                                                           "numpy": np.random.get_state(), "python": random.getstate()}}
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def _load(path: Path, model, opt, sched, scaler, device) -> dict:
    """Restore ``last.pt`` into a run on ``device``; return its ``state``.

    The file is read onto the CPU whatever ``device`` is: the saved CPU RNG state must stay a CPU ByteTensor
    (``torch.set_rng_state`` refuses one mapped onto a GPU), and ``load_state_dict`` copies the weights and the
    optimiser moments onto the device of the model's parameters.
    """
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])  # moments cast to each parameter's device
    sched.load_state_dict(ckpt["scheduler"])
    if scaler is not None and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    torch.set_rng_state(ckpt["rng"]["torch"].cpu())
    np.random.set_state(ckpt["rng"]["numpy"])
    random.setstate(ckpt["rng"]["python"])
    return ckpt["state"]
