"""``plexus infer``: batch inference over files, DICOM folders, folders of scans, globs and lists.

Batch safety: every case is written into a hidden ``.<case>.partial-PID@HOST`` folder and renamed to ``<case>/``
only when all its files are complete, so an interrupted run (Ctrl-C, kill, full disk) never leaves a
finished-looking partial case; finished cases are skipped on re-run (``--overwrite`` redoes them); a case is
claimed by an atomic lock so two runs on one output folder never write the same case; a bad case is reported
and the batch goes on. ``summary.csv`` and ``run.json`` are rebuilt from every finished case at the end.
The next case is read and preprocessed in a background thread while the network runs on the current one, and with
``--workers N`` (default on GPU: one per three spare cores, 1 to 4; 0 on CPU) measurement and exports run in worker
processes meanwhile.
"""

from __future__ import annotations

import csv
import errno
import glob
import json
import logging
import multiprocessing
import os
import re
import shutil
import socket
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .atomic import in_background, write_text
from .errors import InputError, OutputError, PlexusError
from .export.report import build_report
from .io import _sniff, read_image, write_image
from .spine import CanalResult
from .summarize import DONE, write_summary_csv

log = logging.getLogger("plexus")
IMAGE_EXTS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")
STALE = re.compile(r"^\..+\.(partial|old)-(\d+(@.+)?)$")


@dataclass
class CaseInput:
    case_id: str
    path: Path
    vertebrae: Path | None = None
    error: str | None = None          # a problem found while listing the inputs


@dataclass
class RunRecord:
    started: float = field(default_factory=time.time)
    cases: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)


def case_id_of(path: Path) -> str:
    name = path.name
    for ext in IMAGE_EXTS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def _is_dicom_dir(path: Path) -> bool:
    for f in sorted(path.iterdir())[:20]:
        if f.is_file():
            try:
                if _sniff(f) == "dicom":
                    return True
            except InputError:
                continue
    return False


def discover(inputs: list[str], vertebrae: str | None = None) -> list[CaseInput]:
    """Cases from files, DICOM series folders, folders of scans, glob patterns and CSV/TXT lists."""
    cases: list[CaseInput] = []
    for item in inputs:
        if any(ch in item for ch in "*?["):
            matches = sorted(glob.glob(item))
            if not matches:
                cases.append(CaseInput(case_id_of(Path(item)), Path(item), error="glob pattern matches nothing"))
            cases += [c for m in matches for c in discover([m])]
            continue
        p = Path(item)
        if not p.exists():
            cases.append(CaseInput(case_id_of(p), p, error="no such file or folder"))
        elif p.is_file() and p.suffix.lower() in (".csv", ".txt"):
            cases += _from_list(p)
        elif p.is_dir() and not _is_dicom_dir(p):
            for child in sorted(p.iterdir()):
                if child.name.startswith("."):
                    continue
                if child.is_dir() and _is_dicom_dir(child):
                    cases.append(CaseInput(child.name, child))
                elif child.is_file() and child.name.lower().endswith(IMAGE_EXTS[:-1]):
                    cases.append(CaseInput(case_id_of(child), child))
        else:
            cases.append(CaseInput(p.name if p.is_dir() else case_id_of(p), p))
    seen: dict[str, int] = {}
    for c in cases:  # unique case ids
        n = seen[c.case_id] = seen.get(c.case_id, 0) + 1
        if n > 1:
            c.case_id = f"{c.case_id}_{n}"
    if vertebrae:
        _match_vertebrae(cases, Path(vertebrae))
    return cases


def _from_list(path: Path) -> list[CaseInput]:
    out = []
    text = path.read_text().splitlines()
    if path.suffix.lower() == ".csv" and text and "image" in text[0]:
        for row in csv.DictReader(text):
            img = (path.parent / row["image"]).resolve()
            vert = (path.parent / row["vertebrae"]).resolve() if row.get("vertebrae") else None
            out.append(CaseInput(row.get("case_id") or case_id_of(img), img, vert,
                                 None if img.exists() else "no such file or folder"))
    else:
        for line in text:
            line = line.strip().split(",")[0]
            if line and not line.startswith("#"):
                img = (path.parent / line).resolve()
                out.append(CaseInput(case_id_of(img), img, error=None if img.exists() else "no such file or folder"))
    return out


