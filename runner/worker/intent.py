"""The worker's reason to exit on its own, told to supervisord by its exit status.

A restart the worker asks for itself (after CELERY_MAX_TASKS_PER_CHILD tasks, to give back
memory its tasks kept, because its beat died) is Celery's warm shutdown, started with a
SIGTERM to itself: the running tasks finish, the reserved ones go back to the queue. Celery
then exits with status 0, which supervisord cannot tell from a crash soon after a start.
``restart(status)`` records why (a status of ``runner.errors``) and starts the warm shutdown;
``exit_status(celery_status)`` is what the process exits with, which
``runner.supervise.exits`` judges.
"""

from __future__ import annotations

import os
import signal

_requested: list[int] = []  # the first reason given wins


def restart(status: int) -> None:
    """Exit gracefully with ``status`` (Celery's warm shutdown, from any thread)."""
    restart_status(status)
    os.kill(os.getpid(), signal.SIGTERM)


def restart_status(status: int) -> None:
    """Exit with ``status`` however this process ends (the caller ends it)."""
    if not _requested:
        _requested.append(status)


def exit_status(status: int | str | None) -> int | str | None:
    """The status to exit with: the reason asked for when Celery would exit cleanly."""
    if _requested and status in (0, None):
        return _requested[0]
    return status
