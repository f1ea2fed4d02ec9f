"""Write files so that a half-written output can never look finished.

Every writer in plexus writes to a hidden temporary name in the destination folder and renames it into
place only when the write has completed (``os.replace`` is atomic on one file system).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path


def _suffixes(path: Path) -> str:
    name = path.name
    for ext in (".nii.gz", ".seg.nrrd", ".mrk.json", ".schema.csv"):
        if name.endswith(ext):
            return ext
    return path.suffix


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    The temporary name keeps the file's extension (writers such as nibabel choose the format from it)
    and starts with a dot, so a crash leaves only a hidden ``.name.partial-PID.ext`` behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = _suffixes(path)
    stem = path.name[: len(path.name) - len(ext)] if ext else path.name
    tmp = path.with_name(f".{stem}.partial-{os.getpid()}{ext}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


@contextlib.contextmanager
def in_background(fn, *args) -> Iterator[None]:
    """Run ``fn(*args)`` in a thread while the block runs (writers of compressed volumes: zlib releases the GIL).

    Leaving the block always waits for ``fn`` to end, even through Ctrl-C or SIGTERM, so that nothing still
    writes into a case folder that is about to be removed; then the block's exception, else ``fn``'s, is raised.
    A block interrupted before the thread got going (a signal while it starts) makes ``fn`` not run at all.
    """
    lock = threading.Lock()
    state = {"cancelled": False, "running": False, "error": None}
    done = threading.Event()

    def run() -> None:
        try:
            with lock:
                if state["cancelled"]:
                    return
                state["running"] = True
            fn(*args)
        except BaseException as exc:  # raised in the caller's thread when the block is left
            state["error"] = exc
        finally:
            done.set()

    try:
        threading.Thread(target=run, name="plexus-background", daemon=True).start()
        yield
    except BaseException:
        with lock:
            state["cancelled"] = True
            running = state["running"]
        if running:
            _wait(done)
        raise
    _wait(done)
    if state["error"] is not None:
        raise state["error"]


def _wait(done: threading.Event) -> None:
    """Wait for ``done``, through interruptions; the first interruption is raised once it is set."""
    interrupted = None
    while not done.is_set():
        try:
            done.wait()
        except BaseException as exc:  # interrupted while waiting: finish waiting first, raise it after
            interrupted = interrupted or exc
    if interrupted is not None:
        raise interrupted
