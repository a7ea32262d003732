"""What this instance's beat did last, for the status page: written by beat as it sends.

The status page used to read beat's sign of life from the database's ``last_run_at``: the
last send of *any* instance's beat (a restarted beat was credited with its predecessor's),
written only when beat saves its schedule (every 3 minutes by Celery's default, so a task
sent every minute looked 3 minutes old and a due time stayed in the past unflagged). Here
the beat process itself keeps one small file in the data directory
(``runner.config.settings.beat_record_path``): its PID and start time, written as it starts,
then the task and time of each send (``after_task_publish``, in the beat process only),
replaced atomically. No Redis command is spent on it.

And beat saves its schedule after every task it sends (``sync_every_tasks = 1``, as the
leader lock's scheduler already does; a project that set ``beat_sync_every`` keeps its
value): ``last_run_at`` in the database is then the last send, and a schedule past due is
really late. The cost is one database write per periodic send.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from celery.signals import after_task_publish, beat_init

from runner.config.settings import beat_record_path

DATA_DIR_VARIABLE = "RUNNER_DATA_DIR"


class BeatRecord:
    """The file of one beat process: written at its start and after each send."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = {"pid": os.getpid(), "started_at": time.time(), "task": None, "sent_at": None}

    def started(self) -> None:
        self._write()

    def sent(self, sender=None, headers=None, **_kwargs) -> None:
        task = (headers or {}).get("task") or sender
        self.data |= {"task": str(task), "sent_at": time.time()}
        self._write()

    def _write(self) -> None:
        # Never a reason for beat to fail: the page then says it knows nothing.
        with contextlib.suppress(OSError):
            fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".beat-", suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as file:
                    json.dump(self.data, file)
                os.replace(temporary, self.path)
            except OSError:
                os.unlink(temporary)
                raise


def save_after_every_send(scheduler) -> None:
    """Beat writes its schedule after each send, unless the project chose how often."""
    if hasattr(scheduler, "sync_every_tasks") and not scheduler.sync_every_tasks:
        scheduler.sync_every_tasks = 1


def _on_beat_init(sender=None, **_kwargs) -> None:
    # In the beat process (embedded: forked from the worker; separate: its own program).
    if sender is not None:
        save_after_every_send(sender.scheduler)
    data_dir = os.environ.get(DATA_DIR_VARIABLE)
    if not data_dir:
        return
    record = BeatRecord(beat_record_path(Path(data_dir)))
    record.started()
    # Beat as a thread of the worker (runner.worker.beat_thread) shares its process with
    # the tasks, which may publish too: only what beat's own thread publishes is a send.
    beat = threading.get_ident()

    def sent_by_beat(**kwargs) -> None:
        if threading.get_ident() == beat:
            record.sent(**kwargs)

    after_task_publish.connect(sent_by_beat, weak=False)


def install() -> None:
    """Connect the hook (idempotent: Celery keeps one connection per receiver)."""
    beat_init.connect(_on_beat_init, weak=False)