def _match_vertebrae(cases: list[CaseInput], vert: Path) -> None:
    per_structure = vert.is_dir() and any(f.name.startswith("vertebrae_") for f in vert.iterdir())
    if vert.is_file() or per_structure:  # one map, or one case's TotalSegmentator masks
        if len(cases) != 1:
            raise InputError(vert, "one vertebra map given for several cases; give a folder of maps named by case id")
        cases[0].vertebrae = vert
        return
    if not vert.is_dir():
        raise InputError(vert, "no such file or folder")
    files = list(vert.iterdir())  # maps, or per-case folders of TotalSegmentator masks, named by case id
    for c in cases:
        exact = [f for f in files if case_id_of(f) == c.case_id]
        loose = [f for f in files if case_id_of(f).startswith(c.case_id)]
        c.vertebrae = c.vertebrae or (exact or loose or [None])[0]


class _Claim:
    """An atomic per-case lock (``mkdir``); a lock left by a dead process is taken over."""

    def __init__(self, out: Path, case_id: str):
        self.path = out / f".{case_id}.lock"
        self.held = False

    def acquire(self) -> bool:
        try:
            self.path.mkdir()
        except FileExistsError:
            try:
                tag = (self.path / "pid").read_text().strip()
            except OSError:  # just created by another run, which has not written its tag yet
                tag = "" if time.time() - self.path.stat().st_mtime > 30 else owner_tag()
            if not _dead(tag):
                return False          # a live run (or one on another host) holds it
            shutil.rmtree(self.path, ignore_errors=True)
            return self.acquire()
        (self.path / "pid").write_text(owner_tag())
        self.held = True
        return True

    def release(self) -> None:
        """Drop the lock if this run holds it (never another run's)."""
        if self.held:
            shutil.rmtree(self.path, ignore_errors=True)
            self.held = False


def owner_tag() -> str:
    """``PID@HOST`` of this process: names its partial folders and locks (workers may run on other hosts)."""
    return f"{os.getpid()}@{socket.gethostname()}"


