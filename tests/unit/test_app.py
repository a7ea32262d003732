"""Tests of the demo Django project's settings and migrations, each in a fresh process.

Django settings are read once per process, so every test runs ``manage.py`` in a subprocess
with its own environment and a SQLite file under ``tmp_path``; nothing is monkeypatched.
"""

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.support.runner import SHELL_COMMAND

REPO_ROOT = Path(__file__).resolve().parents[2]
# Generous: a cold `migrate` of every app takes a few seconds on a slow CI machine.
MANAGE_TIMEOUT_SECONDS = 120
# Variables app.settings reads; removed from the inherited environment so the developer's
# own values cannot change a test's outcome.
APP_VARIABLES = (
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "RENDER_EXTERNAL_HOSTNAME",
    "DATABASE_URL",
    "LOG_LEVEL",
    "REDIS_URL",
    "RUNNER_DATA_DIR",
)


def manage(tmp_path: Path, *args: str, **environ: str) -> subprocess.CompletedProcess:
    """Run ``manage.py args`` against a SQLite file in tmp_path, plus the given variables."""
    env = {name: value for name, value in os.environ.items() if name not in APP_VARIABLES}
    env.update(
        DJANGO_SETTINGS_MODULE="app.settings",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        # Nothing written into the repository by the subprocess.
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(environ)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=MANAGE_TIMEOUT_SECONDS,
        check=False,
    )


def shell_json(tmp_path: Path, code: str, **environ: str):
    """Run Python code in ``manage.py shell`` and decode the JSON it prints last."""
    result = manage(tmp_path, *SHELL_COMMAND[1:], "-v", "0", "-c", code, **environ)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_deploy_check_passes_with_nothing_set(tmp_path):
    """With no variables set but the database, `manage.py check --deploy` finds no errors."""
    result = manage(tmp_path, "check", "--deploy")

    assert result.returncode == 0, result.stderr
    assert "ERRORS" not in result.stderr


def test_migrate_seeds_heartbeat_task(tmp_path):
    """On a fresh database, `migrate` creates the "heartbeat" task, every 60 seconds."""
    migrated = manage(tmp_path, "migrate", "--no-input")
    assert migrated.returncode == 0, migrated.stderr

    tasks = shell_json(
        tmp_path,
        "import json; from django_celery_beat.models import PeriodicTask; print(json.dumps("
        "list(PeriodicTask.objects.filter(name='heartbeat').values("
        "'task', 'enabled', 'interval__every', 'interval__period'))))",
    )

    assert tasks == [
        {
            "task": "app.tasks.record_heartbeat",
            "enabled": True,
            "interval__every": 60,
            "interval__period": "seconds",
        }
    ]


def test_render_hostname_is_allowed_and_trusted(tmp_path):
    """RENDER_EXTERNAL_HOSTNAME is added to ALLOWED_HOSTS and trusted as an https origin."""
    hosts = shell_json(
        tmp_path,
        "import json; from django.conf import settings; print(json.dumps("
        "[settings.ALLOWED_HOSTS, settings.CSRF_TRUSTED_ORIGINS]))",
        RENDER_EXTERNAL_HOSTNAME="demo.onrender.com",
    )

    assert hosts == [
        ["localhost", "127.0.0.1", "[::1]", "demo.onrender.com"],
        ["https://demo.onrender.com"],
    ]


def test_bad_variables_are_all_reported(tmp_path):
    """A misspelt DEBUG and an unknown LOG_LEVEL stop startup, both named in one error."""
    result = manage(tmp_path, "check", DEBUG="ture", LOG_LEVEL="loud")

    assert result.returncode != 0
    assert "DEBUG='ture'" in result.stderr
    assert "LOG_LEVEL='loud'" in result.stderr


@pytest.mark.parametrize(
    ("url", "scheme"),
    [("garbage", "missing"), ("mongodb://u:hunter2@h/db", "mongodb://")],
)
def test_a_bad_database_url_is_one_short_reason_without_the_password(tmp_path, url, scheme):
    result = manage(tmp_path, "check", DATABASE_URL=url)
    assert result.returncode != 0
    line = next(line for line in result.stderr.splitlines() if "DATABASE_URL" in line)
    assert f"DATABASE_URL: not a database URL (scheme {scheme}); use e.g. postgres://" in line
    assert "hunter2" not in result.stderr and "cockroach" not in line
    assert len(line) < 200


