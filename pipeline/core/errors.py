"""Errors the command line turns into one clear line and a non-zero exit code.

A :class:`PlexusError` is a problem of the user's inputs, arguments or disk: ``plexus`` prints ``error: <message>``
and exits with code 2. Any other exception is a bug in plexus: exit code 1, with its traceback.
"""

from __future__ import annotations


class PlexusError(Exception):
    """Base class of every error plexus reports to a user."""


class UsageError(PlexusError, ValueError):
    """A command-line argument (or an option given to the API) no run can take; the message names it, e.g.
    ``--workers: expected 0 or more, got -1``. Also a :class:`ValueError`: it is a bad value."""


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
