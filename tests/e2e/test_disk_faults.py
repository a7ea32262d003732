"""Disk faults of the local default: a read-only or full disk is a clear error, never a hang.

Real file systems (a tmpfs mounted read-only, or filled up; ``tests/support/tmpfs.py``: the
tests skip where mounting is not allowed) under the real runner. At start the runner stops
with one line naming the path and the fix. While it runs, a full disk fails what needs the
disk with an error that says so, and everything else keeps working until space is back.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from runner.config.disk import MIN_FREE_MB
from tests.support.processes import ProcessHandle, tail, wait_for
from tests.support.runner import (
    REPO_ROOT,
    manage,
    run_client,
    send_add,
    speed_up_heartbeat,
    start_runner,
    stop_and_check,
    wait_http_ok,
)
from tests.support.timeouts import START_TIMEOUT, TASK_TIMEOUT
from tests.support.tmpfs import TmpfsMounts, fill, free

pytestmark = pytest.mark.e2e

EXIT_TIMEOUT = 60  # a refused start loads the project first; generous on 2 shared cores
HTTP_TIMEOUT = 10
BEAT_TIMEOUT = 30  # the heartbeat is sped up to every 2 s; beat's first tick comes first
SMALL_DISK_KB = 256  # "a few hundred KB": the disk-full cases
# Above the runner's 16 MB minimum, with room for the database and the queue's files.
RUNNING_DISK_KB = (MIN_FREE_MB + 8) * 1024
ADMIN = "admin"
ADMIN_PASSWORD = "disk-full-test-password-7"
HEARTBEAT_RAN = re.compile(r"Task app\.tasks\.record_heartbeat\[[^]]+\] succeeded")
FIX_SPACE = "free some space or set RUNNER_DATA_DIR to a directory on a disk with room"
FIX_READ_ONLY = "set RUNNER_DATA_DIR to a writable directory or mount a writable disk there"


@pytest.fixture
def mounts() -> Iterator[TmpfsMounts]:
    """tmpfs mounts for this test, unmounted in teardown (after the runner's tree is killed)."""
    mounted = TmpfsMounts()
    try:
        yield mounted
    finally:
        mounted.unmount_all()


def error_lines(runner: ProcessHandle) -> list[str]:
    return [line for line in runner.output().splitlines() if line.startswith("runner | error:")]


def assert_refused(runner: ProcessHandle, line: str) -> None:
    """Exit 1 without a hang, exactly ``line`` as the error, and nothing started."""
    with runner:
        assert runner.wait(timeout=EXIT_TIMEOUT) == 1, runner.output()
    assert error_lines(runner) == [line], runner.output()
    output = runner.output()
    assert "Traceback" not in output
    assert not re.search(r"^runner \| \w+ starting", output, re.MULTILINE), output


def test_read_only_working_directory_is_a_clear_error(runner_env, tmp_path: Path, mounts):
    """A project on a read-only file system, with the default data directory inside it: one
    line naming it and the fix; with RUNNER_DATA_DIR set to a writable directory, it serves."""
    project = mounts.mount(tmp_path / "project", 4096)
    shutil.copytree(
        REPO_ROOT / "app", project / "app", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO_ROOT / "manage.py", project)
    mounts.remount_read_only(project)
    env = dict(runner_env)
    del env["RUNNER_DATA_DIR"]  # the default: .runner-data in the working directory
    # The runner as if installed; the project is the read-only copy (the working directory
    # comes first on sys.path).
    env["PYTHONPATH"] = str(REPO_ROOT)

    refused = start_runner(env, tmp_path, cwd=project)
    assert_refused(
        refused,
        f"runner | error: RUNNER_DATA_DIR: cannot write to {project / '.runner-data'} "
        f"(read-only file system); {FIX_READ_ONLY}",
    )

    env["RUNNER_DATA_DIR"] = str(tmp_path / "data")
    runner = start_runner(env, tmp_path, cwd=project)
    with runner:
        wait_http_ok(f"http://127.0.0.1:{env['PORT']}/healthz", START_TIMEOUT, runner)
        stop_and_check(runner)


def test_read_only_data_directory_is_a_clear_error(runner_env, tmp_path: Path, mounts):
    """RUNNER_DATA_DIR on a read-only mount: the same line, exit 1, nothing started."""
    data = mounts.mount(tmp_path / "data-disk", SMALL_DISK_KB)
    mounts.remount_read_only(data)
    runner_env["RUNNER_DATA_DIR"] = str(data)
    assert_refused(
        start_runner(runner_env, tmp_path),
        f"runner | error: RUNNER_DATA_DIR: cannot write to {data} (read-only file system); "
        f"{FIX_READ_ONLY}",
    )


@pytest.mark.parametrize("filled", [True, False], ids=["full", "too-small"])
def test_full_disk_at_start_is_a_clear_error(runner_env, tmp_path: Path, mounts, filled: bool):
    """The data directory's disk is full, or has less than the local default needs: one line
    with the free space, the minimum and the fix; exit 1; nothing started, nothing left."""
    disk = mounts.mount(tmp_path / "disk", SMALL_DISK_KB)
    if filled:
        fill(disk)
    data = disk / "data"
    runner_env["RUNNER_DATA_DIR"] = str(data)
    free_text = "0 bytes" if filled else f"{SMALL_DISK_KB} KB"
    assert_refused(
        start_runner(runner_env, tmp_path),
        f"runner | error: RUNNER_DATA_DIR: no space left on {data} ({free_text} free; the "
        "local default keeps its task queue and results there and needs at least "
        f"{MIN_FREE_MB} MB); {FIX_SPACE}",
    )
    assert not (data / ".write-test").exists()


def test_full_database_disk_fails_migrate_with_one_line(runner_env, tmp_path: Path, mounts):
    """The SQLite database's disk is full when the runner migrates: after migrate's own output,
    one line naming the database and the fix; exit 1; nothing started."""
    disk = mounts.mount(tmp_path / "db-disk", SMALL_DISK_KB)
    fill(disk)
    database = disk / "db.sqlite3"
    runner_env["DATABASE_URL"] = f"sqlite:///{database}"
    runner = start_runner(runner_env, tmp_path)
    with runner:
        assert runner.wait(timeout=EXIT_TIMEOUT) == 1, runner.output()
    assert error_lines(runner) == [
        f"runner | error: migrations failed: no space left for the database {database} "
        "('database or disk is full', see the migrate lines above); free some space on "
        f"{disk} or put the database on a disk with room"
    ], runner.output()
    assert "migrate | django.db.utils.OperationalError: database or disk is full" in (
        runner.output()
    )
    assert not re.search(r"^runner \| \w+ starting", runner.output(), re.MULTILINE)


# A client that sends a task and prints what happened instead of a traceback.
SEND_ADD = """
from kombu.exceptions import OperationalError
from app.celery import app
try:
    app.send_task("app.tasks.add", (2, 3))
except OperationalError as error:
    print(f"{type(error).__name__}: {error}")
else:
    print("sent")
"""


def log_in(base: str) -> requests.Response:
    """Log in to the admin: a page that writes to the database (session, last_login)."""
    session = requests.Session()
    session.get(f"{base}/admin/login/", timeout=HTTP_TIMEOUT).raise_for_status()
    return session.post(
        f"{base}/admin/login/",
        data={
            "username": ADMIN,
            "password": ADMIN_PASSWORD,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
            "next": "/admin/",
        },
        allow_redirects=False,
        timeout=HTTP_TIMEOUT,
    )


def assert_healthy(base: str) -> None:
    response = requests.get(f"{base}/healthz", timeout=HTTP_TIMEOUT)
    assert (response.status_code, response.text) == (200, "ok\n")


def test_disk_full_while_running_fails_clearly_and_recovers(runner_env, tmp_path: Path, mounts):
    """The disk of the data directory and the SQLite database fills up under a running service.

    Promised: /healthz answers and no component restarts; sending a task fails at once with
    kombu's OperationalError naming the full queue folder and the fix, and leaves no file in
    the queue; beat says the same at each tick and carries on; a page that writes to the
    database answers 500 with the reason in the web log, pages that only read answer 200.
    Once space is freed, tasks, logins and the heartbeat work again, without a restart.
    """
    disk = mounts.mount(tmp_path / "disk", RUNNING_DISK_KB)
    queue = disk / "data" / "broker" / "queue"
    runner_env |= {
        "RUNNER_DATA_DIR": str(disk / "data"),
        "DATABASE_URL": f"sqlite:///{disk / 'db.sqlite3'}",
    }
    speed_up_heartbeat(runner_env)  # beat meets the full disk every 2 s
    manage(
        runner_env | {"DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD},
        "createsuperuser", "--noinput", "--username", ADMIN, "--email", "admin@example.com",
    )  # fmt: skip
    base = f"http://127.0.0.1:{runner_env['PORT']}"
    runner = start_runner(runner_env, tmp_path)
    with runner:
        wait_http_ok(f"{base}/healthz", START_TIMEOUT, runner)
        assert send_add(runner_env) == "5"

        fill(disk)
        assert shutil.disk_usage(disk).free == 0
        assert_healthy(base)
        assert run_client(runner_env, SEND_ADD, TASK_TIMEOUT) == (
            f"QueueWriteError: no space left on {queue}: the message was not queued; {FIX_SPACE}"
        )
        assert os.listdir(queue) == []  # nothing half-written for the worker to choke on
        runner.wait_for_output(
            "Couldn't apply scheduled task heartbeat: no space left on "
            f"{queue}: the message was not queued",
            BEAT_TIMEOUT,
        )
        assert log_in(base).status_code == 500
        runner.wait_for_output(
            "web    | django.db.utils.OperationalError: database or disk is full", HTTP_TIMEOUT
        )
        assert requests.get(f"{base}/", timeout=HTTP_TIMEOUT).status_code == 200
        assert_healthy(base)

        free(disk)
        freed_from = len(runner.output())
        assert send_add(runner_env) == "5"
        assert log_in(base).status_code == 302
        wait_for(
            lambda: HEARTBEAT_RAN.search(runner.output()[freed_from:]),
            BEAT_TIMEOUT,
            message=lambda: f"no heartbeat ran once space was back:\n{tail(runner.output())}",
        )
        assert_healthy(base)

        output = runner.output()
        assert runner.poll() is None, output
        # Each component started once: the fault restarted nothing.
        started = re.findall(r"^runner \| (\w+) starting", output, re.MULTILINE)
        assert sorted(started) == sorted(set(started)), started
        stop_and_check(runner)
