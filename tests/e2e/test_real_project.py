"""A real project, unchanged: cookiecutter-django's generated project with its own pins.

``tests/fixtures/cookiecutter_django`` was generated from the public template (its
FIXTURE.md says how) and is kept as generated. Its ``requirements/production.txt`` is
installed in a fresh venv, the runner is installed beside it, and the project is started
with the runner's start command only: its own settings module, its own way of reading
``CELERY_BROKER_URL`` and ``REDIS_URL`` (django-redis cache, result backend = broker), its
time limits, its DatabaseScheduler, PostgreSQL. Over plain Redis and over TLS Redis written
the way Celery documents it (``?ssl_cert_reqs=...`` in the URL).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.ports import free_port
from tests.support.postgres import temporary_database
from tests.support.processes import wait_for
from tests.support.real_project import PRODUCTION, checkout, install, project_env, run
from tests.support.runner import start_runner, stop_and_check, wait_http_ok
from tests.support.timeouts import START_TIMEOUT, TASK_TIMEOUT

pytestmark = pytest.mark.e2e

PERIODIC_TIMEOUT = 60  # DatabaseScheduler notices a new PeriodicTask at its next tick


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    """A venv with the project's production requirements, then the runner: (python, pins
    before the runner, pins after)."""
    return install(tmp_path_factory.mktemp("cookie-venv"))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return checkout(tmp_path / "cookie_shop")


@pytest.fixture
def database() -> Iterator[str]:
    with temporary_database("cookie") as url:
        yield url


def shell(python: Path, project: Path, env: dict, code: str) -> str:
    """``manage.py shell -c code`` in the project's venv; its last line of output."""
    done = run(python, project, env, "manage.py", "shell", "-c", code)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def serve_and_check(python: Path, project: Path, env: dict, tmp_path: Path) -> str:
    """Start the runner; web, a task, a periodic task from the database, SIGTERM. Its log."""
    collected = run(python, project, env, "manage.py", "collectstatic", "--noinput")
    assert collected.returncode == 0, collected.stderr[-3000:]
    runner = start_runner(env, tmp_path, cwd=project, python=str(python))
    try:
        base = f"http://127.0.0.1:{env['PORT']}"
        wait_http_ok(f"{base}/healthz", START_TIMEOUT, runner)
        home = requests.get(f"{base}/", timeout=10)
        assert home.status_code == 200 and "Cookie Shop" in home.text
        count = shell(
            python,
            project,
            env,
            "from cookie_shop.users.tasks import get_users_count; "
            f"print(get_users_count.delay().get(timeout={TASK_TIMEOUT}))",
        )
        assert count == "0"
        shell(
            python,
            project,
            env,
            "from django_celery_beat.models import IntervalSchedule, PeriodicTask; "
            "every, _ = IntervalSchedule.objects.get_or_create(every=2, period='seconds'); "
            "PeriodicTask.objects.create(name='count', interval=every, "
            "task='cookie_shop.users.tasks.get_users_count'); print('ok')",
        )
        wait_for(
            lambda: runner.output().count("Task cookie_shop.users.tasks.get_users_count[") >= 3,
            PERIODIC_TIMEOUT,
            message=lambda: (
                "the periodic task from the admin's table did not run:\n" + runner.output()[-4000:]
            ),
        )
        stop_and_check(runner)
    finally:
        runner.kill_tree()
    return runner.output()


def test_installing_the_runner_moves_none_of_the_projects_pins(installed):
    """pip installs the runner beside Django 4.2, Celery 5.3, gunicorn 21 and redis-py 5 as
    pinned, adding only what the runner needs."""
    _python, before, after = installed
    assert {name: after.get(name) for name in before} == before
    assert (before["django"], before["celery"], before["gunicorn"], before["redis"]) == (
        "4.2.11",
        "5.3.6",
        "21.2.0",
        "5.0.3",
    )
    assert set(after) - set(before) >= {"django-one-service-runner", "supervisor", "psutil"}


def test_plain_redis_with_the_projects_own_settings(
    installed, project, database, runner_env, redis_plain, tmp_path
):
    """Start command only: the project's settings read CELERY_BROKER_URL and REDIS_URL
    themselves; web, a task, a periodic task created in the database, and a clean stop."""
    python, _, _ = installed
    url = redis_plain.url()
    env = project_env(
        runner_env,
        database,
        DJANGO_SETTINGS_MODULE=PRODUCTION,
        REDIS_URL=url,
        CELERY_BROKER_URL=url,
    )
    output = serve_and_check(python, project, env, tmp_path)
    # The project's time limits are not enforced by the budget's threads pool: said once.
    assert (
        "the project sets task_time_limit=300 s, task_soft_time_limit=60 s, which the threads "
        "pool does NOT enforce"
    ) in output
    assert redis_plain.password not in output


def test_tls_redis_written_the_way_celery_documents_it(
    installed, project, database, runner_env, redis_tls, tls_material, tmp_path
):
    """rediss:// with ?ssl_cert_reqs=required&ssl_ca_certs=... in the project's URLs, and the
    render.yaml default REQUIRE_REDIS_SSL=true: the start-up check connects as the broker,
    the results and the cache will (verified), and everything runs over TLS."""
    python, _, _ = installed
    url = f"{redis_tls.url()}?ssl_cert_reqs=required&ssl_ca_certs={tls_material.ca_pem}"
    env = project_env(
        runner_env,
        database,
        DJANGO_SETTINGS_MODULE=PRODUCTION,
        REDIS_URL=url,
        CELERY_BROKER_URL=url,
        REQUIRE_REDIS_SSL="true",
    )
    output = serve_and_check(python, project, env, tmp_path)
    assert "(broker, results and cache; TLS, certificate verified)" in output
    assert redis_tls.password not in output


