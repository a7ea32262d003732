"""The combined runner end to end: real runner, supervisord, Gunicorn, Celery, and Redis.

Each test starts ``python -m runner`` as a subprocess on free ports and talks to it over real
sockets: HTTP for the web, a separate client process for tasks, signals for shutdown.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from runner.config.plan import BACKGROUND_NICENESS
from tests.support.processes import ProcessHandle, assert_no_survivors, program_main, wait_for
from tests.support.runner import (
    REPO_ROOT,
    run_client,
    send_add,
    speed_up_heartbeat,
    start_runner,
    stop_and_check,
    wait_http_ok,
)
from tests.support.timeouts import START_TIMEOUT, STOP_TIMEOUT, TASK_TIMEOUT

pytestmark = pytest.mark.e2e

PERIODIC_TIMEOUT = 30
# The port is checked first, before the project is imported: a second here, 10 on Render.
PORT_CHECK_SECONDS = 10
EVERY_LINE = re.compile(r"^(web|worker|beat|runner|migrate|import) *\| ")


def heartbeat_count(env: dict[str, str]) -> int:
    database = env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(database, timeout=10) as connection:
        return connection.execute("SELECT COUNT(*) FROM app_heartbeat").fetchone()[0]


def worker_main(runner: ProcessHandle) -> psutil.Process:
    """The Celery worker's main process: the supervised child running celery_entry."""

    return wait_for(
        lambda: program_main(runner.pid, "worker"),
        START_TIMEOUT,
        message="no worker process under the runner",
    )


STATUS_TOKEN = "status-token-for-runner-tests-0123456789"


def local_status_when_beat_sent(env: dict[str, str]) -> dict | None:
    """/status.json once the worker answered its ping and beat says what it sent."""
    data = requests.get(
        f"http://127.0.0.1:{env['PORT']}/status.json",
        headers={"Authorization": f"Bearer {STATUS_TOKEN}"},
        timeout=10,
    ).json()
    signs = {c["name"]: c["sign_of_life"] for c in data["components"]}
    worker_ok = signs["worker"] is not None and signs["worker"]["ok"]
    beat_sent = (
        signs["beat"] is not None
        and "last sent app.tasks.record_heartbeat" in (signs["beat"]["summary"])
    )
    return data if worker_ok and beat_sent else None


def test_local_default_runs_web_tasks_and_beat_then_stops_cleanly(runner_env, tmp_path: Path):
    """Without Redis: /healthz answers, a task sent from another process returns its result,
    the periodic heartbeat fires, every log line is prefixed, and SIGTERM exits 0 leaving no
    process behind."""
    speed_up_heartbeat(runner_env)
    runner_env["RUNNER_STATUS_TOKEN"] = STATUS_TOKEN
    runner = start_runner(runner_env, tmp_path)
    with runner:
        response = wait_http_ok(
            f"http://127.0.0.1:{runner_env['PORT']}/healthz", START_TIMEOUT, runner
        )
        assert response.text == "ok\n"
        assert send_add(runner_env) == "5"
        wait_for(
            lambda: heartbeat_count(runner_env) >= 1,
            PERIODIC_TIMEOUT,
            message=lambda: f"no heartbeat recorded; output:\n{runner.output()[-3000:]}",
        )
        # The status page without Redis: the worker answers its ping through the local
        # broker, beat's own record shows its sends, and Redis is "not used".
        status = wait_for(
            lambda: local_status_when_beat_sent(runner_env), PERIODIC_TIMEOUT, message="status"
        )
        assert status["redis"]["configured"] is False and status["healthy"] is True
        # The worker (and the beat it forked) run at the lower CPU priority the plan asks
        # for, the web at the normal one.
        worker = worker_main(runner)
        assert worker.nice() == BACKGROUND_NICENESS
        assert {child.nice() for child in worker.children()} <= {BACKGROUND_NICENESS}
        web = program_main(runner.pid, "web")
        assert web.nice() == psutil.Process().nice()
        stop_and_check(runner)
    output = runner.output()
    assert "runner | local default: no REDIS_URL" in output
    assert "No hostname was supplied" not in output  # kombu's warning, once per process
    assert "superuser privileges" not in output  # Celery's nine lines about root
    if os.geteuid() == 0:
        assert output.count("runner | running as root:") == 1
    assert "beat   | " in output and "Sending due task heartbeat" in output
    unprefixed = [line for line in output.splitlines() if not EVERY_LINE.match(line)]
    assert unprefixed == []


def test_redis_runs_tasks_and_hides_the_password(runner_env, tmp_path: Path, redis_plain):
    """With REDIS_URL: Redis is the broker and result store, and its password never shows."""
    runner_env["REDIS_URL"] = redis_plain.url()
    runner = start_runner(runner_env, tmp_path)
    with runner:
        wait_http_ok(f"http://127.0.0.1:{runner_env['PORT']}/healthz", START_TIMEOUT, runner)
        assert send_add(runner_env) == "5"
        # The result went through Redis: Celery's result key is there.
        assert list(redis_plain.client().scan_iter("celery-task-meta-*")), "no result in Redis"
        stop_and_check(runner)
    output = runner.output()
    assert redis_plain.password not in output
    assert f"broker redis://default:***@127.0.0.1:{redis_plain.port}" in output


