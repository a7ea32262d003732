"""Waking up after a sleep: a periodic task that came due many times while the instance
slept runs once at wake, then keeps its normal cadence (django_celery_beat's
DatabaseScheduler counts the next run from the time it ran, not from the missed slots); a
crontab whose hours passed during the sleep runs once too; and the stop before the sleep
saved what beat sent last."""

from __future__ import annotations

import itertools
import signal
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.support.processes import wait_for
from tests.support.runner import manage, start_runner
from tests.support.timeouts import START_TIMEOUT, STOP_TIMEOUT

UTC = timezone.utc  # datetime.UTC from Python 3.11

pytestmark = pytest.mark.e2e

INTERVAL_SECONDS = 6
MISSED_SLOTS = 10
RUNS_WATCHED = 3
# Beat's ticks and the worker add a little jitter to each run's time.
JITTER_SECONDS = 1.5


MISSED_HOURS = 5  # of an hourly crontab
CATCH_UP = "crontab-catch-up"


def last_run_at(env: dict[str, str], name: str) -> datetime:
    database = env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(database, timeout=10) as connection:
        (value,) = connection.execute(
            "SELECT last_run_at FROM django_celery_beat_periodictask WHERE name = ?", (name,)
        ).fetchone()
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def heartbeat_times(env: dict[str, str]) -> list[datetime]:
    database = env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(database, timeout=10) as connection:
        rows = connection.execute("SELECT ran_at FROM app_heartbeat ORDER BY ran_at").fetchall()
    return [datetime.fromisoformat(ran_at).replace(tzinfo=UTC) for (ran_at,) in rows]


def test_schedules_missed_while_asleep_run_once_then_keep_their_cadence(runner_env, tmp_path: Path):
    """The heartbeat, last run 10 intervals ago, runs at once when beat starts, and the runs
    after it are one interval apart: one catch-up run, not one per missed slot. An hourly
    crontab last run 5 hours ago is sent once. SIGTERM (how Render puts an instance to
    sleep) saves the heartbeat's last send, not only its first."""
    manage(runner_env, "migrate", "--noinput")
    manage(
        runner_env,
        "shell",
        "-c",
        "from datetime import timedelta; from django.utils import timezone; "
        "from django_celery_beat.models import PeriodicTask; "
        "task = PeriodicTask.objects.get(name='heartbeat'); "
        f"task.interval.every = {INTERVAL_SECONDS}; task.interval.save(); "
        "PeriodicTask.objects.filter(pk=task.pk).update(last_run_at=timezone.now() - "
        f"timedelta(seconds={INTERVAL_SECONDS * MISSED_SLOTS}))",
    )
    # Hourly, at the minute that was ten minutes ago: five of its times passed since its
    # last run, the next one is 50 minutes away.
    manage(
        runner_env,
        "shell",
        "-c",
        "from datetime import timedelta; from django.utils import timezone; "
        "from django_celery_beat.models import CrontabSchedule, PeriodicTask; "
        "now = timezone.now(); "
        "cron, _ = CrontabSchedule.objects.get_or_create(minute=str((now - "
        "timedelta(minutes=10)).minute), hour='*', day_of_week='*', day_of_month='*', "
        "month_of_year='*', timezone='UTC'); "
        f"task = PeriodicTask.objects.create(name='{CATCH_UP}', task='app.tasks.add', "
        "args='[2, 3]', crontab=cron); "
        "PeriodicTask.objects.filter(pk=task.pk).update(last_run_at=now - "
        f"timedelta(hours={MISSED_HOURS}))",
    )
    runner_env["RUN_WEB"] = "false"  # beat and the worker are what this is about
    runner = start_runner(runner_env, tmp_path)
    with runner:
        runner.wait_for_output("beat: Starting...", START_TIMEOUT)
        beat_started = datetime.now(UTC)
        runs = wait_for(
            lambda: (times := heartbeat_times(runner_env))[RUNS_WATCHED - 1 :] and times,
            START_TIMEOUT,
            message=lambda: f"fewer than {RUNS_WATCHED} heartbeats:\n{runner.output()[-3000:]}",
        )
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=STOP_TIMEOUT) == 0, runner.output()[-3000:]

    assert runner.output().count(f"Sending due task {CATCH_UP} ") == 1, runner.output()[-3000:]
    # Saved at the stop: beat otherwise writes last_run_at at its first send, then only
    # every 3 minutes (sync_every), and would have left the first catch-up run's time.
    saved = last_run_at(runner_env, "heartbeat")
    assert saved > runs[-1] - timedelta(seconds=JITTER_SECONDS), (saved, runs)

    # The catch-up run came at once, not one interval after beat started...
    assert (runs[0] - beat_started).total_seconds() < INTERVAL_SECONDS - JITTER_SECONDS, runs
    # ...and it was the only one: the next runs are each a whole interval apart.
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(runs)]
    assert all(gap > INTERVAL_SECONDS - JITTER_SECONDS for gap in gaps), gaps
