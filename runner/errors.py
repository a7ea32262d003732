"""The runner's exceptions and exit statuses.

Every failure the runner can explain is one of these exceptions; ``runner.__main__`` is the
only place that turns them into a message and an exit status.
"""

from __future__ import annotations

from dataclasses import dataclass

# Exit statuses, named so that tests, the README and the code agree.
EXIT_OK = 0
EXIT_FAILURE = 1  # something went wrong while starting (migrations, preflight)
EXIT_BAD_CONFIG = 2  # bad input: nothing was started
EXIT_COMPONENT_FAILED = 3  # a component could not start; the runner stopped the rest

# A program's own exit statuses when it exits on purpose, read by runner.supervise.exits:
# supervisord would count an exit soon after a start as a failed start, and three of those
# stop the service. These never count; each says how soon to start the program again.
EXIT_PLANNED_RESTART = 90  # the worker restarts itself (CELERY_MAX_TASKS_PER_CHILD, beat died)
EXIT_MEMORY_RESTART = 91  # the worker gives back what its tasks kept (its memory share)
EXIT_BROKER_UNAVAILABLE = 75  # sysexits' EX_TEMPFAIL: Redis cannot be used now; try later


# How much of a bad value a one-line error echoes back.
MAX_VALUE_SHOWN = 80


@dataclass(frozen=True)
class Problem:
    """One bad environment variable: which, what it held (masked) and how to fix it."""

    variable: str
    value: str | None
    fix: str

    def __str__(self) -> str:
        if self.value is None:
            return f"{self.variable}: {self.fix}"
        if len(self.value) > MAX_VALUE_SHOWN:  # a pasted file, say: its start is enough
            shown = f"{self.value[:MAX_VALUE_SHOWN]!r}... ({len(self.value)} characters)"
        else:
            shown = repr(self.value)
        return f"{self.variable}={shown}: {self.fix}"


class RunnerError(Exception):
    """A failure the runner explains in words and ends with ``exit_status``."""

    exit_status = EXIT_FAILURE

    def lines(self) -> list[str]:
        return [str(self)]


class ConfigError(RunnerError):
    """Bad input: every problem found, reported at once, before anything starts."""

    exit_status = EXIT_BAD_CONFIG

    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems

    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]


class PreflightError(RunnerError):
    """A check before start failed (Redis unreachable, data directory read-only, ...)."""


class StartError(RunnerError):
    """A step of the start sequence (e.g. migrations) failed."""