HOME_PAGE = """
import json
from django.test import Client
from django.core.management import call_command
call_command("migrate", verbosity=0)
page = Client().get("/", HTTP_HOST="localhost").content.decode()
icon = Client().get("/favicon.ico", HTTP_HOST="localhost")
print(json.dumps({
    "icon": icon.status_code,
    "redis": "Redis carries the tasks" in page,
    "local": "the local default" in page,
    "status_link": 'href="/status/"' in page,
}))
"""


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, {"icon": 204, "redis": False, "local": True, "status_link": True}),
        (
            {"REDIS_URL": "redis://default:Secret-1@127.0.0.1:6399/0"},
            {"icon": 204, "redis": True, "local": False, "status_link": True},
        ),
    ],
    ids=["local-default", "redis"],
)
def test_home_page_names_what_carries_the_tasks_and_links_the_status(tmp_path, environ, expected):
    environ = {"RUNNER_DATA_DIR": str(tmp_path / "data"), **environ}
    assert shell_json(tmp_path, HOME_PAGE, **environ) == expected


SCHEDULES = """
import json
from datetime import datetime, timedelta, timezone
from django.core.management import call_command
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask
from runner.status.gather import database_schedules
call_command("migrate", verbosity=0)
PeriodicTask.objects.all().delete()
now = datetime.now(timezone.utc)
daily = CrontabSchedule.objects.create(minute="0", hour="4", timezone="UTC")
hourly = CrontabSchedule.objects.create(minute="15", hour="*", timezone="UTC")
weekdays = CrontabSchedule.objects.create(minute="0", hour="4", day_of_week="1-5", timezone="UTC")
minute = IntervalSchedule.objects.create(every=1, period="minutes")
day_ago = now - timedelta(hours=25)
last_quarter = now.replace(minute=15, second=0, microsecond=0)
if last_quarter > now:
    last_quarter -= timedelta(hours=1)
def task(name, **schedule):
    PeriodicTask.objects.create(name=name, task="t." + name, **schedule)
task("daily", crontab=daily, last_run_at=day_ago)
task("hourly", crontab=hourly, last_run_at=last_quarter)
task("weekdays", crontab=weekdays, last_run_at=day_ago)
task("late", interval=minute, last_run_at=now - timedelta(minutes=3))
task("new", interval=minute)
beat_started = datetime.now(timezone.utc)  # after the tasks were created: beat loaded them
print(json.dumps({
    "now": now.timestamp(), "beat_started": beat_started.timestamp(),
    "schedules": {
        s.name: [s.every, s.next_due_at.timestamp() if s.next_due_at else None, s.overdue]
        for s in database_schedules(datetime.now(timezone.utc), beat_started)
    },
}))
"""


def test_schedules_read_in_words_with_next_due_as_beat_computes_it(tmp_path):
    """Crontabs in words and due on the second (04:00:00, not 03:59:59); a task two minutes
    past its interval is overdue; one that never ran counts from this beat's start."""
    environ = {"RUNNER_DATA_DIR": str(tmp_path / "data")}
    data = shell_json(tmp_path, SCHEDULES, **environ)
    now, schedules = data["now"], data["schedules"]
    words = {name: (every, overdue) for name, (every, _, overdue) in schedules.items()}
    assert words == {
        "daily": ("every day at 04:00 UTC", True),  # its 04:00 of a day ago passed unsent
        "hourly": ("every hour at minute 15", False),
        "weekdays": ("cron 0 4 * * 1-5 UTC", words["weekdays"][1]),
        "late": ("every minute", True),
        "new": ("every minute", False),
    }
    due = {name: datetime.fromtimestamp(at, timezone.utc) for name, (_, at, _) in schedules.items()}
    assert due["hourly"].minute == 15 and due["hourly"].second == 0
    assert 0 < due["hourly"].timestamp() - now <= 3600  # the next quarter past
    for name in ("daily", "weekdays"):
        assert (due[name].hour, due[name].minute, due[name].second) == (4, 0, 0), due[name]
    assert due["weekdays"].isoweekday() <= 5
    assert abs(due["late"].timestamp() - (now - 120)) <= 1
    assert abs(due["new"].timestamp() - (data["beat_started"] + 60)) <= 1
