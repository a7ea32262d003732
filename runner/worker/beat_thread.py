"""Beat as a thread of the worker's main process, when the worker runs the threads pool.

``--beat`` makes Celery's worker start beat (its ``Beat`` bootstep) as a process forked
from the worker's main process. That process costs about 18 MB of its own at idle (USS):
every page the worker main writes after the fork is copied for it, and the worker main,
still booting then, writes many. As a thread of the worker main (what Celery's
``EmbeddedService(thread=True)`` does, without its once-a-second ticks) the whole tree was
146.1 -> 131.0 MB of PSS (``bench.model_memory --runs 2``, fork model, 2026-12-07).

- **Threads pool only.** Its main process runs the tasks in threads already. A prefork
  worker forks pool children at any time (replacements, memory recycles); forked while a
  beat thread holds a lock (logging's, a connection pool's), a child could wait on it
  forever. With prefork beat stays the process Celery forks.
- **A stop that does not wait out beat's sleep.** Celery's loop (``Service.start``) sleeps
  with ``time.sleep`` up to the scheduler's max interval (300 s by default), and its
  threaded service's ``stop()`` waits for the loop. Here the scheduler is wrapped: its
  ``tick()`` waits on the service's shutdown event instead, and returns 0, so that Celery's
  loop never sleeps and exits as soon as the event is set. The loop itself is Celery's
  (it differs between Celery 5.3 and 5.7), only the wait moved.
- **Beat's lines still read as beat's**: records logged from the thread carry
  ``processName = "Beat"``, as the embedded process's do in Celery's default log format
  (``runner.supervise.logrelay`` puts them under ``beat``).
"""

from __future__ import annotations

import inspect
import logging
import threading

from celery.beat import Service
from celery.worker import components

from runner.worker.beat_watch import BeatWatch

THREAD_NAME = "Beat"  # Celery's name for its embedded beat, process or thread
# How long a stop waits for beat to save its schedule and free its leader lock.
STOP_TIMEOUT_SECONDS = 10.0
_CELERY_BEAT_STEP = "celery.worker.components:Beat"


class WaitingScheduler:
    """The project's scheduler, its sleep moved into ``tick()`` as a wait on ``shutdown``.

    Everything but ``tick`` goes to the scheduler itself, attributes set included (the
    beat record sets ``sync_every_tasks``).
    """

    def __init__(self, scheduler, shutdown: threading.Event) -> None:
        object.__setattr__(self, "_scheduler", scheduler)
        object.__setattr__(self, "_shutdown", shutdown)
        object.__setattr__(self, "_sleep", 0.0)

    def tick(self, *args, **kwargs) -> float:
        scheduler = self._scheduler
        if self._sleep > 0:
            if self._shutdown.wait(self._sleep):
                return 0.0  # Celery's loop sees the event and saves the schedule
            # What Celery's loop does after its sleep.
            if scheduler.should_sync():
                scheduler._do_sync()
        object.__setattr__(self, "_sleep", scheduler.tick(*args, **kwargs) or 0.0)
        return 0.0

    def __getattr__(self, name: str):
        return getattr(self._scheduler, name)

    def __setattr__(self, name: str, value) -> None:
        setattr(self._scheduler, name, value)


class ThreadService(Service):
    """Celery's beat ``Service`` whose scheduler waits instead of sleeping."""

    def get_scheduler(self, lazy: bool = False, **kwargs):
        scheduler = super().get_scheduler(lazy=lazy, **kwargs)
        return scheduler if lazy else WaitingScheduler(scheduler, self._is_shutdown)


class BeatThread(threading.Thread):
    """Beat in a daemon thread; what Celery's ``Beat`` bootstep starts and stops."""

    def __init__(self, app, **kwargs) -> None:
        super().__init__(name=THREAD_NAME, daemon=True)
        self.app = app
        # Celery 5.7's beat answers remote control itself; embedded, the worker does
        # (what Celery's EmbeddedService sets). Celery 5.3's has no such argument.
        if "remote_control" in inspect.signature(Service.__init__).parameters:
            kwargs.setdefault("remote_control", False)
        self.service = ThreadService(app, **kwargs)

    def run(self) -> None:
        self.app.set_current()
        self.service.start()

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Stop beat and wait, at most ``timeout``, until it has saved its schedule."""
        if not self.service._is_shutdown.is_set():
            self.service.stop()
        # A standby waiting for the leader's lock (runner.worker.beat_leader) waits no more.
        wake = getattr(self.service.__dict__.get("scheduler"), "wake", None)
        if wake is not None:
            wake()
        if self.is_alive():
            self.service._is_stopped.wait(timeout)


class Beat(components.Beat):
    """Celery's ``Beat`` bootstep, with beat as a thread when the pool is threads, and
    watched in both pools (``runner.worker.beat_watch``)."""

    name = "celery.worker.components.Beat"  # the step it replaces, for anything naming it

    def create(self, w):
        self.watch = None
        if not _runs_threads(w):
            return super().create(w)
        w.beat = BeatThread(w.app, schedule_filename=w.schedule_filename, scheduler_cls=w.scheduler)
        return w.beat

    def start(self, w):
        started = super().start(w)
        if self.obj is not None:
            self.watch = BeatWatch(self.obj)
            self.watch.start()
        return started

    def stop(self, w):
        self._unwatch()  # before beat stops: its end is then no surprise
        return super().stop(w)

    def terminate(self, w):
        self._unwatch()
        return super().terminate(w)

    def _unwatch(self) -> None:
        if getattr(self, "watch", None) is not None:
            self.watch.stop()


def _runs_threads(w) -> bool:
    pool = getattr(w, "pool_cls", None)  # a class once the worker has resolved it
    module = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
    return str(module).endswith("concurrency.thread")


def stop(worker, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """Stop the worker's beat thread, if it has one: for exits that skip Celery's stop."""
    beat = getattr(worker, "beat", None)
    if isinstance(beat, BeatThread):
        beat.stop(timeout)


def _name_beat_records(factory):
    def record(*args, **kwargs) -> logging.LogRecord:
        made = factory(*args, **kwargs)
        if made.threadName == THREAD_NAME:
            made.processName = THREAD_NAME
        return made

    record.runner_beat_thread = True
    return record


def install() -> None:
    """Put the step in the worker's blueprint and name beat's log records (idempotent)."""
    from celery.worker.worker import WorkController

    steps = WorkController.Blueprint.default_steps
    if _CELERY_BEAT_STEP in steps:
        WorkController.Blueprint.default_steps = (steps - {_CELERY_BEAT_STEP}) | {
            f"{__name__}:Beat"
        }
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "runner_beat_thread", False):
        logging.setLogRecordFactory(_name_beat_records(factory))
