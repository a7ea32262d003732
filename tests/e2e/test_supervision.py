"""Supervision tells intent from failure: the runner's own restarts never stop the service.

With the defaults (threads pool, CELERY_MAX_TASKS_PER_CHILD=100) the worker restarts itself
after every 100 tasks, so a burst restarts it many times within supervisord's start window.
Those exits are the plan's, not crashes: the service stays up, every task's result comes
back, and ``/healthz`` never fails. A backlog waiting in Redis at boot (a wake after a busy
night) is the same case, from the first second.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.support.processes import program_processes, wait_for
from tests.support.runner import (
    run_client,
    speed_up_heartbeat,
    start_ready_runner,
    start_runner,
    wait_http_ok,
)
from tests.support.timeouts import START_TIMEOUT, STOP_TIMEOUT
from tests.support.traffic import health_probe, without_access_log

pytestmark = pytest.mark.e2e

BURST_TASKS = 1500
BACKLOG_TASKS = 600
# Every result of a burst, on two shared cores, with the worker restarting every 100 tasks.
BURST_TIMEOUT = 300
RESTART_LINE = "tasks done (CELERY_MAX_TASKS_PER_CHILD): restarting gracefully"
STOPPED_LINE = "stopping the service"


def send_many(count: int) -> str:
    """A client's code: ``count`` add tasks sent at once, then every result waited for; it
    prints how many came back right."""
    return (
        "from app.celery import app\n"
        f"sent = [app.send_task('app.tasks.add', (i, 1)) for i in range({count})]\n"
        "print('sent', flush=True)\n"
        f"got = [r.get(timeout={BURST_TIMEOUT}) for r in sent]\n"
        f"print(sum(1 for i, value in enumerate(got) if value == i + 1))\n"
    )


def assert_burst_ran(runner, env: dict[str, str], count: int) -> None:
    """``count`` tasks sent and all their results back, while /healthz answers every probe
    and the runner keeps running; the worker restarted on its own along the way."""
    started = time.monotonic()
    with health_probe(env["PORT"]) as probe:
        printed = run_client(env, send_many(count), BURST_TIMEOUT + 60)
    took = time.monotonic() - started
    output = runner.output()
    print(
        f"burst of {count}: {printed.splitlines()[-1]} results right in {took:.0f} s, "
        f"{output.count(RESTART_LINE)} planned restarts, /healthz {probe.answered}/{probe.sent}"
    )
    assert runner.poll() is None, without_access_log(output)
    assert printed.splitlines()[-1] == str(count), (printed, without_access_log(output))
    assert STOPPED_LINE not in output, without_access_log(output)
    assert probe.failures == [], probe.failures[:5]
    assert probe.answered > 10
    assert output.count(RESTART_LINE) >= count // 100 - 1, without_access_log(output)


def stop(runner) -> None:
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=STOP_TIMEOUT) == 0, without_access_log(runner.output())


def test_a_burst_on_the_local_default_never_stops_the_service(runner_env, tmp_path: Path):
    """1500 tasks at once with the defaults and no Redis: every result back, the worker
    restarted every 100 tasks, the service up throughout and /healthz never failing."""
    runner = start_runner(runner_env, tmp_path)
    with runner:
        wait_http_ok(f"http://127.0.0.1:{runner_env['PORT']}/healthz", START_TIMEOUT, runner)
        runner.wait_for_output("celery@", START_TIMEOUT)
        # A clean first start: where to open the site, no warning about the demo's own
        # settings (time limits the threads pool would not keep, how recycling works).
        first_lines = runner.output()
        assert f"ready: open http://localhost:{runner_env['PORT']}/" in first_lines
        assert "does NOT enforce" not in first_lines
        assert "CELERY_MAX_TASKS_PER_CHILD" not in first_lines
        assert_burst_ran(runner, runner_env, BURST_TASKS)
        stop(runner)


def test_a_backlog_in_redis_at_boot_is_worked_off(runner_env, tmp_path: Path, redis_plain):
    """600 tasks already queued in Redis when the service starts (a wake after a busy night):
    all of them run, the service stays up."""
    runner_env["REDIS_URL"] = redis_plain.url()
    printed = run_client(
        runner_env,
        "from app.celery import app\n"
        f"ids = [app.send_task('app.tasks.add', (i, 1)).id for i in range({BACKLOG_TASKS})]\n"
        "print(' '.join(ids))",
        120,
    )
    ids = printed.split()
    assert len(ids) == BACKLOG_TASKS
    runner = start_runner(runner_env, tmp_path)
    with runner:
        wait_http_ok(f"http://127.0.0.1:{runner_env['PORT']}/healthz", START_TIMEOUT, runner)
        with health_probe(runner_env["PORT"]) as probe:
            counted = run_client(
                runner_env,
                "from app.celery import app\n"
                f"ids = {ids!r}\n"
                f"got = [app.AsyncResult(i).get(timeout={BURST_TIMEOUT}) for i in ids]\n"
                "print(sum(1 for i, value in enumerate(got) if value == i + 1))",
                BURST_TIMEOUT + 60,
            )
        output = runner.output()
        assert runner.poll() is None, without_access_log(output)
        assert counted.splitlines()[-1] == str(BACKLOG_TASKS), without_access_log(output)
        assert STOPPED_LINE not in output, without_access_log(output)
        assert probe.failures == [], probe.failures[:5]
        assert output.count(RESTART_LINE) >= BACKLOG_TASKS // 100 - 1
        print(
            f"backlog of {BACKLOG_TASKS} at boot: {counted.splitlines()[-1]} results right, "
            f"{output.count(RESTART_LINE)} planned restarts, /healthz {probe.answered}/{probe.sent}"
        )
        stop(runner)


# Redis faults: the worker cannot work, the service stays up and comes back by itself.
FAULT_SECONDS = 20
AFTER_FAULT_TASKS = 10
# A worker left stuck by the fault is noticed after the BRPOP timeout (60 s) and the margin
# (runner.worker.liveness), one check later at most; or it exited and waits its pause (2, 4,
# 8, 16 s); then its start and the tasks.
RECOVERY_TIMEOUT = 60 + 15 + 10 + 60
FULL_SIGNS = re.compile(r"OutOfMemoryError|Redis is full")


def start_service_on(runner_env: dict[str, str], tmp_path: Path, redis_server):
    runner_env["REDIS_URL"] = redis_server.url()
    return start_ready_runner(runner_env, tmp_path)


def tasks_after_the_fault(runner_env: dict[str, str]) -> tuple[str, float]:
    """AFTER_FAULT_TASKS sent once a fault is lifted: how many came back right (printed),
    and the seconds from the lift to the last result."""
    lifted = time.monotonic()
    printed = run_client(
        runner_env,
        "from app.celery import app\n"
        f"sent = [app.send_task('app.tasks.add', (i, 1)) for i in range({AFTER_FAULT_TASKS})]\n"
        f"print(sum(r.get(timeout={RECOVERY_TIMEOUT}) == i + 1 for i, r in enumerate(sent)))",
        RECOVERY_TIMEOUT + 30,
    )
    return printed, time.monotonic() - lifted


STEADY_RATE = 20  # tasks a second
STEADY_SECONDS = 60


def test_a_steady_twenty_tasks_a_second_for_a_minute_never_stops_the_service(
    runner_env, tmp_path: Path
):
    """1200 tasks sent at 20 a second with the defaults (the worker restarts itself every 100
    tasks, every 5 s): every result back, the service up, /healthz answering every probe."""
    count = STEADY_RATE * STEADY_SECONDS
    runner = start_runner(runner_env, tmp_path)
    with runner:
        wait_http_ok(f"http://127.0.0.1:{runner_env['PORT']}/healthz", START_TIMEOUT, runner)
        runner.wait_for_output("celery@", START_TIMEOUT)
        with health_probe(runner_env["PORT"]) as probe:
            printed = run_client(
                runner_env,
                "import time\n"
                "from app.celery import app\n"
                "sent, start = [], time.monotonic()\n"
                f"for i in range({count}):\n"
                # Pacing the load at the rate asked, not waiting for anything.
                f"    time.sleep(max(0.0, start + i / {STEADY_RATE} - time.monotonic()))\n"
                "    sent.append(app.send_task('app.tasks.add', (i, 1)))\n"
                f"print(sum(r.get(timeout={BURST_TIMEOUT}) == i + 1 for i, r in enumerate(sent)))",
                STEADY_SECONDS + BURST_TIMEOUT + 60,
            )
        output = runner.output()
        assert runner.poll() is None, without_access_log(output)
        assert printed.splitlines()[-1] == str(count), without_access_log(output)
        assert STOPPED_LINE not in output
        assert probe.failures == [], probe.failures[:5]
        print(
            f"steady {STEADY_RATE}/s for {STEADY_SECONDS} s: {count} results right, "
            f"{output.count(RESTART_LINE)} planned restarts, /healthz {probe.answered}/{probe.sent}"
        )
        stop(runner)


def test_redis_full_never_stops_the_service(runner_env, tmp_path: Path, redis_plain):
    """Redis full (maxmemory reached, noeviction) for 20 s while tasks wait: the worker either
    waits it out or exits for it and is started again after a pause; the service never
    stops, the web answers every probe, and once Redis has room again new tasks run."""
    runner = start_service_on(runner_env, tmp_path, redis_plain)
    with runner:
        probe = health_probe(runner_env["PORT"])
        probe.start()
        # Both task threads busy, tasks waiting behind them: the worker takes the next one
        # while Redis is full.
        run_client(
            runner_env,
            "from app.celery import app\n"
            "[app.send_task('app.tasks.slow', (3,)) for _ in range(2)]\n"
            "[app.send_task('app.tasks.add', (i, 1)) for i in range(20)]",
            60,
        )
        admin = redis_plain.client()
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", "1")
        try:
            # The worker meets the fault (kombu's Redis transport says OutOfMemoryError, or the
            # worker's line "Redis is full" when it exits for it), then it lasts its time.
            wait_for(lambda: FULL_SIGNS.search(runner.output()), FAULT_SECONDS)
            time.sleep(FAULT_SECONDS)  # the fault's duration, not a wait for anything
        finally:
            admin.config_set("maxmemory", "0")
        printed, recovered = tasks_after_the_fault(runner_env)
        output = runner.output()
        assert runner.poll() is None, without_access_log(output)
        assert printed.splitlines()[-1] == str(AFTER_FAULT_TASKS), without_access_log(output)
        assert STOPPED_LINE not in output and "Unrecoverable error" not in output
        probe.stop()
        print(f"Redis full: new tasks ran {recovered:.1f} s after the fault was lifted")
        assert probe.failures == [], probe.failures[:5]
        assert probe.answered > 50
        stop(runner)


SENDS = "Sending due task heartbeat"
BEAT_BACK_TIMEOUT = 60


def test_an_embedded_beat_killed_is_started_again(runner_env, tmp_path: Path):
    """With the prefork pool beat is a process of the worker: SIGKILLed, it is noticed in one
    line, the worker restarts with a new beat, and periodic sends go on."""
    runner_env |= {"CELERY_POOL": "prefork"}
    speed_up_heartbeat(runner_env)
    runner = start_runner(runner_env, tmp_path)
    with runner:
        wait_http_ok(f"http://127.0.0.1:{runner_env['PORT']}/healthz", START_TIMEOUT, runner)
        wait_for(lambda: runner.output().count(SENDS) >= 1, START_TIMEOUT)
        beats = program_processes(runner.pid, "beat")
        assert len(beats) == 1, [p.cmdline() for p in beats]
        beat = beats[0]
        beat.kill()
        runner.wait_for_output(f"embedded beat (pid {beat.pid}) is gone (killed by SIGKILL)", 30)
        killed_at = len(runner.output())
        wait_for(
            lambda: SENDS in runner.output()[killed_at:],
            BEAT_BACK_TIMEOUT,
            message=lambda: without_access_log(runner.output()),
        )
        new_beats = program_processes(runner.pid, "beat")
        assert [p.pid for p in new_beats] != [beat.pid]
        assert STOPPED_LINE not in runner.output()
        assert not psutil.pid_exists(beat.pid) or beat.status() != psutil.STATUS_ZOMBIE
        stop(runner)


# The fast leak (issue 28): tasks that each keep 40 MB, sent back to back, under budgets
# where the worker's share is small enough that it restarts within seconds, again and again.
LEAK_TASKS = 12
LEAK_MB = 40
LEAK_BACKLOG = 20  # ordinary tasks queued behind the leaking ones


@pytest.mark.parametrize(
    ("budget_mb", "broker", "pool"),
    [
        (budget, broker, pool)
        for budget in (400, 450)
        for broker in ("redis", "local")
        for pool in ("threads", "prefork")
    ],
)
def test_a_fast_leak_under_a_small_budget_never_stops_the_service(
    runner_env, tmp_path: Path, redis_plain, budget_mb, broker, pool
):
    """Twelve 40 MB leaks back to back, then a backlog, on a 400 or 450 MB budget: the worker
    restarts to give the memory back as often as it must, every task ends with its result,
    the web answers every probe and the service stays up."""
    from tests.e2e.test_memory_budget import PeakSampler, start_leaky_service

    runner_env["MEMORY_BUDGET_MB"] = str(budget_mb)
    if broker == "redis":
        runner_env["REDIS_URL"] = redis_plain.url()
    runner = start_leaky_service(runner_env, tmp_path, pool)
    with runner:
        sampler = PeakSampler(runner)
        sampler.start()
        with health_probe(runner_env["PORT"]) as probe:
            printed = run_client(
                runner_env,
                "from app.celery import app\n"
                f"sent = [app.send_task('leaky.hold', ({LEAK_MB},)) for _ in range({LEAK_TASKS})]\n"
                f"sent += [app.send_task('app.tasks.add', (1, 1)) for _ in range({LEAK_BACKLOG})]\n"
                "print(len([r.get(timeout=240) for r in sent]))",
                300,
            )
        peak = sampler.stop()
        output = runner.output()
        assert runner.poll() is None, without_access_log(output)
        assert printed.splitlines()[-1] == str(LEAK_TASKS + LEAK_BACKLOG)
        assert STOPPED_LINE not in output, without_access_log(output)
        assert probe.failures == [], probe.failures[:5]
        restarts = output.count("restarted itself to give back the memory")
        print(
            f"fast leak, {budget_mb} MB, {broker}, {pool}: peak {peak:.0f} MB, "
            f"{restarts} memory restarts, {LEAK_TASKS + LEAK_BACKLOG} tasks done"
        )
        stop(runner)


HOLDING_MB = 420  # alone past the worker's share of the default 512 MB budget


# What the last resort does with the task holding the memory, by pool.
LAST_RESORT_LINES = {"threads": "replacing worker", "prefork": "killing it (SIGKILL)"}


@pytest.mark.parametrize("pool", sorted(LAST_RESORT_LINES))
def test_a_task_holding_the_memory_is_stopped_and_not_run_a_third_time(
    runner_env, tmp_path: Path, pool: str
):
    """A task holding 420 MB under the default 512 MB budget: each time the tree passes the
    last-resort line the task is stopped at once (threads: the worker replaced, the task
    given back; prefork: its child SIGKILLed, Celery requeues it); stopped a second time, it
    is not run again (REVOKED, named in one line); the web answers throughout and the
    service stays up."""
    from tests.e2e.test_memory_budget import PeakSampler, start_leaky_service

    runner = start_leaky_service(runner_env, tmp_path, pool)
    with runner:
        sampler = PeakSampler(runner)
        sampler.start()
        with health_probe(runner_env["PORT"]) as probe:
            printed = run_client(
                runner_env,
                "from app.celery import app\n"
                "from celery.exceptions import TaskRevokedError\n"
                f"held = app.send_task('leaky.hold', ({HOLDING_MB}, 30))\n"
                "try:\n"
                "    held.get(timeout=200)\n"
                "    print('completed')\n"
                "except TaskRevokedError:\n"
                "    print('revoked', held.id)\n"
                "print(app.send_task('app.tasks.add', (2, 3)).get(timeout=60))",
                300,
            )
        peak = sampler.stop()
        output = runner.output()
        lines = printed.splitlines()
        assert lines[0].startswith("revoked"), (printed, without_access_log(output))
        assert lines[-1] == "5"
        task_id = lines[0].split()[1]
        stopped = output.count(LAST_RESORT_LINES[pool])
        assert stopped >= 2, without_access_log(output)
        assert f"task leaky.hold[{task_id}] was running each of the 2 times" in output
        assert runner.poll() is None and STOPPED_LINE not in output
        assert probe.failures == [], probe.failures[:5]
        print(f"holding {HOLDING_MB} MB, {pool}: peak {peak:.0f} MB, stopped {stopped} times")
        stop(runner)


def test_the_connection_cap_reached_never_stops_the_service(
    runner_env, tmp_path: Path, redis_plain
):
    """Redis's connection cap reached for 20 s (maxclients, as a free plan's 30), every
    connection dropped: the web answers every probe, the service never stops, and once the
    cap is lifted new tasks run."""
    runner = start_service_on(runner_env, tmp_path, redis_plain)
    with runner:
        probe = health_probe(runner_env["PORT"])
        probe.start()
        admin = redis_plain.client()
        admin.ping()  # connected before the cap: CLIENT KILL spares this connection
        admin.config_set("maxclients", "1")
        fault_from = len(runner.output())
        try:
            admin.client_kill_filter(_type="normal", skipme=True)
            time.sleep(FAULT_SECONDS)  # the fault's duration, not a wait for anything
        finally:
            admin.config_set("maxclients", "10000")
        printed, recovered = tasks_after_the_fault(runner_env)
        probe.stop()
        output = runner.output()
        assert runner.poll() is None, without_access_log(output)
        assert printed.splitlines()[-1] == str(AFTER_FAULT_TASKS), without_access_log(output)
        assert STOPPED_LINE not in output
        assert probe.failures == [], probe.failures[:5]
        said = [
            line
            for line in output[fault_from:].splitlines()
            if line.startswith(("runner |", "worker | [")) and "GET /" not in line
        ]
        print(f"connection cap: new tasks ran {recovered:.1f} s after the cap was lifted")
        print("\n".join(said[:12]))
        stop(runner)


def test_the_first_staff_user_comes_from_variables_without_a_shell(runner_env, tmp_path: Path):
    """DJANGO_SUPERUSER_USERNAME and DJANGO_SUPERUSER_PASSWORD (Django's own) at boot: the
    staff user is created once (a restart leaves it as it is), it can log in to the admin,
    and the password appears nowhere in the output."""
    import requests

    password = "first-staff-Pw-7f3a9c"
    runner_env |= {
        "DJANGO_SUPERUSER_USERNAME": "owner",
        "DJANGO_SUPERUSER_PASSWORD": password,
        "DJANGO_SUPERUSER_EMAIL": "owner@example.com",
        "RUN_WORKER": "false",
        "RUN_BEAT": "false",
    }
    base = f"http://127.0.0.1:{runner_env['PORT']}"
    for number, said in ((1, "staff user 'owner' created"), (2, "staff user 'owner' (")):
        runner = start_runner(runner_env, tmp_path)
        with runner:
            wait_http_ok(f"{base}/healthz", START_TIMEOUT, runner)
            assert said in runner.output(), (number, runner.output()[-2000:])
            session = requests.Session()
            login = session.get(f"{base}/admin/login/", timeout=10)
            token = session.cookies["csrftoken"]
            session.post(
                f"{base}/admin/login/",
                data={"username": "owner", "password": password, "csrfmiddlewaretoken": token},
                headers={"Referer": f"{base}/admin/login/"},
                timeout=10,
            )
            admin = session.get(f"{base}/admin/", timeout=10)  # logged in: not sent to login
            assert login.status_code == admin.status_code == 200, admin.status_code
            assert "/admin/login/" not in admin.url, admin.url
            assert password not in runner.output()
            stop(runner)