@pytest.mark.parametrize(
    ("variables", "line"),
    [
        (
            # What the template's users write first: rediss:// as given by the provider.
            {"CELERY_BROKER_URL": "rediss://default:pw@127.0.0.1:6380/0"},
            "runner | error: CELERY_RESULT_BACKEND='rediss://default:***@127.0.0.1:6380/0': a "
            "rediss:// result backend needs ssl_cert_reqs (Celery refuses it otherwise and the "
            "worker stops): add ?ssl_cert_reqs=required (or none) to the URL, or set "
            "CELERY_REDIS_BACKEND_USE_SSL",
        ),
        (
            {
                "CELERY_BROKER_URL": "redis://default:pw@127.0.0.1:6380/0",
                "REQUIRE_REDIS_SSL": "true",
            },
            "runner | error: REQUIRE_REDIS_SSL='true': the project's CELERY_BROKER_URL, "
            "CELERY_RESULT_BACKEND and CACHES give the broker, results and cache "
            "redis://default:***@127.0.0.1:6380/0, without TLS: write rediss:// there "
            "(the project reads it itself, so the runner cannot upgrade it), or let the settings "
            "use runner_settings",
        ),
        (
            {"CELERY_BROKER_URL": ""},
            "runner | error: CELERY_BROKER_URL: the project's settings give Celery no broker URL "
            "(empty or unset), so Celery would use its default amqp://guest@localhost//, where "
            "nothing runs; set CELERY_BROKER_URL (e.g. to your REDIS_URL) or let the settings use "
            "runner_settings (docs/byo-project.md)",
        ),
    ],
)
def test_what_the_project_would_do_wrong_is_one_line_before_anything_starts(
    installed, project, runner_env, variables, line
):
    """Each configuration the project's own consumers cannot work with: exit 2, one line
    naming the setting and the fix, the password masked."""
    python, _, _ = installed
    env = project_env(
        runner_env,
        "postgres://postgres@127.0.0.1:5432/unused",
        DJANGO_SETTINGS_MODULE=PRODUCTION,
        REDIS_URL="redis://default:pw@127.0.0.1:6380/0",
        **variables,
    )
    done = run(python, project, env, "-m", "runner", "plan")
    assert (done.returncode, done.stderr.splitlines()) == (2, [line])


def test_the_development_settings_from_manage_py_are_named(installed, project, runner_env):
    """Without DJANGO_SETTINGS_MODULE, manage.py's default is the template's local settings,
    whose debug toolbar production.txt does not install: one line saying where the settings
    came from and what to set."""
    python, _, _ = installed
    env = project_env(runner_env, "postgres://postgres@127.0.0.1:5432/unused")
    env |= {
        "REDIS_URL": "redis://127.0.0.1:6380/0",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6380/0",
    }
    done = run(python, project, env, "-m", "runner", "plan")
    assert done.returncode == 2, done.stdout
    assert done.stderr.splitlines() == [
        "runner | error: DJANGO_SETTINGS_MODULE: the INSTALLED_APPS of config.settings.local "
        "name 'debug_toolbar', which is not installed (no module 'debug_toolbar'); "
        "DJANGO_SETTINGS_MODULE is not set, so manage.py's default config.settings.local was "
        "used (often development settings); set DJANGO_SETTINGS_MODULE to the settings you "
        "deploy, e.g. config.settings.production"
    ]


def test_the_plan_says_what_the_project_brings(installed, project, runner_env):
    """plan fits the installed versions (gunicorn 21: no control-socket flag) and runs
    prefork when asked, the pool that enforces the project's time limits, without a note."""
    python, _, _ = installed
    env = project_env(
        runner_env,
        "postgres://postgres@127.0.0.1:5432/unused",
        DJANGO_SETTINGS_MODULE=PRODUCTION,
        REDIS_URL="redis://127.0.0.1:6380/0",
        CELERY_BROKER_URL="redis://127.0.0.1:6380/0",
        CELERY_POOL="prefork",
    )
    done = run(python, project, env, "-m", "runner", "plan", "--json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    worker = next(p for p in plan["programs"] if p["name"] == "worker")
    assert "--pool=prefork" in worker["command"]
    assert not any("time_limit" in note for note in plan["notes"])
    web = next(p for p in plan["programs"] if p["name"] == "web")
    assert "--no-control-socket" not in web["command"]  # gunicorn 21 has no such flag


def test_a_database_that_does_not_answer_is_one_line_naming_it(
    installed, project, runner_env, redis_plain, tmp_path
):
    """DATABASE_URL pointing where no PostgreSQL listens: migrate's last lines, then one line
    naming the engine, host and port (never the password) and the fix; exit 1, nothing runs."""
    python, _, _ = installed
    port = free_port()
    env = project_env(
        runner_env,
        f"postgres://postgres:Sec%2Fret@127.0.0.1:{port}/cookie",
        DJANGO_SETTINGS_MODULE=PRODUCTION,
        REDIS_URL=redis_plain.url(),
        CELERY_BROKER_URL=redis_plain.url(),
    )
    runner = start_runner(env, tmp_path, cwd=project, python=str(python))
    with runner:
        assert runner.wait(timeout=START_TIMEOUT) == 1, runner.output()[-3000:]
    last = runner.output().strip().splitlines()[-1]
    assert last == (
        f"runner | error: migrations failed: the database postgresql at 127.0.0.1:{port} cannot "
        "be used ('Connection refused': nothing answers there (is the database running, the "
        "port right?)); check DATABASE_URL (or the project's DATABASES), or set "
        "RUN_MIGRATIONS=false to start without migrating"
    )
    assert "Sec" not in runner.output()