def _dead(tag: str) -> bool:
    """True when ``tag``'s process is gone: a process of this host that no longer runs (another host's counts as
    alive: its liveness cannot be checked from here), or an unreadable tag."""
    pid, _, host = tag.partition("@")
    if host and host != socket.gethostname():
        return False
    return not (pid.isdigit() and _alive(int(pid)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except (OSError, ValueError):
        return False


def clean_stale(out: Path) -> int:
    """Remove what dead processes left (``.<case>.partial-PID@HOST``, ``.old-PID@HOST``); return how many."""
    n = 0
    for p in out.glob(".*"):
        m = STALE.match(p.name)
        if m and _dead(m.group(2)):
            shutil.rmtree(p, ignore_errors=True)
            n += 1
    return n


def check_writable(out: Path) -> None:
    """Create ``out`` and prove a file can be written there (``os.access`` says yes to root on a read-only disk)."""
    probe = out / f".plexus-write-test-{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise OutputError(out, f"output folder is not writable ({exc.strerror or type(exc).__name__})") from None


def select_shard(cases: list[CaseInput], k: int, n: int) -> list[CaseInput]:
    """Shard ``k`` of ``n`` (1-based): every n-th case of the list sorted by case id, starting at the k-th.

    Deterministic for a given set of inputs whatever their order, so N jobs of a scheduler's array given the same
    inputs process every case exactly once between them.
    """
    if not 1 <= k <= n:
        raise ValueError(f"--shard: expected K/N with 1 <= K <= N, got {k}/{n}")
    ordered = sorted(cases, key=lambda c: (c.case_id, str(c.path)))
    return ordered[k - 1::n]


def finished(out: Path, case_id: str) -> bool:
    """True when ``out/<case_id>/`` holds a complete case (written atomically, see the module docstring)."""
    return (out / case_id / DONE).exists()


def segment_case(image, prepared, model, meta, args):
    """The network part of a case (main process: it holds the model and the device): stage 2 on the crop that
    follows the canal (``prepared``: an :class:`~pipeline.inference.CanalCrop`)."""
    from .inference import segment_in_canal

    return segment_in_canal(image, model, meta, prepared, device=args.device_obj, tta=args.tta,
                            overlap=args.overlap, roi_mm=getattr(args, "canal_margin", 4.0))


def prepare_case(image, meta, args):
    """Stage 1 on the whole scan, then the canal's crop on the model grid (or the canal alone: no spine in view)."""
    from .inference import prepare_in_canal

    canal = find_spine(image, args.modality_name)
    if not canal.found:
        return canal
    return prepare_in_canal(image, canal, meta, modality=args.modality_name or canal.modality,
                            crop_margin_mm=getattr(args, "crop_margin", 25.0))


def find_spine(image, modality_name: str | None):
    """Stage 1 with the modality given, else guessed from the intensities; when the guess finds no spine, the other
    modality's rules are tried (a CT crop without air reads as MR)."""
    from .preprocess import guess_modality
    from .spine import find_canal

    modality = modality_name or guess_modality(image)
    canal = find_canal(image, modality)
    if not canal.found and modality_name is None:
        other = find_canal(image, "MR" if modality == "CT" else "CT")
        if other.found:
            log.info("%s: modality guessed %s, but the spine is found as %s: read as %s", image.path, modality,
                     other.modality, other.modality)
            canal = other
    return canal


def write_no_spine(case: CaseInput, image, canal, out: Path) -> dict:
    """A case with no spine in view: no plexus, a folder holding its status and the reason (a re-run skips it)."""
    tmp = out / f".{case.case_id}.partial-{owner_tag()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        meas = {"case_id": case.case_id, "input": str(case.path), "status": canal.status, "reason": canal.reason,
                "modality": canal.modality, "stage1": canal.summary(), "total_volume_mm3": 0.0,
                "warnings": [f"{case.path}: {canal.status}: {canal.reason}; no plexus written"]}
        write_text(tmp / "measurements.json", json.dumps(meas, indent=2))
        from .export.qc import qc_picture

        qc_picture(image, tmp / "qc.png", mask=image.with_array(np.zeros(image.shape, np.uint8)), centerlines=[],
                   calibre_rows=[], title=f"{case.case_id}: {canal.status} ({canal.reason})")
        (tmp / DONE).write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
        _publish(tmp, out / case.case_id)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"status": canal.status, "reason": canal.reason, "stage1_s": round(canal.seconds, 3)}


def _content_warnings(case: CaseInput, labels) -> list[str]:
    """Say so when the model found no plexus, or no spine at all (results of such a case mean little)."""
    bone_ml = float((labels.array == 2).sum()) * float(np.prod(labels.spacing)) / 1000.0
    plexus = bool((labels.array == 1).any())
    if bone_ml < 1.0:
        return [f"{case.path}: {'' if plexus else 'no plexus and '}no vertebral bone found "
                f"({bone_ml:.2f} ml); is there a spine in this scan?"]
    return [] if plexus else [f"{case.path}: no plexus found (the model found {bone_ml:.0f} ml of vertebral bone)"]


