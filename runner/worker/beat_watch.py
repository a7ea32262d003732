"""The embedded beat is watched: if it dies, the worker restarts, and beat with it.

Celery's worker starts its embedded beat (``--beat``: a process forked from the worker's
main with the prefork pool, a thread with the threads pool, ``runner.worker.beat_thread``)
and never looks at it again: a beat SIGKILLed, OOM-killed or ended by an exception in its
scheduler left a zombie and a service that sent no periodic task, with no line in the log.
Here a daemon thread of the worker's main process looks every ``WATCH_SECONDS``; when beat
is gone while the worker is not stopping, it says so in one line and restarts the worker
gracefully (``runner.worker.intent``, a planned restart): running tasks finish, and the
new worker starts a new beat. The thread only waits and reads an exit status: it holds no
lock a pool child forked meanwhile could inherit (logging's are re-made at each fork).
"""

from __future__ import annotations

import logging
import threading

from runner.errors import EXIT_PLANNED_RESTART
from runner.worker import intent

WATCH_SECONDS = 2.0
logger = logging.getLogger("runner.worker")
_watches: list[BeatWatch] = []  # this process's, for stop_watching()


class BeatWatch(threading.Thread):
    """Restarts the worker when ``beat`` (a process or a thread) is no longer alive."""

    def __init__(self, beat, interval: float = WATCH_SECONDS, restart=None) -> None:
        super().__init__(name="runner-beat-watch", daemon=True)
        self.beat = beat
        self.interval = interval
        self.restart = restart or (lambda: intent.restart(EXIT_PLANNED_RESTART))
        self.stopping = threading.Event()
        _watches.append(self)

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            if self.beat.is_alive():
                continue
            if self.stopping.is_set() or worker_stopping():
                return  # the worker stopped beat itself, or a signal to the group did
            logger.error(
                "worker: its embedded beat %sis gone (%s): restarting the worker, and beat with it",
                f"(pid {self.beat.pid}) " if getattr(self.beat, "pid", None) else "",
                describe_end(self.beat),
            )
            self.restart()
            return

    def stop(self) -> None:
        self.stopping.set()


def worker_stopping() -> bool:
    """Whether Celery's worker is in its warm or cold shutdown (set by its signal handlers)."""
    from celery.worker import state

    return bool(state.should_stop or state.should_terminate)


def stop_watching() -> None:
    """Stop every watch of this process: for the exits that end beat outside Celery's stop."""
    for watch in _watches:
        watch.stop()


def describe_end(beat) -> str:
    """How beat ended, as far as its object knows: an exit status, a signal, or an exception."""
    code = getattr(beat, "exitcode", None)
    if code is None:
        return "its thread ended" if isinstance(beat, threading.Thread) else "ended"
    if code < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"
