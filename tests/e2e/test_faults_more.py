"""More bad days: Redis restarting under the runner, and SIGKILL of each single process.

Each test states what the runner promises and breaks something real to check it. A
background thread keeps asking /healthz during the fault and counts the failures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.conftest import make_password
from tests.support.ports import free_port
from tests.support.processes import (
    ProcessHandle,
    program_main,
    program_processes,
    wait_for,
)
from tests.support.redis_server import RedisServer
from tests.support.runner import run_client, send_add, start_runner, stop_and_check, wait_http_ok
from tests.support.timeouts import START_TIMEOUT, TASK_TIMEOUT
from tests.support.traffic import health_probe

pytestmark = pytest.mark.e2e

SLOW_TASK_SECONDS = 3
CELERY_CHILDREN = 2  # the default concurrency (runner.config.plan), a child per task with prefork


def health_url(env: dict[str, str]) -> str:
    return f"http://127.0.0.1:{env['PORT']}/healthz"


def web_master(runner: ProcessHandle) -> psutil.Process | None:
    return program_main(runner.pid, "web")


def web_worker(runner: ProcessHandle) -> psutil.Process | None:
    master = web_master(runner)
    children = master.children() if master is not None else []
    return children[0] if children else None


def worker_main(runner: ProcessHandle) -> psutil.Process | None:
    return program_main(runner.pid, "worker")


def beat_process(runner: ProcessHandle) -> psutil.Process | None:
    """Beat's process, its own program or the one the worker forked (either is "beat")."""
    return next(iter(program_processes(runner.pid, "beat")), None)


def beat_and_worker(runner: ProcessHandle, beat_mode: str) -> dict[str, int] | None:
    """PIDs of the worker's main process and of beat, once both are found; None while
    either is missing (never a partial answer). Embedded with the threads pool (the
    default), beat is a thread of the worker's main process (``runner.worker.beat_thread``)."""
    worker = worker_main(runner)
    found = {
        "worker": worker,
        "beat": worker if beat_mode == "embedded" else beat_process(runner),
    }
    if any(process is None for process in found.values()):
        return None
    return {name: process.pid for name, process in found.items()}


def pool_children(runner: ProcessHandle) -> list[psutil.Process]:
    main = worker_main(runner)
    if main is None:
        return []
    found = []
    for child in main.children():
        try:
            if child.name() == "celery-child":
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def start_slow_task(env: dict[str, str]) -> tuple[str, int]:
    """Send app.tasks.slow and wait until it runs; return its id and the PID running it."""
    code = (
        "import time\n"
        "from app.celery import app\n"
        f"result = app.send_task('app.tasks.slow', ({SLOW_TASK_SECONDS},))\n"
        f"deadline = time.monotonic() + {TASK_TIMEOUT}\n"
        "while result.state != 'STARTED' and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
        "print(result.id, result.info['pid'])\n"
    )
    task_id, pid = run_client(env, code, TASK_TIMEOUT + 30).split()
    return task_id, int(pid)


def task_result(env: dict[str, str], task_id: str) -> str:
    """Wait for the result of task ``task_id`` from a client process and return it."""
    code = (
        f"from app.celery import app; "
        f"print(app.AsyncResult('{task_id}').get(timeout={TASK_TIMEOUT}))"
    )
    return run_client(env, code, TASK_TIMEOUT + 30)


LOST_DATA_LINE = "Redis restarted without its data (a new run id"


def test_redis_restart_worker_reconnects_and_web_keeps_answering(
    runner_env, tmp_path: Path, redis_plain
):
    """When a non-persistent Redis restarts, /healthz never fails, the worker reconnects by
    itself and every task sent after the restart completes; tasks queued, running or with
    results at the restart are NOT promised, since that Redis comes back empty -- and the
    worker says so, once."""
    runner_env |= {"REDIS_URL": redis_plain.url(), "RUN_BEAT": "false"}
    runner = start_runner(runner_env, tmp_path)
    with runner:
        wait_http_ok(health_url(runner_env), START_TIMEOUT, runner)
        assert send_add(runner_env) == "5"
        worker_before = worker_main(runner)
        with health_probe(runner_env["PORT"]) as probe:
            run_client(
                runner_env,
                "from app.celery import app; "
                f"[app.send_task('app.tasks.slow', ({SLOW_TASK_SECONDS},)) for _ in range(4)]",
                30,
            )
            redis_plain.restart()
            code = (
                "from app.celery import app; "
                "results = [app.send_task('app.tasks.add', (i, i)) for i in range(5)]; "
                f"print(sum(r.get(timeout={TASK_TIMEOUT}) for r in results))"
            )
            assert run_client(runner_env, code, TASK_TIMEOUT + 30) == str(
                sum(2 * i for i in range(5))
            )
        assert probe.failures == []
        assert probe.answered > 0
        # Reconnected by itself: the same worker process, not a restart by supervisord.
        assert worker_main(runner) == worker_before
        # ...and said once that what waited in Redis was lost.
        wait_for(lambda: LOST_DATA_LINE in runner.output(), 10, message=runner.output)
        assert runner.output().count(LOST_DATA_LINE) == 1
        stop_and_check(runner)


