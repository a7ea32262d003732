"""Tests of the demo Django project's settings and migrations, each in a fresh process.

Django settings are read once per process, so every test runs ``manage.py`` in a subprocess
with its own environment and a SQLite file under ``tmp_path``; nothing is monkeypatched.
"""

import json
import os
import subprocess
import sys
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
print(json.dumps({
    "redis": "Redis carries the tasks" in page,
    "local": "the local default" in page,
    "status_link": 'href="/status/"' in page,
}))
"""


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, {"redis": False, "local": True, "status_link": True}),
        (
            {"REDIS_URL": "redis://default:Secret-1@127.0.0.1:6399/0"},
            {"redis": True, "local": False, "status_link": True},
        ),
    ],
    ids=["local-default", "redis"],
)
def test_home_page_names_what_carries_the_tasks_and_links_the_status(tmp_path, environ, expected):
    environ = {"RUNNER_DATA_DIR": str(tmp_path / "data"), **environ}
    assert shell_json(tmp_path, HOME_PAGE, **environ) == expected
