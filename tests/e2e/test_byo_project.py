"""Bring your own Django project: the runner started from a seed-style project's own directory.

``tests/fixtures/seed_project`` is laid out like the seed guide's project: settings split in
``config/settings/{base,development,production}.py``, ``celery -A config``, tasks in
``apps/payments/tasks.py``, results in the database (django_celery_results), a beat schedule
in its settings (django_celery_beat) and Redis configured by its own code (``REDIS_URL``,
``REQUIRE_REDIS_SSL``, ``ssl.CERT_NONE``). Nothing in it knows about the runner, except
``config/settings/production_runner.py``, the README's one settings line.

Each test runs ``python -m runner`` as a subprocess from that directory, with the repository
on PYTHONPATH (the runner as if installed); one test installs the runner into a fresh venv
with pip instead. No test writes into the fixture: bytecode is off, the database and the
runner's data directory are in ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support.processes import program_processes, wait_for
from tests.support.runner import (
    REPO_ROOT,
    SHELL_COMMAND,
    start_runner,
    stop_and_check,
    wait_http_ok,
)
from tests.support.timeouts import START_TIMEOUT, TASK_TIMEOUT

pytestmark = pytest.mark.e2e

PROJECT = REPO_ROOT / "tests" / "fixtures" / "seed_project"
PRODUCTION = "config.settings.production"
# The fixture's schedule fires every 2 s; beat's first tick and the worker's start come first.
PERIODIC_TIMEOUT = 30
PLAN_TIMEOUT = 60
# A fresh venv and `pip install` of the runner and the project's requirements: about 9 s
# here with the local package index; generous for a cold cache.
INSTALL_TIMEOUT = 300
# What a copy of the repository leaves out: not part of a clone, or made by runs.
NOT_IN_A_CLONE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.egg-info", "build", ".pytest_cache", ".ruff_cache",
    ".runner-data", "db.sqlite3", "staticfiles", "artifacts", "results",
)  # fmt: skip


def project_env(runner_env: dict[str, str], **variables: str) -> dict[str, str]:
    """The runner's test environment for the fixture project: the contract's variables."""
    env = dict(runner_env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    # Nothing written into the fixture's folders (no __pycache__).
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env |= {"DJANGO_SETTINGS_MODULE": PRODUCTION, "CELERY_APP": "config"}
    env |= variables
    return env


def plan(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``python -m runner plan`` from the fixture project."""
    return subprocess.run(
        [sys.executable, "-m", "runner", "plan"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=PLAN_TIMEOUT,
    )


def manage_shell(env: dict[str, str], code: str) -> str:
    """Run ``code`` with ``python manage.py shell -c`` in the project; return its last line."""
    result = subprocess.run(
        [sys.executable, *SHELL_COMMAND, "-c", code],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TASK_TIMEOUT + 30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def send_add_and_look_for_healthz(env: dict[str, str]) -> dict[str, object]:
    """Send add(2, 3) the seed's way and ask the project's URLconf whether it has /healthz."""
    code = (
        "import json\n"
        "from django.urls import Resolver404, resolve\n"
        "from apps.payments.tasks import add\n"
        f"result = add.delay(2, 3).get(timeout={TASK_TIMEOUT})\n"
        "try:\n"
        "    resolve('/healthz')\n"
        "    routed = True\n"
        "except Resolver404:\n"
        "    routed = False\n"
        "print(json.dumps({'add': result, 'project_routes_healthz': routed}))\n"
    )
    return json.loads(manage_shell(env, code))


def payout_runs(env: dict[str, str]) -> int:
    """Rows written by the scheduled process_daily_payouts task."""
    database = env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(database, timeout=10) as connection:
        return connection.execute("SELECT COUNT(*) FROM payments_payoutrun").fetchone()[0]


def package_files(package: Path) -> set[str]:
    """The files of a package folder, bytecode left out, relative to it."""
    return {
        str(path.relative_to(package))
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def health_url(env: dict[str, str]) -> str:
    """The health URL of the runner started with ``env``."""
    return f"http://127.0.0.1:{env['PORT']}/healthz"


@pytest.mark.parametrize("server", ["plain", "tls"])
def test_seed_project_runs_unchanged(server, request, runner_env, tmp_path: Path):
    """From the project's root with only the seed's variables (plain Redis, then TLS through
    REQUIRE_REDIS_SSL=true): /healthz answers though the project does not route it, a task sent
    from `manage.py shell` returns its result, the settings' schedule fires, SIGTERM exits 0."""
    redis = request.getfixturevalue(f"redis_{server}")
    # The seed's REDIS_URL is redis:// even for Redis Cloud; REQUIRE_REDIS_SSL upgrades it.
    env = project_env(runner_env, REDIS_URL=redis.url(scheme="redis"))
    if server == "tls":
        env["REQUIRE_REDIS_SSL"] = "true"
    runner = start_runner(env, tmp_path, cwd=PROJECT)
    with runner:
        assert wait_http_ok(health_url(env), START_TIMEOUT, runner).text == "ok\n"
        login = requests.get(f"http://127.0.0.1:{env['PORT']}/admin/login/", timeout=10)
        assert login.status_code == 200 and "Django" in login.text  # the project's own app
        assert send_add_and_look_for_healthz(env) == {"add": 5, "project_routes_healthz": False}
        runner.wait_for_output("Sending due task daily-driver-payouts", PERIODIC_TIMEOUT)
        wait_for(
            lambda: payout_runs(env) >= 1,
            PERIODIC_TIMEOUT,
            message=lambda: f"no payout run recorded; output:\n{runner.output()[-3000:]}",
        )
        stop_and_check(runner)
    output = runner.output()
    assert redis.password not in output
    scheme = "rediss" if server == "tls" else "redis"
    # The project's own diagnostic line and the runner's banner agree on the broker.
    assert f"[settings] Celery broker {scheme}://127.0.0.1:{redis.port}" in output
    assert f"broker {scheme}://default:***@127.0.0.1:{redis.port}" in output
    assert "project's settings choose Celery's broker themselves" not in output
    assert "certificate check:" not in output
    # Beat uses the scheduler the settings name (django_celery_beat's), not one of ours.
    assert "DatabaseScheduler: Schedule changed" in output


def test_plan_says_what_it_found_and_from_where(runner_env):
    """Without DJANGO_SETTINGS_MODULE, CELERY_APP or REDIS_URL, `runner plan` finds the project
    as manage.py and `celery -A` would, and reports the broker the project's settings choose."""
    env = project_env(runner_env)
    for name in ("DJANGO_SETTINGS_MODULE", "CELERY_APP"):
        del env[name]
    result = plan(env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:5] == [
        "project   config.settings.development (from manage.py: config/settings/development.py)",
        "web app   config.wsgi.application (WSGI_APPLICATION); /healthz answered by the runner",
        "celery    -A config (from top package of config.settings.development): config.celery:app",
        "broker    redis://localhost:6379/0 (the project's own setting)",
        "results   django-db (the project's own setting)",
    ]
    assert "local default" not in result.stdout  # the project has its own broker default


def test_plan_refuses_tls_variables_the_project_does_not_use(runner_env, tls_material):
    """With a CA given, the runner would verify Redis but the seed's settings pass CERT_NONE to
    Celery: plan (and start) refuse in one line naming the variable, the project's setting and
    the fix, before anything starts; with runner_settings the project does what was asked."""
    env = project_env(
        runner_env,
        REDIS_URL="redis://default:secret@127.0.0.1:6380",
        REQUIRE_REDIS_SSL="true",
        REDIS_SSL_CA_CERTS=str(tls_material.ca_pem),
    )
    seed = plan(env)
    assert seed.returncode == 2, seed.stdout
    assert seed.stderr.splitlines() == [
        "runner | error: REDIS_SSL_CA_CERTS: asks for certificate check 'required', but the "
        "project's CELERY_BROKER_URL gives the broker 'none' "
        "(rediss://default:***@127.0.0.1:6380); add ?ssl_cert_reqs=required to that URL (and "
        "ssl_ca_certs=<path> for your CA), or let the settings use runner_settings"
    ]
    one_line = plan(env | {"DJANGO_SETTINGS_MODULE": "config.settings.production_runner"})
    assert one_line.returncode == 0, one_line.stderr
    assert "choose Celery's broker themselves" not in one_line.stdout
    assert "secret" not in seed.stdout + seed.stderr + one_line.stdout


@pytest.mark.parametrize(
    ("variables", "line"),
    [
        (
            {"CELERY_APP": "confg"},
            "CELERY_APP='confg': cannot import it (ModuleNotFoundError: No module named "
            "'confg'); give what you pass to celery -A, e.g. config",
        ),
        (
            {"CELERY_APP": "config.celery:application"},
            "CELERY_APP='config.celery:application': cannot import it (config.celery has no "
            "attribute 'application'); give what you pass to celery -A, e.g. config",
        ),
        (
            {"CELERY_BEAT_ARGS": "--scheduler django_celery_beat.schedulers:DatabaseSchedular"},
            "CELERY_BEAT_ARGS='django_celery_beat.schedulers:DatabaseSchedular': its scheduler "
            "django_celery_beat.schedulers:DatabaseSchedular cannot be imported "
            "(AttributeError: module 'django_celery_beat.schedulers' has no attribute "
            "'DatabaseSchedular'); name an "
            "importable class (module:Class), e.g. "
            "django_celery_beat.schedulers:DatabaseScheduler, or leave --scheduler out",
        ),
        (
            {"DJANGO_SETTINGS_MODULE": "config.settings.prod"},
            f"DJANGO_SETTINGS_MODULE='config.settings.prod': no such module from {PROJECT} "
            "(no config/settings/prod.py); run from your project's root or give the settings "
            "you use, e.g. config.settings.production",
        ),
    ],
)
def test_what_cannot_be_found_is_one_line_and_exit_2(variables, line, runner_env):
    """A Celery app or settings module that is not there: one line naming it and the fix."""
    result = plan(project_env(runner_env, **variables))
    assert (result.returncode, result.stdout, result.stderr) == (2, "", f"runner | error: {line}\n")


def test_unimportable_celery_app_starts_nothing(runner_env, tmp_path: Path):
    """`python -m runner` with a CELERY_APP that cannot be imported: one line, exit 2, no
    migration, no program started."""
    env = project_env(runner_env, CELERY_APP="confg")
    runner = start_runner(env, tmp_path, cwd=PROJECT)
    with runner:
        assert runner.wait(timeout=START_TIMEOUT) == 2
        assert runner.tree() == []
    assert runner.output() == (
        "runner | error: CELERY_APP='confg': cannot import it (ModuleNotFoundError: No module "
        "named 'confg'); give what you pass to celery -A, e.g. config\n"
    )
    assert not Path(env["DATABASE_URL"].removeprefix("sqlite:///")).exists()


def test_one_settings_line_gives_verified_tls_and_the_safe_cache(
    runner_env, tmp_path: Path, redis_tls, tls_material
):
    """With `globals().update(runner_settings(BASE_DIR))` in its settings, the project runs over
    verified TLS (REDIS_SSL_CA_CERTS) and its cache is the runner's prefixed Redis cache."""
    env = project_env(
        runner_env,
        DJANGO_SETTINGS_MODULE="config.settings.production_runner",
        REDIS_URL=redis_tls.url(),
        REDIS_SSL_CA_CERTS=str(tls_material.ca_pem),
        RUN_BEAT="false",
    )
    runner = start_runner(env, tmp_path, cwd=PROJECT)
    with runner:
        wait_http_ok(health_url(env), START_TIMEOUT, runner)
        code = (
            "import json\n"
            "from django.core.cache import cache, caches\n"
            "from apps.payments.tasks import add\n"
            "cache.set('greeting', 'hello')\n"
            f"print(json.dumps([add.delay(2, 3).get(timeout={TASK_TIMEOUT}), "
            "cache.get('greeting'), type(caches['default']).__name__]))\n"
        )
        assert json.loads(manage_shell(env, code)) == [5, "hello", "PrefixedRedisCache"]
        # Verified, not merely quiet: the same settings trusting a CA that did not sign
        # the server's certificate are refused, by the cache and by the broker.
        wrong_ca = env | {"REDIS_SSL_CA_CERTS": str(tls_material.other_ca_pem)}
        refused = (
            "import json\n"
            "from django.core.cache import cache\n"
            "from config.celery import app\n"
            "seen = []\n"
            "broker = app.connection_for_write()\n"
            "for attempt in (lambda: cache.set('greeting', 'hello'),\n"
            "                lambda: broker.ensure_connection(max_retries=1)):\n"
            "    try:\n"
            "        attempt()\n"
            "        seen.append('connected')\n"
            "    except Exception as error:\n"
            "        seen.append('certificate verify failed' in str(error))\n"
            "print(json.dumps(seen))\n"
        )
        assert json.loads(manage_shell(wrong_ca, refused)) == [True, True]
        stop_and_check(runner)
    output = runner.output()
    assert "NOT verified" not in output
    assert redis_tls.password not in output


def test_fresh_venv_pip_install_runs_the_project(runner_env, tmp_path: Path, redis_plain):
    """The contract: in a fresh venv, `pip install <this repo>`, then from the project's root
    DJANGO_SETTINGS_MODULE=config.settings.production CELERY_APP=config PORT=<port>
    `python -m runner` runs it; /healthz answers 200; SIGTERM ends it with status 0."""
    # A copy, as a clone would be: building in place would leave build/ in the checkout.
    source = tmp_path / "source"
    shutil.copytree(REPO_ROOT, source, ignore=NOT_IN_A_CLONE)
    venv = tmp_path / "venv"
    python = str(venv / "bin" / "python")
    began = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=INSTALL_TIMEOUT)
    install = subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "-q",
            str(source),
            "-r",
            str(PROJECT / "requirements.txt"),
        ],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    print(f"fresh venv and pip install: {time.monotonic() - began:.1f} s")
    env = project_env(runner_env, REDIS_URL=redis_plain.url())
    del env["PYTHONPATH"]  # the runner must come from the venv, not from the checkout
    where = subprocess.run(
        [python, "-c", "import runner; print(runner.__file__)"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=PLAN_TIMEOUT,
        check=True,
    )
    installed = Path(where.stdout.strip()).parent
    assert installed.is_relative_to(venv), installed
    assert package_files(installed) == package_files(REPO_ROOT / "runner")  # data files too
    found = subprocess.run(
        [python, "-m", "runner", "plan"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=PLAN_TIMEOUT,
    )
    assert found.returncode == 0, found.stderr
    assert "celery    -A config (from CELERY_APP): config.celery:app" in found.stdout
    runner = start_runner(env, tmp_path, cwd=PROJECT, python=python)
    with runner:
        assert wait_http_ok(health_url(env), START_TIMEOUT, runner).text == "ok\n"
        stop_and_check(runner)


def test_a_projects_gunicorn_conf_is_reported_not_half_applied(runner_env, tmp_path: Path):
    """A gunicorn.conf.py in the project's directory (another bind, five workers, its own
    logging) is not read under the runner's flags: the web binds PORT with the plan's one
    worker, each access line appears once, and the start says why the file is not read."""
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project, ignore=NOT_IN_A_CLONE)
    (project / "gunicorn.conf.py").write_text(
        'bind = "127.0.0.1:1"\nworkers = 5\naccesslog = "-"\nerrorlog = "-"\n'
    )
    env = project_env(runner_env, RUN_WORKER="false", RUN_BEAT="false")
    runner = start_runner(env, tmp_path, cwd=project)
    try:
        wait_http_ok(health_url(env), START_TIMEOUT, runner)
        requests.get(health_url(env).replace("/healthz", "/nowhere"), timeout=10)
        wait_for(lambda: '"GET /nowhere' in runner.output(), TASK_TIMEOUT)
        web = program_processes(runner.pid, "web")
        assert len(web) == 2, web  # master and the plan's one worker
        stop_and_check(runner)
    finally:
        runner.kill_tree()
    output = runner.output()
    assert "gunicorn.conf.py is not read: the runner gives Gunicorn its options" in output
    assert output.count('"GET /nowhere') == 1
