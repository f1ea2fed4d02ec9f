"""A signal that lands while :func:`in_background` starts its writer thread: the block is left only once the writer
has ended, or with the writer never to run (else it would write into a case folder being removed, leaving a
``.partial`` behind)."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.core.atomic import in_background


def test_a_signal_while_the_writer_thread_starts_still_waits_for_the_writer(monkeypatch):
    done = []

    def writer():
        done.append("started")
        time.sleep(0.3)
        done.append("ended")

    real_start = threading.Thread.start

    def start_then_interrupted(self):
        real_start(self)
        raise KeyboardInterrupt  # SIGTERM/Ctrl-C arriving while the pool waits for its new thread to start

    monkeypatch.setattr(threading.Thread, "start", start_then_interrupted)
    for _ in range(5):
        done.clear()
        with pytest.raises(KeyboardInterrupt):
            with in_background(writer):
                pass
        at_exit = list(done)
        time.sleep(0.5)
        assert at_exit in ([], ["started", "ended"]) and done == at_exit  # nothing runs on after the block