def _write_case(case: CaseInput, image, labels, prob_plexus, modality, model_name, tmp: Path,
                save_probabilities: bool, options=None, canal=None) -> None:
    from dataclasses import replace

    from .levels import read_vertebrae
    from .measure_case import measure_volumes
    from .postprocess.measure import MeasureOptions

    prob = image.with_array(prob_plexus)
    options = options or MeasureOptions()
    vert = read_vertebrae(case.vertebrae, options.vertebrae_convention) if case.vertebrae else None
    options = replace(options, vertebrae_convention="verse") if vert is not None else options
    labels.meta["warnings"] = [*labels.meta.get("warnings", []), *_content_warnings(case, labels)]
    bone = None if vert is not None else _bone_for_levels(image, labels, canal, modality)  # levels from bone
    canal_vol = image.with_array(canal.canal, kind="canal") if canal is not None else None
    with in_background(_write_network_outputs, tmp, labels, prob if save_probabilities else None, canal_vol):
        measure_volumes(labels, tmp, image=image, vertebrae=vert, probabilities=prob, bone=bone, options=options,
                        title=case.case_id, canal=canal_vol)
    meas = json.loads((tmp / "measurements.json").read_text())
    meas.update({"case_id": case.case_id, "input": str(case.path), "modality": modality, "model": model_name,
                 "vertebrae": str(case.vertebrae) if case.vertebrae else None, "status": "ok"})
    if canal is not None:
        meas["stage1"] = canal.summary()
    write_text(tmp / "measurements.json", json.dumps(meas, indent=2, default=float))
    (tmp / DONE).write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))


def _bone_for_levels(image, labels, canal, modality: str):
    """The bone the levels are counted on: on CT the scan's own bone (over 180 HU) within 80 mm of the canal stage 1
    found (the whole vertebral bodies, which the network's crop cuts); else the network's bone class."""
    if canal is None or modality != "CT":
        return labels.with_array((labels.array == 2).astype(np.uint8))
    from .spine.roi import crop_box

    box = crop_box(canal.canal, image.affine, 80.0)
    bone = np.zeros(image.shape, np.uint8)
    bone[box] = np.asarray(image.array[box]) > 180.0
    return labels.with_array(bone)


def _write_network_outputs(tmp: Path, labels, prob, canal=None) -> None:
    """The label map on the input grid, the canal stage 1 found, and the plexus probability map when asked for."""
    write_image(labels, tmp / "segmentation.nii.gz")
    if canal is not None:
        write_image(canal, tmp / "canal.nii.gz")
    if prob is not None:
        write_image(prob, tmp / "probabilities.nii.gz")


def _publish(tmp: Path, final: Path) -> None:
    """Rename a complete case folder into place (``--overwrite``: the old one goes only once the new is complete)."""
    if final.exists():
        old = final.with_name(f".{final.name}.old-{owner_tag()}")
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)


def finish_case(case: CaseInput, image, labels, prob_plexus: np.ndarray, modality: str, model_name: str, out: Path,
                save_probabilities: bool, options=None, canal=None) -> dict:
    """Measure and export one segmented case into ``out/<case_id>/`` atomically (runs in a worker process)."""
    t1 = time.perf_counter()
    tmp = out / f".{case.case_id}.partial-{owner_tag()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        _write_case(case, image, labels, prob_plexus, modality, model_name, tmp, save_probabilities, options, canal)
        _publish(tmp, out / case.case_id)
    except BaseException as exc:  # nothing of a failed or interrupted case is kept
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise OutputError(out, f"disk full while writing case {case.case_id}; the case was not kept") from None
        if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            raise OutputError(out, f"cannot write case {case.case_id} ({exc.strerror})") from None
        raise
    return {"postprocess_s": round(time.perf_counter() - t1, 3), "modality": modality}


def _failure(case: CaseInput, exc: BaseException) -> dict:
    """The ``run.json`` entry of a failed case: one line naming the input and the problem."""
    msg = str(exc) if isinstance(exc, PlexusError) else f"{case.path}: {type(exc).__name__}: {exc}"
    return {"case_id": case.case_id, "input": str(case.path), "error": msg}