QUEUED_BEFORE_RESTART = 6  # slow tasks: 2 run (the default concurrency), 4 wait


def test_persistent_redis_restart_loses_no_task(runner_env, tmp_path: Path, tmp_path_factory):
    """With a Redis that keeps its data (an append-only file, as managed plans keep), a
    restart while tasks run and wait in the queue loses none: every task sent before the
    restart and every task sent after it completes, counted by its result; /healthz never
    fails and the worker reconnects by itself."""
    with RedisServer(
        tmp_path_factory.mktemp("redis-aof"), password=make_password(), persistent=True
    ) as server:
        runner_env |= {"REDIS_URL": server.url(), "RUN_BEAT": "false"}
        runner = start_runner(runner_env, tmp_path)
        with runner:
            wait_http_ok(health_url(runner_env), START_TIMEOUT, runner)
            # The web answers first (its fork does not wait for Celery's imports).
            worker_before = wait_for(lambda: worker_main(runner), START_TIMEOUT)
            before = run_client(
                runner_env,
                "from app.celery import app; print(' '.join(app.send_task('app.tasks.slow', "
                f"({SLOW_TASK_SECONDS},)).id for _ in range({QUEUED_BEFORE_RESTART})))",
                30,
            ).split()
            runner.wait_for_output(f"Task app.tasks.slow[{before[0]}] received", START_TIMEOUT)
            with health_probe(runner_env["PORT"]) as probe:
                server.restart()
                code = (
                    "from app.celery import app; "
                    "after = [app.send_task('app.tasks.add', (i, i)) for i in range(5)]; "
                    f"slow = [app.AsyncResult(i).get(timeout={TASK_TIMEOUT * 3}) for i in "
                    f"{before!r}]; "
                    f"added = [r.get(timeout={TASK_TIMEOUT * 3}) for r in after]; "
                    "print(len(slow), sum(slow), len(added), sum(added))"
                )
                counted = run_client(runner_env, code, TASK_TIMEOUT * 6 + 30)
            assert counted.split() == [
                str(QUEUED_BEFORE_RESTART),
                str(QUEUED_BEFORE_RESTART * SLOW_TASK_SECONDS) + ".0",
                "5",
                str(sum(2 * i for i in range(5))),
            ], runner.output()[-4000:]
            assert probe.failures == []
            assert worker_main(runner) == worker_before
            assert LOST_DATA_LINE not in runner.output()  # it kept its data: nothing to say
            stop_and_check(runner)


# Celery's line while its consumer waits for the broker; the beat leader lock's line.
WORKER_WAITS = "consumer: Cannot connect to redis://default:**@127.0.0.1:"
BEAT_WAITS = "standby: cannot reach Redis at redis://default:***@127.0.0.1:"
BEAT_LEADS = "leader: this instance sends the periodic tasks"
REDIS_LATE_LOCK_SECONDS = 6  # the beat's lock: it retries every 2 s


@pytest.mark.parametrize("beat_mode", ["embedded", "separate"])
def test_redis_that_appears_later_is_joined_without_restarts(
    runner_env, tmp_path: Path, tmp_path_factory, beat_mode: str
):
    """Redis down at start: the web serves, the worker and beat say that they wait, and
    once Redis listens they connect by themselves -- the same processes, no restart by
    supervisord -- and a task sent then completes and beat leads."""
    server = RedisServer(tmp_path_factory.mktemp("redis-late"), password=make_password())
    server.port = free_port()  # known before it starts: the runner gets the URL now
    runner_env |= {
        "REDIS_URL": server.url(),
        "BEAT_MODE": beat_mode,
        "BEAT_LEADER_LOCK_SECONDS": str(REDIS_LATE_LOCK_SECONDS),
    }
    runner = start_runner(runner_env, tmp_path)
    try:
        with runner:
            wait_http_ok(health_url(runner_env), START_TIMEOUT, runner)
            with health_probe(runner_env["PORT"]) as probe:
                runner.wait_for_output(WORKER_WAITS, START_TIMEOUT)
                runner.wait_for_output(BEAT_WAITS, START_TIMEOUT)
                waiting = wait_for(
                    lambda: beat_and_worker(runner, beat_mode),
                    START_TIMEOUT,
                    message="the worker and beat processes",
                )
                server.start()
                assert send_add(runner_env) == "5"
                runner.wait_for_output(BEAT_LEADS, START_TIMEOUT)
            assert probe.failures == []
            now = beat_and_worker(runner, beat_mode)
            assert now == waiting, "a process was restarted instead of waiting for Redis"
            if beat_mode == "separate":
                assert now["beat"] != now["worker"]
            assert "exited unexpectedly" not in runner.output()
            assert server.password not in runner.output()
            stop_and_check(runner)
    finally:
        server.stop()


