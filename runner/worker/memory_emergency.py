"""The memory budget's last resort for a threads-pool worker: out now, and no third run.

A threads-pool worker runs its tasks in its own process: nothing stops one task, and its
graceful stop (Celery's warm shutdown) waits for the running tasks, the one holding the
memory among them. Seen under the default 512 MB budget: a task holding 420 MB kept the
tree over the budget for 85 s, and, given back at each restart, ran again five times
without ever completing; on Render the kernel's OOM killer acts first.

Over the budget's last-resort line the watchdog (``runner.supervise.watchdog``, inside
supervisord) sends this process ``EMERGENCY_SIGNAL``. Here, in a thread (the handler only
records the signal), the worker:

1. writes down the tasks it was running (``memory-suspects.json`` in the data directory:
   id, name, how many emergencies each was running at) and says so in one line, naming
   them;
2. gives back everything it holds (``runner.worker.entry``'s end of grace: Redis's
   unacknowledged index brought forward, or back in the local queue) and exits at once
   with ``EXIT_MEMORY_RESTART``: the tree is back under the budget within a second, and
   supervisord starts a new worker (``runner.supervise.exits``).

A prefork worker loses only the child holding the memory: the watchdog SIGKILLs it, Celery
sees the child lost (``WorkerLostError``) and requeues its task (``reject_on_worker_lost``)
or fails it. Here Celery's ``Request.on_failure`` is wrapped in the worker's main process
(``count_killed_children``): each task whose child was SIGKILLed (by the watchdog, or by the
kernel's OOM killer) is counted the same way, and revoked at once when it reaches the
limit, so its requeued message is settled as REVOKED rather than run again.

The rule for a task that alone passes the budget: a task that was running at
``MAX_EMERGENCIES`` emergencies is not run again. The next worker adds it to Celery's own
revoked set as it starts (one line names it): Celery acknowledges its message without
running it and stores its state as REVOKED, so ``AsyncResult.get()`` raises
``TaskRevokedError`` instead of waiting for ever. A task that merely ran beside it at two
emergencies is revoked too: with threads, the runner cannot tell which one held the memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

logger = logging.getLogger("runner.worker")

EMERGENCY_SIGNAL = signal.SIGURG  # runner.supervise.watchdog.EMERGENCY_SIGNAL
MAX_EMERGENCIES = 2
SUSPECTS_NAME = "memory-suspects.json"
FORGET_AFTER_SECONDS = 24 * 3600.0  # an entry this old is dropped
DATA_DIR_VARIABLE = "RUNNER_DATA_DIR"  # set for every program by runner.supervise.launch


def suspects_path() -> Path | None:
    data_dir = os.environ.get(DATA_DIR_VARIABLE)
    return Path(data_dir) / SUSPECTS_NAME if data_dir else None


def read_suspects(path: Path, now: float) -> dict[str, dict]:
    """The tasks seen running at emergencies, fresh ones only: {id: {name, count, at}}."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        str(task_id): entry
        for task_id, entry in data.items()
        if isinstance(entry, dict) and now - float(entry.get("at", 0)) < FORGET_AFTER_SECONDS
    }


def record_suspects(path: Path, running: list[tuple[str, str]], now: float) -> dict[str, dict]:
    """Count one more emergency for each (id, name) running; written atomically."""
    suspects = read_suspects(path, now)
    for task_id, name in running:
        entry = suspects.get(task_id, {"name": name, "count": 0})
        suspects[task_id] = {"name": name, "count": int(entry["count"]) + 1, "at": now}
    with contextlib.suppress(OSError):
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".suspects-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as file:
                json.dump(suspects, file)
            os.replace(temporary, path)
        except OSError:
            os.unlink(temporary)
            raise
    return suspects


def not_to_run(suspects: dict[str, dict]) -> dict[str, str]:
    """{id: name} of the tasks that were running at MAX_EMERGENCIES emergencies or more."""
    return {
        task_id: str(entry.get("name", "?"))
        for task_id, entry in suspects.items()
        if int(entry.get("count", 0)) >= MAX_EMERGENCIES
    }


def revoke_repeat_offenders() -> None:
    """As a worker starts: the tasks not to run again join Celery's revoked set."""
    path = suspects_path()
    if path is None:
        return
    for task_id, name in not_to_run(read_suspects(path, time.time())).items():
        _revoke(task_id, name)


def _revoke(task_id: str, name: str) -> None:
    from celery.worker import state

    if task_id in state.revoked:
        return
    state.revoked.add(task_id)
    logger.error(
        "worker: task %s[%s] was running each of the %d times the service passed its "
        "memory budget's last line: it is not run again (revoked; its result says so); "
        "give it less data at a time, or the service a larger budget (MEMORY_BUDGET_MB)",
        name,
        task_id,
        MAX_EMERGENCIES,
    )


def _killed(error: BaseException | None) -> bool:
    """Whether ``error`` says a pool child was SIGKILLed (billiard's WorkerLostError)."""
    return type(error).__name__ == "WorkerLostError" and "SIGKILL" in str(error)


def count_killed_children() -> None:
    """In a prefork worker's main process: count each task whose child was SIGKILLed, and
    revoke it at the limit before Celery requeues it (idempotent)."""
    from celery.worker.request import Request

    original = Request.on_failure
    if getattr(original, "runner_counts", False):
        return

    def on_failure(self, exc_info, *args, **kwargs):
        error = getattr(exc_info, "exception", None)
        error = getattr(error, "exc", error)  # Celery's ExceptionWithTraceback
        if _killed(error):
            path = suspects_path()
            if path is not None:
                suspects = record_suspects(path, [(self.id, self.name)], time.time())
                if self.id in not_to_run(suspects):
                    _revoke(self.id, self.name)
        return original(self, exc_info, *args, **kwargs)

    on_failure.runner_counts = True
    Request.on_failure = on_failure


def _running() -> list[tuple[str, str]]:
    from celery.worker import state

    return [(request.id, request.name) for request in list(state.active_requests)]


def install(end_now) -> None:
    """Handle EMERGENCY_SIGNAL in this (threads-pool worker's main) process: ``end_now``
    gives back what the worker holds and exits. Call before Celery runs."""
    requested = threading.Event()

    def on_signal(_signum, _frame) -> None:
        requested.set()

    def emergency() -> None:
        requested.wait()
        running = _running()
        path = suspects_path()
        if path is not None:
            record_suspects(path, running, time.time())
        logger.error(
            "worker: the service is over its memory budget's last line: exiting now, without "
            "waiting for %s (given back to the queue; a task running at %d such exits is "
            "not run again)",
            ", ".join(f"{name}[{task_id}]" for task_id, name in running) or "no task",
            MAX_EMERGENCIES,
        )
        end_now()

    threading.Thread(target=emergency, name="runner-memory-emergency", daemon=True).start()
    signal.signal(EMERGENCY_SIGNAL, on_signal)