def test_a_killed_worker_is_restarted(runner_env, tmp_path: Path):
    """SIGKILL of the worker's main process: supervisord starts a new one and tasks run again."""
    runner_env["RUN_BEAT"] = "false"
    runner = start_runner(runner_env, tmp_path)
    with runner:
        wait_http_ok(f"http://127.0.0.1:{runner_env['PORT']}/healthz", START_TIMEOUT, runner)
        first = worker_main(runner)
        runner.wait_for_output(re.compile("celery@.* ready"), START_TIMEOUT)
        first.kill()
        wait_for(
            lambda: worker_main(runner).pid != first.pid,
            START_TIMEOUT,
            message="the worker was not restarted",
        )
        runner.wait_for_output("worker was killed (SIGKILL)", 10)
        assert send_add(runner_env) == "5"
        stop_and_check(runner)


RESTART_AFTER = 3
SEND_SIX = """
from app.celery import app
results = [app.send_task("app.tasks.add", (i, 1)) for i in range(6)]
print(sum(r.get(timeout=60) for r in results))
"""


def test_threads_pool_restarts_gracefully_after_max_tasks_per_child(runner_env, tmp_path):
    """CELERY_MAX_TASKS_PER_CHILD with the threads pool: after that many tasks the worker
    restarts (a new main process), and every task sent is done."""
    env = runner_env | {"CELERY_POOL": "threads", "CELERY_MAX_TASKS_PER_CHILD": str(RESTART_AFTER)}
    runner = start_runner(env, tmp_path)
    with runner:
        runner.wait_for_output("ready.", START_TIMEOUT)
        first = worker_main(runner).pid
        # 1..6 plus one each: 21, whichever worker ran them.
        assert run_client(env, SEND_SIX, TASK_TIMEOUT * 4) == "21"
        line = f"{RESTART_AFTER} tasks done (CELERY_MAX_TASKS_PER_CHILD): restarting gracefully"
        # Once per worker: tasks it had already taken finish during its warm shutdown.
        wait_for(lambda: line in runner.output(), START_TIMEOUT, message=runner.output)
        wait_for(lambda: worker_main(runner).pid != first, START_TIMEOUT, message="same worker")
        assert "restarting worker" not in runner.output()  # the watchdog had no part in it
        stop_and_check(runner)


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_sigterm_exit_leaves_no_process_nor_zombie_behind(runner_env, tmp_path, pool):
    """When the runner's exit status is observed, every process it started is gone: the
    worker waits for its embedded beat (which Celery only signals), so no beat is left
    saving its schedule, nor a zombie for PID 1 to reap."""
    env = runner_env | {"CELERY_POOL": pool}
    runner = start_runner(env, tmp_path)
    with runner:
        runner.wait_for_output("ready.", START_TIMEOUT)
        runner.wait_for_output("beat: Starting...", START_TIMEOUT)
        # The embedded beat names itself once forked (psutil caches names: ask afresh).
        beat_named = lambda: any(  # noqa: E731
            psutil.Process(process.pid).name() == "celery-beat" for process in runner.tree()
        )
        if pool == "prefork":
            wait_for(beat_named, START_TIMEOUT, message="no celery-beat process")
        else:  # a thread of the worker's main process (runner.worker.beat_thread)
            assert not beat_named()
        tree = runner.tree()
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=STOP_TIMEOUT) == 0, runner.output()[-3000:]
        assert_no_survivors(tree, timeout=0)


def test_bad_flag_exits_2_and_starts_nothing(runner_env, tmp_path: Path):
    """RUN_BEAT=ture: one line naming the variable and the fix, exit 2, no database touched."""
    runner_env["RUN_BEAT"] = "ture"
    runner = start_runner(runner_env, tmp_path)
    with runner:
        assert runner.wait(timeout=STOP_TIMEOUT) == 2
    assert runner.output().strip() == (
        "runner | error: RUN_BEAT='ture': not a boolean; use true or false"
    )
    assert not Path(runner_env["DATABASE_URL"].removeprefix("sqlite:///")).exists()


def test_a_port_in_use_is_one_line_naming_port_before_anything_starts(runner_env, tmp_path):
    """Another program listens on PORT: start and plan each say so in one line naming PORT,
    exit 2 within seconds, no database touched (not half a minute of Gunicorn retries)."""
    with socket.create_server(("0.0.0.0", int(runner_env["PORT"]))) as holder:
        holder.listen()
        started = time.monotonic()
        runner = start_runner(runner_env, tmp_path)
        with runner:
            assert runner.wait(timeout=STOP_TIMEOUT) == 2
        took = time.monotonic() - started
        plan = subprocess.run(
            [sys.executable, "-m", "runner", "plan"],
            cwd=REPO_ROOT,
            env=runner_env,
            capture_output=True,
            text=True,
            timeout=STOP_TIMEOUT,
        )
    line = runner.output().strip()
    assert line.startswith(
        f"runner | error: PORT='{runner_env['PORT']}': another program already listens on "
        f"0.0.0.0:{runner_env['PORT']} (pid {os.getpid()}: "
    ), line
    assert line.endswith("; stop it, or set PORT to a free port") and "\n" not in line
    assert (plan.returncode, plan.stderr.strip()) == (2, line)
    assert took < PORT_CHECK_SECONDS, took
    assert not Path(runner_env["DATABASE_URL"].removeprefix("sqlite:///")).exists()


def test_a_component_that_cannot_start_ends_the_runner(runner_env, tmp_path: Path):
    """A worker that exits at every start stops the whole service with status 3, no loop."""
    runner_env["CELERY_APP"] = "tests.e2e.broken_celery_app"
    runner = start_runner(runner_env, tmp_path)
    with runner:
        assert runner.wait(timeout=START_TIMEOUT) == 3
        tree_after = runner.tree()
    output = runner.output()
    assert "worker could not start" in output
    assert "No such transport: broken-on-purpose" in output
    assert tree_after == []