@dataclass(frozen=True)
class KillCase:
    """One process to SIGKILL: how to find it, and what the test may expect around it."""

    find: Callable[[ProcessHandle], psutil.Process | None]
    environment: tuple[tuple[str, str], ...] = (("RUN_BEAT", "false"),)
    # Failed /healthz requests allowed while it comes back (the web's own processes only).
    web_failures_allowed: bool = False
    # Kill the pool child that runs a slow task, and check that task still completes.
    task_in_flight: bool = False
    # Run against a test-private Redis (REDIS_URL) instead of the local default.
    redis: bool = False


def first_pool_child(runner: ProcessHandle) -> psutil.Process | None:
    children = pool_children(runner)
    return children[0] if children else None


KILL_CASES = {
    "gunicorn-worker": KillCase(web_worker, web_failures_allowed=True),
    "gunicorn-master": KillCase(web_master, web_failures_allowed=True),
    # Pool children exist with prefork, the pool from 1024 MB of budget (runner.config.memory_plan).
    "celery-child": KillCase(
        first_pool_child,
        environment=(("RUN_BEAT", "false"), ("CELERY_POOL", "prefork")),
        task_in_flight=True,
    ),
    "celery-main": KillCase(worker_main),
    "celery-main-redis": KillCase(worker_main, redis=True),
    "beat-separate": KillCase(beat_process, environment=(("BEAT_MODE", "separate"),)),
}


def replaced(
    runner: ProcessHandle, case: KillCase, victim: psutil.Process
) -> psutil.Process | None:
    """The victim's replacement once it is there (for a pool child: the pool is full again)."""
    if case.task_in_flight:
        children = pool_children(runner)
        full = len(children) == CELERY_CHILDREN and victim.pid not in {c.pid for c in children}
        return children[0] if full else None
    found = case.find(runner)
    return found if found is not None and found.pid != victim.pid else None


@pytest.mark.parametrize("case", KILL_CASES.values(), ids=KILL_CASES.keys())
def test_a_sigkilled_process_comes_back(
    runner_env, tmp_path: Path, case: KillCase, request: pytest.FixtureRequest
):
    """A SIGKILLed process is replaced (new PID), the web answers and a task runs again;
    a killed Gunicorn process may fail only requests made before the web is back, a killed
    Celery or beat process fails none, and a task running on a killed pool child is
    re-delivered and completes (one held by a killed Celery main process is not promised)."""
    runner_env |= dict(case.environment)
    if case.redis:
        runner_env["REDIS_URL"] = request.getfixturevalue("redis_plain").url()
    runner = start_runner(runner_env, tmp_path)
    with runner:
        wait_http_ok(health_url(runner_env), START_TIMEOUT, runner)
        assert send_add(runner_env) == "5"
        victim = wait_for(lambda: case.find(runner), START_TIMEOUT, message="victim not found")
        with health_probe(runner_env["PORT"]) as probe:
            task_id = None
            if case.task_in_flight:
                task_id, pid = start_slow_task(runner_env)
                victim = psutil.Process(pid)
            victim.kill()
            replacement = wait_for(
                lambda: replaced(runner, case, victim),
                START_TIMEOUT,
                message=lambda: (
                    f"pid {victim.pid} not replaced; output:\n{runner.output()[-3000:]}"
                ),
            )
            wait_http_ok(health_url(runner_env), START_TIMEOUT, runner)
            back_at = time.monotonic()
            assert send_add(runner_env) == "5"
            if task_id is not None:
                assert float(task_result(runner_env, task_id)) == SLOW_TASK_SECONDS
        assert replacement.is_running()
        if case.web_failures_allowed:
            assert [f for f in probe.failures if f[0] > back_at] == []
        else:
            assert probe.failures == []
        assert probe.answered > 0
        stop_and_check(runner)
