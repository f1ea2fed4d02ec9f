"""Errors the command line turns into one clear line and a non-zero exit code."""

from __future__ import annotations


class PlexusError(Exception):
    """Base class of every error plexus reports to a user."""


class InputError(PlexusError):
    """An input file or folder cannot be used; the message names the file and the problem.

    The CLI prints ``error: <message>`` and exits with code 2.
    """

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # picklable across worker processes
        return (type(self), (self.path, self.problem))


class OutputError(PlexusError):
    """An output cannot be written (folder not writable, disk full); nothing partial is left looking finished."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):
        return (type(self), (self.path, self.problem))


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM, so a terminated run cleans up exactly as on Ctrl-C."""
