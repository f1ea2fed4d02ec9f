"""``plexus infer --executor ray``: the same batch spread over a Ray cluster.

Reading and preprocessing (``read`` tasks) and measuring/exporting (``finish`` tasks) run as CPU tasks; the
network runs in ``Segmenter`` actors, one per GPU (one actor on a CPU-only cluster), each holding the model
once. A case flows ``read -> Segmenter.segment -> finish`` through Ray object references, so the next cases are
read and the previous ones measured while the GPUs work. At most ``2 x actors + 2`` cases are in flight, which
bounds the memory of the object store.

Batch safety is the local run's: the driver claims each case with the same atomic lock, ``finish`` writes the
case folder atomically (the same :func:`pipeline.batch.case.finish_case`), finished cases are skipped, failures are
listed in ``run.json``. A worker process that dies (killed, out of memory, node lost) is handled by Ray: its
task is retried (``max_retries``) and a dead actor restarted; a case whose task still fails is reported failed.
The output folder must be on a file system every node sees (NFS, Lustre...).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ..core.errors import InputError, PlexusError
from ..inference.model import load_model
from ..inference.segmentation import prepare_in_canal, segment_in_canal
from ..io.formats import read_image
from .case import find_spine, finish_case, write_no_spine
from .cases import CaseInput
from .folder import Claim, finished
from .options import InferOptions

log = logging.getLogger("plexus")
INSTALL_HINT = 'Ray is not installed: pip install -e ".[distributed]" (or pip install "ray>=2.9")'


def require_ray():
    """The ``ray`` module; a :class:`~pipeline.core.errors.PlexusError` saying how to install it when it is missing."""
    try:
        import ray
    except ImportError:
        raise PlexusError(INSTALL_HINT) from None
    return ray


def run_cases_ray(todo: list[CaseInput], out: Path, options: InferOptions, fail, done) -> None:
    """Process ``todo`` on Ray.

    ``fail(case, exc)`` and ``done(case, timings)`` report each case to the batch record, as the local loop does.
    """
    ray = require_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=options.address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING, **({} if options.address else {"num_cpus": options.ray_cpus}))
    gpus = int(ray.cluster_resources().get("GPU", 0))
    use_gpu = gpus > 0 and options.device != "cpu"
    n_actors = options.ray_actors or max(1, gpus if use_gpu else 1)
    read_task = ray.remote(num_cpus=1, max_retries=3)(_read)
    finish_task = ray.remote(num_cpus=1, max_retries=3)(_finish)
    # actors hold their CPUs for life: leave at least one CPU of the cluster to the read and finish tasks
    cpus = float(ray.cluster_resources().get("CPU", 1))
    actor_cpus = min(1.0, max(cpus - 1.0, 0.25) / n_actors)
    actor_cls = ray.remote(num_cpus=actor_cpus, num_gpus=1 if use_gpu else 0, max_restarts=3,
                           max_task_retries=3)(Segmenter)
    actors = [actor_cls.remote(str(options.model), "cuda" if use_gpu else "cpu", options.modality_name, options.tta,
                               options.overlap, options.crop_margin, options.canal_margin)
              for _ in range(n_actors)]
    log.info("Ray: %d segmenter actor(s) on %s; cluster %s", n_actors, "GPU" if use_gpu else "CPU",
             {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")})
    queue = list(todo)
    inflight: dict = {}  # finish ObjectRef -> (case, claim, t0)
    bar = tqdm(total=len(todo), desc="cases (ray)", unit="case", dynamic_ncols=True)
    k = 0
    try:
        while queue or inflight:
            while queue and len(inflight) < 2 * n_actors + 2:
                case = queue.pop(0)
                claim = Claim(out, case.case_id)
                if not claim.acquire() or (not (case.error or options.overwrite) and finished(out, case.case_id)):
                    claim.release()
                    log.info("%s: being processed or finished by another run, skipped", case.case_id)
                    bar.update(1)
                    continue
                image = read_task.remote(case, options.series, options.first_volume, options.modality_name)
                seg = actors[k % n_actors].segment.remote(image)
                k += 1
                ref = finish_task.remote(case, image, seg, str(out), options.save_probabilities, options.measure)
                inflight[ref] = (case, claim, time.perf_counter())
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                case, claim, t0 = inflight.pop(ref)
                try:
                    timings = ray.get(ref)
                    timings["total_s"] = round(time.perf_counter() - t0, 3)
                    if "status" in timings:  # no spine in view: one warning line, the batch goes on
                        log.warning("warning: %s: %s: %s; no plexus written", case.path, timings["status"],
                                    timings.get("reason", ""))
                    done(case, timings)
                except Exception as exc:  # RayTaskError wraps the task's exception; report its cause
                    fail(case, getattr(exc, "cause", None) or exc)
                finally:
                    claim.release()
                    bar.update(1)
    finally:
        for _case, claim, _ in inflight.values():
            claim.release()
        bar.close()
        if started:  # a Ray instance this run started goes with it
            ray.shutdown()


def _read(case, series, first_volume: bool = False, modality: str | None = None):
    """Read a case and run stage 1 on it (a CPU task): ``(volume, CanalResult)``."""
    if case.error:
        raise InputError(case.path, case.error)
    t0 = time.perf_counter()
    vol = read_image(case.path, series=series, first_volume=first_volume)
    vol.meta["read_s"] = round(time.perf_counter() - t0, 3)
    return vol, find_spine(vol, modality)


def _finish(case, read, seg, out: str, save_probabilities: bool, options) -> dict:
    image, canal = read
    if seg is None:  # stage 1 found no spine: a status, not a failure
        return {"read_s": image.meta.get("read_s"), **write_no_spine(case, image, canal, Path(out))}
    labels, prob, modality, model_name, network_s = seg
    timings = finish_case(case, image, labels, prob, modality, model_name, Path(out), save_probabilities, options,
                          canal)
    return {"read_s": image.meta.get("read_s"), "network_s": network_s, "stage1_s": round(canal.seconds, 3),
            **timings}


class Segmenter:
    """A Ray actor holding the model once; ``segment`` runs the network part of a case."""

    def __init__(self, model_dir: str, device: str, modality: str | None, tta: bool, overlap: float | None,
                 crop_margin: float = 25.0, canal_margin: float = 4.0):
        self.device = torch.device(device)
        self.model, self.meta = load_model(model_dir, self.device)
        self.modality, self.tta, self.overlap = modality, tta, overlap
        self.crop_margin, self.canal_margin = crop_margin, canal_margin

    def segment(self, read):
        """Stage 2 on the canal's crop; None when stage 1 found no spine."""
        image, canal = read
        if not canal.found:
            return None
        t0 = time.perf_counter()
        crop = prepare_in_canal(image, canal, self.meta, modality=self.modality or canal.modality,
                                crop_margin_mm=self.crop_margin)
        seg = segment_in_canal(image, self.model, self.meta, crop, device=self.device, tta=self.tta,
                               overlap=self.overlap, roi_mm=self.canal_margin)
        return (seg.labels, seg.plexus, seg.modality, self.meta.name,
                round(time.perf_counter() - t0, 3))
