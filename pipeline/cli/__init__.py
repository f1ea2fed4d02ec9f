"""The ``plexus`` command line.

Exit codes: 0 success; 1 some cases of a batch failed, or a bug in plexus (its traceback on stderr, then one line
naming the command); 2 a usage or input error (one line on stderr: ``error: <file>: <problem>``).

The commands import their stage lazily, so that ``plexus --help`` and a usage error answer without loading torch.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from .. import __version__
from ..core.errors import PlexusError, Terminated
from .data import add_info, add_synth
from .run import add_demo, add_infer, add_measure, add_report, add_summarize
from .train import add_evaluate, add_train

log = logging.getLogger("plexus")


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``plexus`` and its commands (each command module adds its own)."""
    parser = argparse.ArgumentParser(prog="plexus", description=__doc__.splitlines()[0] + " "
                                     "Find the epidural venous plexus in spine CT/MR and measure its calibre.")
    parser.add_argument("--version", action="version", version=f"plexus {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (add_synth, add_info, add_infer, add_summarize, add_measure, add_train, add_evaluate, add_report,
                add_demo):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``plexus`` with ``argv`` (default: the process's arguments).

    Returns
    -------
    int
        The exit code: 0 success; 1 some cases failed, or a bug (any exception that is not a
        :class:`~pipeline.core.errors.PlexusError`: traceback logged, one line naming the command); 2 a usage,
        input or output error (one line); 130 Ctrl-C; 143 SIGTERM.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    previous = _terminate_like_ctrl_c()
    try:
        return int(args.func(args) or 0)
    except PlexusError as exc:  # the user's input, arguments or disk: one line
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an output or system problem outside a batch case: one line, no traceback
        print(f"error: {exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug in plexus: its traceback, then one line naming the command
        log.error("plexus %s failed with an unexpected error (a bug; please report it with this traceback):",
                  args.command, exc_info=True)
        print(f"error: plexus {args.command}: bug: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminate_like_ctrl_c():
    """SIGTERM (a scheduler's kill, ``timeout``) unwinds like Ctrl-C: checkpoints saved, partial outputs removed."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise Terminated()

    return signal.signal(signal.SIGTERM, handler)
