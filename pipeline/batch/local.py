"""``plexus infer``: batch inference over files, DICOM folders, folders of scans, globs and lists.

Batch safety: every case is written into a hidden ``.<case>.partial-PID@HOST`` folder and renamed to ``<case>/``
only when all its files are complete (:mod:`.folder`), so an interrupted run (Ctrl-C, kill, full disk) never leaves a
finished-looking partial case; finished cases are skipped on re-run (``--overwrite`` redoes them); a case is
claimed by an atomic lock so two runs on one output folder never write the same case; a bad case is reported
and the batch goes on. ``summary.csv`` and ``run.json`` are rebuilt from every finished case at the end.
The next case is read and preprocessed in a background thread while the network runs on the current one, and with
``--workers N`` (default on GPU: one per three spare cores, 1 to 4; 0 on CPU) measurement and exports run in worker
processes meanwhile. With ``--executor ray`` the same cases run on a Ray cluster (:mod:`.ray_runner`).
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from ..core.errors import InputError, PlexusError
from ..inference.model import ModelMetadata, load_model
from ..inference.predictor import pick_device
from ..io.formats import read_image
from ..spine import CanalResult
from .case import finish_case, prepare_case, segment_case, write_no_spine
from .cases import CaseInput, discover, select_shard
from .folder import Claim, check_writable, clean_stale, finished
from .options import InferOptions, default_workers
from .ray_runner import run_cases_ray
from .record import RunRecord, failure, report_end, write_record

log = logging.getLogger("plexus")
CASE_ERRORS = (PlexusError, ValueError, RuntimeError, OSError, MemoryError)  # reported per case; the batch goes on


@dataclass(frozen=True)
class BatchResult:
    """What :func:`run_batch` did: its exit code (0: every case succeeded, 1: some failed), the device the network
    ran on, the modality asked for (``None``: guessed per case), the model's name and this run's record."""

    exit_code: int
    device: torch.device
    modality: str | None
    model_name: str | None
    record: RunRecord


def run_batch(inputs: list[str], out: Path, options: InferOptions) -> BatchResult:
    """Segment and measure every case of ``inputs`` into ``out/<case_id>/``.

    Parameters
    ----------
    inputs : list of str
        Image files, DICOM series folders, folders of scans, glob patterns or CSV/TXT lists
        (:func:`~pipeline.batch.cases.discover`).
    out : Path
        The output folder (one sub-folder per case, plus ``summary.csv``, ``run.json``, ``report.html``).
    options : InferOptions
        The flags of ``plexus infer``.

    Returns
    -------
    BatchResult
        ``exit_code`` 0 when every case succeeded, 1 when some failed (listed in ``run.json``), and the resolved
        device and modality.

    Raises
    ------
    InputError, OutputError
        No input scan found, an unreadable model folder, an output folder that cannot be written.
    """
    check_writable(out)
    if clean_stale(out):
        log.info("removed partial outputs left by an interrupted run")
    cases = discover(inputs, options.vertebrae)
    if not cases:
        raise InputError(inputs[0] if inputs else ".", "no input scans found")
    if options.shard is not None:
        cases = select_shard(cases, *options.shard)
        log.info("shard %d/%d: %d cases", options.shard[0], options.shard[1], len(cases))
    device = pick_device(options.device)
    model, meta = load_model(options.model, device)
    record = RunRecord()
    todo = [c for c in cases if c.error or options.overwrite or not finished(out, c.case_id)]
    skipped = len(cases) - len(todo)
    if skipped:
        log.info("%d finished cases skipped (use --overwrite to redo them)", skipped)
    if options.executor == "ray":
        def ray_fail(case: CaseInput, exc: BaseException) -> None:
            record.failures.append(failure(case, exc))
            print(f"error: {record.failures[-1]['error']}", file=sys.stderr)

        try:
            run_cases_ray(todo, out, options, ray_fail, lambda c, t: record.cases.__setitem__(c.case_id, t))
            clean_stale(out)  # partial folders of workers that died here (Ray retried their cases)
        finally:
            write_record(out, cases, record, meta, options, device)
    else:
        try:
            _LocalRun(out, options, model, meta, device, record).run(todo)
        except KeyboardInterrupt:  # the record of what finished is still written
            write_record(out, cases, record, meta, options, device)
            raise
        write_record(out, cases, record, meta, options, device)
    return BatchResult(report_end(out, cases, record, options), device, options.modality_name, meta.name,
                       record)


class _LocalRun:
    """The cases of one batch on this machine: the next case read and through stage 1 in a thread while the network
    runs on this one, measurement in worker processes (or here, with no workers)."""

    def __init__(self, out: Path, options: InferOptions, model, meta: ModelMetadata, device: torch.device,
                 record: RunRecord):
        self.out, self.options, self.model, self.meta = out, options, model, meta
        self.device, self.record = device, record
        self.inflight: list = []  # (case, claim, future, timings, t0) of cases being measured
        self.workers = options.workers if options.workers is not None else default_workers(device)
        self.bar = None

    def load(self, case: CaseInput):
        """Read a case and run stage 1 and the crop on it (in the background, while the network runs on the last)."""
        if case.error:
            raise InputError(case.path, case.error)
        image = read_image(case.path, series=self.options.series, first_volume=self.options.first_volume)
        return image, prepare_case(image, self.meta, self.options)

    def fail(self, case: CaseInput, exc: BaseException) -> None:
        self.record.failures.append(failure(case, exc))
        self.bar.write(f"error: {self.record.failures[-1]['error']}", file=sys.stderr)

    def collect(self, block: bool) -> None:
        """Record the cases whose measurement finished (all of them when ``block``), releasing their claims."""
        while self.inflight and (block or self.inflight[0][2].done()):
            case, claim, fut, timings, t0 = self.inflight.pop(0)
            try:
                timings.update(fut.result())
                timings["total_s"] = round(time.perf_counter() - t0, 3)
                self.record.cases[case.case_id] = timings
            except Exception as exc:  # reported per case; the batch goes on
                self.fail(case, exc)
            finally:
                claim.release()
                self.bar.update(1)

    def run(self, todo: list[CaseInput]) -> None:
        pool = ThreadPoolExecutor(max_workers=1)
        pending = pool.submit(self.load, todo[0]) if todo else None
        post = (ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
                if self.workers > 0 else None)
        self.bar = tqdm(total=len(todo), desc="cases", unit="case", dynamic_ncols=True)
        claim = None
        try:
            for k, case in enumerate(todo):
                t0 = time.perf_counter()
                claim = Claim(self.out, case.case_id)
                current, pending = pending, (pool.submit(self.load, todo[k + 1]) if k + 1 < len(todo) else None)
                self.one_case(case, claim, current, post, t0)
            self.collect(block=True)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the current case's partial folder is already gone
            self.bar.close()
            for held in [claim] + [c for _, c, *_ in self.inflight]:
                if held is not None:
                    held.release()
            if post is not None:
                post.shutdown(wait=False, cancel_futures=True)
            raise
        if post is not None:
            post.shutdown()
        self.bar.close()
        pool.shutdown()

    def one_case(self, case: CaseInput, claim: Claim, loaded: Future, post: ProcessPoolExecutor | None,
                 t0: float) -> None:
        """Claim, segment and hand one case to measurement (a worker process, or here); ``t0``: its start, s."""
        timings: dict = {}
        try:
            image, prepared = loaded.result()  # read and preprocessed while the previous case ran
            timings["read_s"] = round(time.perf_counter() - t0, 3)  # the wait for reading and preprocessing
            if not claim.acquire():
                log.info("%s: being processed by another run, skipped", case.case_id)
                self.bar.update(1)
                return
            if not (case.error or self.options.overwrite) and finished(self.out, case.case_id):
                claim.release()  # another run finished it since this one listed the cases
                log.info("%s: finished by another run, skipped", case.case_id)
                self.bar.update(1)
                return
            self.bar.set_postfix_str(case.case_id)
            if isinstance(prepared, CanalResult):  # stage 1 found no spine: a status, not a failure
                timings.update(write_no_spine(case, image, prepared, self.out))
                timings["total_s"] = round(time.perf_counter() - t0, 3)
                self.record.cases[case.case_id] = timings
                log.warning("warning: %s: %s: %s; no plexus written", case.path, prepared.status, prepared.reason)
                claim.release()
                self.bar.update(1)
                return
            timings["stage1_s"] = round(prepared.canal.seconds, 3)
            t1 = time.perf_counter()
            seg = segment_case(image, prepared, self.model, self.meta, self.device, self.options)
            timings["network_s"] = round(time.perf_counter() - t1, 3)
            job = (case, image, seg.labels, seg.plexus, seg.modality,
                   self.meta.name, self.out, self.options.save_probabilities, self.options.measure,
                   prepared.canal)
        except CASE_ERRORS as exc:
            self.fail(case, exc)
            claim.release()
            self.bar.update(1)
            return
        if post is not None:  # measurement and exports overlap the network on the next case
            self.inflight.append((case, claim, post.submit(finish_case, *job), timings, t0))
            self.collect(block=len(self.inflight) > self.workers)
        else:
            fut = Future()
            try:
                fut.set_result(finish_case(*job))
            except CASE_ERRORS as exc:
                fut.set_exception(exc)
            self.inflight.append((case, claim, fut, timings, t0))
            self.collect(block=True)
