"""Argument types of the ``plexus`` command line, checked when the command line is read (a usage error before
any work), and :func:`usage`, which makes the ``ValueError`` of a config built from the arguments a usage error."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

from ..core.errors import PlexusError, UsageError


@contextlib.contextmanager
def usage() -> Iterator[None]:
    """Turn the ``ValueError`` of a config built from the command line (it names the parameter) into a
    :class:`UsageError`; a ``ValueError`` anywhere else is a bug."""
    try:
        yield
    except PlexusError:
        raise
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def floats(text: str, n: int = 3) -> tuple[float, ...]:
    try:
        vals = tuple(float(x) for x in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {n} comma-separated numbers, got {text!r}") from None
    if len(vals) == 1:
        vals = vals * n
    if len(vals) != n:
        raise argparse.ArgumentTypeError(f"expected {n} comma-separated numbers, got {text!r}")
    return vals


def levels(text: str) -> tuple[str, str]:
    parts = text.replace("-", ":").split(":")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected TOP:BOTTOM such as L1:S1, got {text!r}")
    return parts[0].upper(), parts[1].upper()


def anchor(text: str) -> str:
    """``--anchor NAME@Z``, checked when the command line is read (a usage error before any work)."""
    from ..postprocess.vertebrae import parse_anchor

    try:
        parse_anchor(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--anchor: ")) from None
    return text


def shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N such as 2/8, got {text!r}") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"expected K/N with 1 <= K <= N, got {text!r}")
    return k, n


def nonneg_mm(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a length in mm, got {text!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"expected a length >= 0 mm, got {text!r}")
    return v
