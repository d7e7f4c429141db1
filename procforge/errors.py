"""The exception tree and the exit codes, in one place.

Every error a user can cause is one of these, carries a one-line message naming the file, task and
field at fault, and maps to a documented exit code (docs/cli.md). The CLI turns them into that line;
nothing else should reach the user as a traceback.
"""

from __future__ import annotations

# Exit codes shared by every command (docs/cli.md).
EXIT_OK = 0
EXIT_FAIL = 1  # the command ran and the answer is "no": a step failed, a tree is unreachable, diff
EXIT_INVALID = 2  # bad input: unreadable, malformed or inconsistent file, bad arguments
EXIT_ENVIRONMENT = 3  # the machine cannot do it: missing privilege, pids taken, kernel refused


class ProcforgeError(Exception):
    """Base of every error procforge reports to a user."""

    exit_code = EXIT_FAIL


class InvalidInput(ProcforgeError):
    """A file or argument is malformed or violates an invariant."""

    exit_code = EXIT_INVALID

    def __init__(self, message: str, *, source: str | None = None) -> None:
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


class TreeError(InvalidInput):
    """A tree violates the format or an invariant of real process trees."""


class StepSyntaxError(InvalidInput):
    """A step list cannot be parsed."""


class EnvironmentProblem(ProcforgeError):
    """The machine cannot do what was asked (privilege, pids in use, kernel feature)."""

    exit_code = EXIT_ENVIRONMENT
