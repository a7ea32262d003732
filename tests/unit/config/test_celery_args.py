"""CELERY_WORKER_ARGS and CELERY_BEAT_ARGS: the flags of a project's old start commands,
read into what they mean to the runner or passed on; and the scheduler beat runs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from runner.config.celery_args import CeleryArgs, parse_celery_args
from runner.config.plan import BEAT_SCHEDULER_VARIABLE, make_plan
from runner.config.project import DATABASE_SCHEDULER, CeleryConfig, Project
from runner.config.settings import load_settings
from runner.errors import ConfigError

CWD = Path("/srv/project")
PROJECT = Project("config.settings.production", "DJANGO_SETTINGS_MODULE", "config", "CELERY_APP")
REDIS = {"REDIS_URL": "redis://h:1/0"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", CeleryArgs()),
        ("-Q default,emails -O fair", CeleryArgs(passed=("-Q", "default,emails", "-O", "fair"))),
        ("--loglevel=INFO -c 4", CeleryArgs(concurrency=4, log_level="info")),
        (
            "-c4 -P threads -l warning",
            CeleryArgs(concurrency=4, pool="threads", log_level="warning"),
        ),
        (
            "-A config.celery_app --max-tasks-per-child 50",
            CeleryArgs(app="config.celery_app", max_tasks_per_child=50),
        ),
        (
            "--scheduler django_celery_beat.schedulers:DatabaseScheduler",
            CeleryArgs(scheduler="django_celery_beat.schedulers:DatabaseScheduler"),
        ),
        ("-n 'w1@%h' -E", CeleryArgs(passed=("-n", "w1@%h", "-E"))),
    ],
)
def test_worker_flags_are_read_as_written(text, expected):
    """Each spelling Celery accepts (-c4, -c 4, --concurrency=4) means the same; others pass."""
    problems: list = []
    assert parse_celery_args("CELERY_WORKER_ARGS", text, problems) == expected
    assert problems == []


@pytest.mark.parametrize(
    ("variable", "text", "words"),
    [
        ("CELERY_WORKER_ARGS", "--detach", "the runner supervises the program in the foreground"),
        ("CELERY_WORKER_ARGS", "-B", "BEAT_MODE=embedded"),
        ("CELERY_WORKER_ARGS", "--logfile=/var/log/w.log", "the runner's one log"),
        ("CELERY_WORKER_ARGS", "worker -Q x", "without 'worker' before them"),
        ("CELERY_WORKER_ARGS", "-c many", "not a whole number above 0"),
        ("CELERY_WORKER_ARGS", "-Q 'unclosed", "cannot be split like a command line"),
        ("CELERY_BEAT_ARGS", "-c 4", "concurrency is the worker's; use CELERY_WORKER_ARGS"),
        ("CELERY_WORKER_ARGS", "--concurrency", "--concurrency needs a value"),
    ],
)
def test_flags_that_would_take_a_program_out_of_the_runners_hands_are_refused(
    variable, text, words
):
    """One problem naming the variable and what does that job instead."""
    problems: list = []
    parse_celery_args(variable, text, problems)
    assert len(problems) == 1 and problems[0].variable == variable
    assert words in problems[0].fix


def test_mapped_flags_become_the_plan_and_the_rest_follows_the_runners_own():
    """-c and -l from a Procfile line size the pool and set the worker's log level; -Q comes
    after the runner's flags, unchanged."""
    settings = load_settings({"CELERY_WORKER_ARGS": "-c 3 --loglevel=warning -Q a,b"}, CWD)
    worker = make_plan(settings, PROJECT).program("worker").command
    assert "--concurrency=3" in worker and "--loglevel=WARNING" in worker
    assert worker[-2:] == ("-Q", "a,b")


@pytest.mark.parametrize(
    ("environ", "words"),
    [
        (
            {"CELERY_WORKER_ARGS": "-c 3", "CELERY_CONCURRENCY": "4"},
            "differs from CELERY_CONCURRENCY=4",
        ),
        ({"CELERY_WORKER_ARGS": "-P solo"}, "the runner runs prefork or threads"),
        ({"CELERY_BEAT_ARGS": "--max-interval 10"}, "set BEAT_MODE=separate"),
        ({"CELERY_WORKER_ARGS": "-l verbose"}, "use one of debug, info, warning, error"),
    ],
)
def test_flags_that_contradict_the_runners_variables_are_refused(environ, words):
    """A flag that says otherwise than a variable, or that the chosen layout cannot take."""
    with pytest.raises(ConfigError) as raised:
        load_settings(environ, CWD)
    assert any(words in line for line in raised.value.lines()), raised.value.lines()


def test_a_separate_beat_takes_its_own_flags():
    """With BEAT_MODE=separate, beat's other flags follow the runner's on its command line."""
    settings = load_settings(
        {"BEAT_MODE": "separate", "CELERY_BEAT_ARGS": "--max-interval 10"}, CWD
    )
    assert make_plan(settings, PROJECT).program("beat").command[-2:] == ("--max-interval", "10")


def with_celery(**fields) -> Project:
    celery = CeleryConfig("config.celery_app:app", "redis://h:1/0", "none", True, False, **fields)
    return replace(PROJECT, celery=celery)


def test_django_celery_beat_without_a_scheduler_runs_the_database_scheduler():
    """Installed django_celery_beat and Celery's default scheduler: beat runs the
    DatabaseScheduler inside the leader lock, and the plan says why in one note."""
    plan = make_plan(load_settings(REDIS, CWD), with_celery(django_celery_beat=True))
    worker = plan.program("worker")
    assert (BEAT_SCHEDULER_VARIABLE, DATABASE_SCHEDULER) in worker.environment
    assert any("runs its DatabaseScheduler" in note for note in plan.notes)


def test_the_projects_own_scheduler_is_kept():
    """A project that names its scheduler keeps it: no environment, no note."""
    project = with_celery(django_celery_beat=True, beat_scheduler="redbeat.RedBeatScheduler")
    plan = make_plan(load_settings(REDIS, CWD), project)
    assert not any(
        name == BEAT_SCHEDULER_VARIABLE for name, _ in plan.program("worker").environment
    )
    assert not any("DatabaseScheduler" in note for note in plan.notes)


def test_a_procfile_scheduler_wins_and_runs_directly_without_redis():
    """--scheduler from CELERY_BEAT_ARGS is beat's scheduler; without Redis there is no lock,
    so it is beat's own --scheduler."""
    settings = load_settings({"CELERY_BEAT_ARGS": f"--scheduler {DATABASE_SCHEDULER}"}, CWD)
    worker = make_plan(settings, with_celery()).program("worker").command
    assert f"--scheduler={DATABASE_SCHEDULER}" in worker