def default_workers(device, cores: int | None = None) -> int:
    """Measurement worker processes when ``--workers`` is not given: none on the CPU (they would only compete with
    the network for the cores); on a GPU one per three cores beyond the two the main process uses (each worker
    threads its distance transforms, sampling and nearest-point queries), from 1 to 4: a whole-spine case takes
    some 10 s of measurement, against a few seconds of network."""
    if device.type != "cuda":
        return 0
    from .resample import available_cores

    return max(1, min(4, ((cores if cores is not None else available_cores()) - 2) // 3))


def measure_options(args):
    """The measurement options of ``plexus infer`` (levels from the model's bone class when no map is given)."""
    from .postprocess.measure import MeasureOptions

    return MeasureOptions(lumbar_count=getattr(args, "lumbar_count", 5), anchor=getattr(args, "anchor", None),
                          vertebrae_convention=getattr(args, "vertebrae_convention", "auto"))


def run_batch(inputs: list[str], out: Path, args) -> int:
    """Run the batch; return 0 when every case succeeded, 1 when some failed."""
    from tqdm import tqdm

    from .inference import pick_device
    from .train.model_io import load_model

    check_writable(out)
    if clean_stale(out):
        log.info("removed partial outputs left by an interrupted run")
    cases = discover(inputs, args.vertebrae)
    if not cases:
        raise InputError(inputs[0] if inputs else ".", "no input scans found")
    shard = getattr(args, "shard", None)
    if shard is not None:
        cases = select_shard(cases, *shard)
        log.info("shard %d/%d: %d cases", shard[0], shard[1], len(cases))
    args.device_obj = pick_device(args.device)
    model, meta = load_model(args.model, args.device_obj)
    args.modality_name = None if args.modality == "auto" else args.modality.upper()
    record = RunRecord()
    todo = [c for c in cases if c.error or args.overwrite or not finished(out, c.case_id)]
    skipped = len(cases) - len(todo)
    if skipped:
        log.info("%d finished cases skipped (use --overwrite to redo them)", skipped)
    if getattr(args, "executor", "local") == "ray":
        from .ray_batch import run_cases_ray

        def ray_fail(case: CaseInput, exc: BaseException) -> None:
            record.failures.append(_failure(case, exc))
            print(f"error: {record.failures[-1]['error']}", file=sys.stderr)

        try:
            run_cases_ray(todo, out, args, args.model, ray_fail, lambda c, t: record.cases.__setitem__(c.case_id, t))
            clean_stale(out)  # partial folders of workers that died here (Ray retried their cases)
        finally:
            _finish(out, cases, record, meta, args)
        return _report_end(out, cases, record, args)
    pool = ThreadPoolExecutor(max_workers=1)

    def load(c: CaseInput):  # in the background, while the network runs on the case before
        if c.error:
            raise InputError(c.path, c.error)
        image = read_image(c.path, series=args.series, first_volume=getattr(args, "first_volume", False))
        return image, prepare_case(image, meta, args)  # stage 1, then the canal's crop on the model grid

    pending = pool.submit(load, todo[0]) if todo else None
    workers = args.workers if getattr(args, "workers", None) is not None else default_workers(args.device_obj)
    post = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) if workers > 0 else None
    inflight: list = []
    bar = tqdm(total=len(todo), desc="cases", unit="case", dynamic_ncols=True)

    def fail(case: CaseInput, exc: BaseException) -> None:
        record.failures.append(_failure(case, exc))
        bar.write(f"error: {record.failures[-1]['error']}", file=sys.stderr)

    def collect(block: bool) -> None:
        while inflight and (block or inflight[0][2].done()):
            case, claim, fut, timings, t0 = inflight.pop(0)
            try:
                timings.update(fut.result())
                timings["total_s"] = round(time.perf_counter() - t0, 3)
                record.cases[case.case_id] = timings
            except Exception as exc:  # reported per case; the batch goes on
                fail(case, exc)
            finally:
                claim.release()
                bar.update(1)

    claim = None
    try:
        for k, case in enumerate(todo):
            timings: dict = {}
            t0 = time.perf_counter()
            claim = _Claim(out, case.case_id)
            current, pending = pending, (pool.submit(load, todo[k + 1]) if k + 1 < len(todo) else None)
            try:
                image, prepared = current.result()  # read and preprocessed while the previous case ran
                timings["read_s"] = round(time.perf_counter() - t0, 3)  # the wait for reading and preprocessing
                if not claim.acquire():
                    log.info("%s: being processed by another run, skipped", case.case_id)
                    bar.update(1)
                    continue
                if not (case.error or args.overwrite) and finished(out, case.case_id):
                    claim.release()  # another run finished it since this one listed the cases
                    log.info("%s: finished by another run, skipped", case.case_id)
                    bar.update(1)
                    continue
                bar.set_postfix_str(case.case_id)
                if isinstance(prepared, CanalResult):  # stage 1 found no spine: a status, not a failure
                    timings.update(write_no_spine(case, image, prepared, out))
                    timings["total_s"] = round(time.perf_counter() - t0, 3)
                    record.cases[case.case_id] = timings
                    log.warning("warning: %s: %s: %s; no plexus written", case.path, prepared.status, prepared.reason)
                    claim.release()
                    bar.update(1)
                    continue
                timings["stage1_s"] = round(prepared.canal.seconds, 3)
                t1 = time.perf_counter()
                seg = segment_case(image, prepared, model, meta, args)
                timings["network_s"] = round(time.perf_counter() - t1, 3)
                job = (case, image, seg.labels, seg.plexus, seg.modality,
                       meta.get("name"), out, args.save_probabilities, measure_options(args), prepared.canal)
            except (PlexusError, ValueError, RuntimeError, OSError, MemoryError) as exc:
                fail(case, exc)
                claim.release()
                bar.update(1)
                continue
            if post is not None:  # measurement and exports overlap the network on the next case
                inflight.append((case, claim, post.submit(finish_case, *job), timings, t0))
                collect(block=len(inflight) > workers)
            else:
                fut = Future()
                try:
                    fut.set_result(finish_case(*job))
                except (PlexusError, ValueError, RuntimeError, OSError, MemoryError) as exc:
                    fut.set_exception(exc)
                inflight.append((case, claim, fut, timings, t0))
                collect(block=True)
        collect(block=True)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the current case's partial folder is already gone
        bar.close()
        for held in [claim] + [c for _, c, *_ in inflight]:
            if held is not None:
                held.release()
        if post is not None:
            post.shutdown(wait=False, cancel_futures=True)
        _finish(out, cases, record, meta, args)
        raise
    if post is not None:
        post.shutdown()
    bar.close()
    pool.shutdown()
    _finish(out, cases, record, meta, args)
    return _report_end(out, cases, record, args)


def _report_end(out: Path, cases: list[CaseInput], record: RunRecord, args) -> int:
    n_ok = sum(finished(out, c.case_id) for c in cases)
    shard = getattr(args, "shard", None)
    then = (f"when every shard is done: plexus summarize {out}" if shard else "summary.csv, run.json, report.html")
    print(f"{n_ok} of {len(cases)} cases finished ({len(record.cases)} by this run), {len(record.failures)} failed; "
          f"outputs in {out}/ ({then})")
    return 1 if record.failures else 0


def _finish(out: Path, cases: list[CaseInput], record: RunRecord, meta: dict, args) -> None:
    """Write this run's record; rebuild summary.csv, run.json and report.html (a shard leaves those to
    ``plexus summarize``, so that N jobs never race on them)."""
    import torch

    run = {"plexus_version": __version__, "torch": torch.__version__, "model": str(args.model),
           "model_name": meta.get("name"), "device": str(args.device_obj),
           "gpu": torch.cuda.get_device_name(args.device_obj) if args.device_obj.type == "cuda" else None,
           "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.started)),
           "wall_s": round(time.time() - record.started, 2), "n_inputs": len(cases),
           "timings": record.cases, "failures": record.failures}
    shard = getattr(args, "shard", None)
    if shard is not None:
        run["shard"] = f"{shard[0]}/{shard[1]}"
        write_text(out / f"run.shard-{shard[0]}-of-{shard[1]}.json", json.dumps(run, indent=2))
        return
    write_text(out / "run.json", json.dumps(run, indent=2))
    write_summary_csv(out)
    build_report(out)
