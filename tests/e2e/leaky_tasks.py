"""Test-only Celery tasks that make a worker's pool child grow and stay grown (a leak).

``leaky.hold(mb, seconds=0)`` allocates ``mb`` MB, keeps it in a module-level list (so the
pool child that ran it stays that much bigger after the task, as a leaking task would
leave it), optionally sleeps ``seconds`` while holding it (so a test can act while the
task runs), and returns ``{"pid": ..., "held_mb": ...}``: which child ran it, and how much
that child now holds in total.

How a worker gets these tasks: this module exposes the demo project's Celery app as
``app``, so it can itself be the app module, found by Celery's ``-A`` like the demo's:

- through the runner: ``CELERY_APP=tests.e2e.leaky_tasks`` (the worker and beat programs
  then run ``python -m runner.worker.entry -A tests.e2e.leaky_tasks ...``, from the
  repository root, which ``python -m`` puts on ``sys.path``);
- by hand: ``celery -A tests.e2e.leaky_tasks worker`` or, with the demo app,
  ``celery -A app worker --include tests.e2e.leaky_tasks`` (``--include`` is a worker
  option: it imports the module in the main process before the pool forks).

``CELERY_IMPORTS`` would not do: the demo's settings do not read it from the environment.
A client sends the tasks by name, without importing this module:
``app.send_task("leaky.hold", (64,))``.
"""

from __future__ import annotations

import os
import time

from app.celery import app

MB = 1024 * 1024
HOLD_TASK = "leaky.hold"

# What this process keeps: one bytes object per call of hold().
HELD: list[bytes] = []


def held_mb() -> int:
    return sum(len(block) for block in HELD) // MB


@app.task(name=HOLD_TASK)
def hold(mb: int, seconds: float = 0.0) -> dict[str, int]:
    """Keep ``mb`` more MB in this process, maybe sleep ``seconds``, say who holds how much."""
    # Multiplying bytes writes every page (a zero-filled bytearray might not be resident).
    HELD.append(b"\x01" * (int(mb) * MB))
    if seconds:
        time.sleep(float(seconds))
    return {"pid": os.getpid(), "held_mb": held_mb()}
