"""The output folder of a batch: per-case claims (atomic locks), atomic publishing of a finished case folder, and
clearing what dead processes left.

Every case is written into a hidden ``.<case>.partial-PID@HOST`` folder and renamed to ``<case>/`` only when all its
files are complete (a ``.complete`` marker last), so an interrupted run never leaves a finished-looking partial case.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
from pathlib import Path

from ..core.errors import OutputError

DONE = ".complete"
STALE = re.compile(r"^\..+\.(partial|old)-(\d+(@.+)?)$")


class Claim:
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


def finished(out: Path, case_id: str) -> bool:
    """True when ``out/<case_id>/`` holds a complete case (written atomically, see the module docstring)."""
    return (out / case_id / DONE).exists()


def publish(tmp: Path, final: Path) -> None:
    """Rename a complete case folder into place (``--overwrite``: the old one goes only once the new is complete)."""
    if final.exists():
        old = final.with_name(f".{final.name}.old-{owner_tag()}")
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)
