"""Beat as a thread of the worker: a stop that does not wait out beat's sleep, the project's
scheduler reached through the wrapper, beat's log lines named as beat's, the step chosen by
the pool. A real Celery app and Celery's own beat loop, in memory."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from celery import Celery
from celery.beat import Scheduler

from runner.worker import beat_thread
from runner.worker.beat_thread import BeatThread, WaitingScheduler


class CountingScheduler(Scheduler):
    """Celery's in-memory scheduler that asks beat to sleep an hour between ticks."""

    ticks = 0
    closed = False

    def tick(self, *args, **kwargs):
        type(self).ticks += 1
        return 3600.0

    def close(self):
        type(self).closed = True


@pytest.fixture
def app():
    app = Celery("beat_thread_test", broker="memory://", set_as_current=False)
    CountingScheduler.ticks, CountingScheduler.closed = 0, False
    yield app
    app.close()


def test_a_stop_ends_beats_hour_long_sleep_at_once_and_saves(app):
    beat = BeatThread(app, scheduler_cls=CountingScheduler)
    beat.start()
    deadline = time.monotonic() + 10
    while CountingScheduler.ticks == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert CountingScheduler.ticks == 1
    started = time.monotonic()
    beat.stop(timeout=10)
    beat.join(timeout=10)
    assert not beat.is_alive()
    assert time.monotonic() - started < 5  # Celery's own threaded beat would sleep 3600 s
    assert CountingScheduler.closed  # Celery's loop saved (closed) the schedule
    assert CountingScheduler.ticks == 1


def test_the_wrapper_reaches_the_projects_scheduler_both_ways(app):
    inner = CountingScheduler(app=app, lazy=True)
    wrapped = WaitingScheduler(inner, threading.Event())
    wrapped.sync_every_tasks = 1  # what the beat record sets
    assert inner.sync_every_tasks == 1
    assert wrapped.max_interval == inner.max_interval
    assert wrapped.tick() == 0.0  # Celery's loop must never sleep itself
    shutdown = threading.Event()
    shutdown.set()
    stopping = WaitingScheduler(inner, shutdown)
    stopping.tick()
    assert stopping.tick() == 0.0 and CountingScheduler.ticks == 2  # no tick once set


def test_records_from_beats_thread_carry_beats_process_name():
    before = logging.getLogRecordFactory()
    try:
        beat_thread.install()
        beat_thread.install()  # idempotent: one wrapper
        names: list[str] = []

        def log() -> None:
            record = logging.getLogRecordFactory()("x", logging.INFO, __file__, 1, "m", (), None)
            names.append(record.processName)

        thread = threading.Thread(target=log, name=beat_thread.THREAD_NAME)
        thread.start()
        thread.join()
        log()
        assert names == ["Beat", "MainProcess"]
    finally:
        logging.setLogRecordFactory(before)


def test_the_beat_step_is_a_thread_with_the_threads_pool_only(app):
    from celery.concurrency import prefork, thread

    class Worker:
        def __init__(self, pool_cls):
            self.app, self.pool_cls = app, pool_cls
            self.schedule_filename, self.scheduler = None, CountingScheduler

    step = beat_thread.Beat.__new__(beat_thread.Beat)
    assert isinstance(step.create(Worker(thread.TaskPool)), BeatThread)
    assert not isinstance(step.create(Worker(prefork.TaskPool)), BeatThread)
    from celery.worker.worker import WorkController

    steps, factory = WorkController.Blueprint.default_steps, logging.getLogRecordFactory()
    try:
        beat_thread.install()
        assert "runner.worker.beat_thread:Beat" in WorkController.Blueprint.default_steps
        assert "celery.worker.components:Beat" not in WorkController.Blueprint.default_steps
    finally:
        WorkController.Blueprint.default_steps = steps
        logging.setLogRecordFactory(factory)
