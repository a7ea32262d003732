"""A worker that has stopped asking Redis for work while it runs nothing is restarted.

Seen with kombu 5.7 and Celery 5.7, both pools: Redis full for a while (``maxmemory``), its
connection cap reached, or its password changed while tasks ran; once the fault was lifted
the worker answered pings (remote control has its own connection) but never took another
message: 0 of 10 new tasks in 90 s, and nothing restarted it. Its consumer had stopped
sending BRPOP (kombu's bookkeeping of delivered messages, or of the pending BRPOP, left
stuck by the errors).

Liveness is taking work, not answering pings. An idle worker asks Redis for work at least
once per BRPOP timeout (a minute with the runner's settings: the BRPOP returns empty and is
sent again). Here kombu's Redis channel notes each BRPOP it sends or reads, and a daemon
thread of the worker's main process looks every ``CHECK_SECONDS``: a worker whose pool runs
no task and that has neither sent nor read a BRPOP for the timeout plus ``MARGIN_SECONDS``
is stuck. "Runs no task" is asked of the pool, not of Celery's list of active requests: in
the Redis-full case that list kept the two tasks whose results could not be stored, long
after their threads had ended (so kombu, its prefetch full of them, sent no BRPOP).
It says so in one line and exits to be started again (``EXIT_BROKER_UNAVAILABLE``; the
tasks it held are given back by its warm shutdown). No Redis command is added: idle cost
stays as it was. Only the Redis transport is watched (the local broker has no BRPOP).
"""

from __future__ import annotations

import logging
import threading
import time

from runner.errors import EXIT_BROKER_UNAVAILABLE
from runner.worker import intent
from runner.worker.beat_watch import worker_stopping

CHECK_SECONDS = 10.0
MARGIN_SECONDS = 15.0
logger = logging.getLogger("runner.worker")


class BrpopClock:
    """When this process's kombu channels last sent or read a BRPOP, and their timeout."""

    def __init__(self) -> None:
        self.last: float | None = None  # None: no BRPOP yet (not Redis, or not started)
        self.timeout = 0.0

    def tick(self, timeout: float | None) -> None:
        self.last = time.monotonic()
        if timeout:
            self.timeout = float(timeout)

    def silent_for(self, now: float) -> float:
        return 0.0 if self.last is None else now - self.last


CLOCK = BrpopClock()


def stuck(clock: BrpopClock, running: int, now: float) -> bool:
    """Whether a worker running ``running`` tasks, whose BRPOPs ``clock`` kept, is stuck."""
    if clock.last is None or running:
        return False
    return clock.silent_for(now) > clock.timeout + MARGIN_SECONDS


class ThreadTasks:
    """How many tasks the threads pool's threads are running now: Celery's thread pool runs
    each task through ``celery.concurrency.thread.apply_target``, counted here."""

    def __init__(self) -> None:
        self.running = 0
        self._lock = threading.Lock()

    def wrap(self, apply_target):
        def counted(*args, **kwargs):
            with self._lock:
                self.running += 1
            try:
                return apply_target(*args, **kwargs)
            finally:
                with self._lock:
                    self.running -= 1

        counted.runner_liveness = True
        return counted


THREAD_TASKS = ThreadTasks()


def running_tasks(pool) -> int:
    """Tasks the worker's pool is running now: the threads counted, prefork's outstanding
    jobs; for another pool, Celery's own list of active requests."""
    from celery.worker import state

    module = type(pool).__module__
    if module.endswith("concurrency.thread"):
        return THREAD_TASKS.running
    jobs = getattr(getattr(pool, "_pool", None), "_cache", None)
    if module.endswith("concurrency.prefork") and jobs is not None:
        return len(jobs)
    return len(state.active_requests)


class LivenessWatch(threading.Thread):
    """Restarts the worker once ``stuck`` says so."""

    def __init__(self, pool, clock: BrpopClock = CLOCK, restart=None) -> None:
        super().__init__(name="runner-liveness", daemon=True)
        self.pool = pool
        self.clock = clock
        self.restart = restart or (lambda: intent.restart(EXIT_BROKER_UNAVAILABLE))

    def run(self) -> None:
        while True:
            time.sleep(CHECK_SECONDS)  # a polling period, nothing to wait for
            if worker_stopping():
                return
            if stuck(self.clock, running_tasks(self.pool), time.monotonic()):
                logger.error(
                    "worker: has asked Redis for no task for %.0f s while running none (its "
                    "consumer stopped after a Redis error); restarting it",
                    self.clock.silent_for(time.monotonic()),
                )
                self.restart()
                return


def _noting(method, clock: BrpopClock):
    def noted(self, *args, **kwargs):
        clock.tick(getattr(self, "brpop_timeout", None))
        return method(self, *args, **kwargs)

    noted.runner_liveness = True
    return noted


def install() -> None:
    """Note the BRPOPs of kombu's Redis channel in this process, and watch once the worker
    is ready (idempotent)."""
    from celery.signals import worker_ready

    try:
        from kombu.transport import redis as kombu_redis
    except ImportError:  # redis-py missing: no Redis transport to watch
        return
    from celery.concurrency import thread

    channel = kombu_redis.Channel
    for name in ("_brpop_start", "_brpop_read"):
        method = getattr(channel, name)
        if not getattr(method, "runner_liveness", False):
            setattr(channel, name, _noting(method, CLOCK))
    if not getattr(thread.apply_target, "runner_liveness", False):
        thread.apply_target = THREAD_TASKS.wrap(thread.apply_target)
    worker_ready.connect(_start_watch, weak=False)


def _start_watch(sender=None, **_kwargs) -> None:
    pool = getattr(sender, "pool", None)  # the consumer's: the worker's pool
    if pool is not None:
        LivenessWatch(pool).start()
