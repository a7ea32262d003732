"""Two instances booting at once against one database and one Redis (scale-out): one runs
the migrations, the other waits for the lock, says so, then finds nothing left to do."""

from __future__ import annotations

import contextlib
import re
import signal
from pathlib import Path

import pytest

from runner.supervise.migrate_lock import REDIS_LOCK_KEY
from tests.support.ports import free_port
from tests.support.postgres import query, temporary_database
from tests.support.runner import start_runner, wait_http_ok
from tests.support.timeouts import START_TIMEOUT, STOP_TIMEOUT

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack():
    with contextlib.ExitStack() as exits:
        yield exits


WAITING = "runner | waiting for another instance to finish migrations"
APPLIED = re.compile(r"^runner \| migrations: \d+ applied in [\d.]+ s$", re.MULTILINE)
NOTHING_TO_DO = re.compile(r"^runner \| migrations: none to apply \([\d.]+ s\)$", re.MULTILINE)


def test_two_instances_migrate_one_at_a_time_and_both_come_up(
    runner_env, tmp_path: Path, redis_plain, stack: contextlib.ExitStack
):
    """While the lock is held both instances wait; released, exactly one applies the
    migrations, the other applies none, and both serve."""
    # Web only: the lock is taken before any program starts, whatever the flags. One
    # PostgreSQL database, as a scaled service shares (two migrate runs at once on it would
    # collide on its tables).
    database = stack.enter_context(temporary_database("migrate_lock"))
    runner_env |= {
        "REDIS_URL": redis_plain.url(),
        "RUN_WORKER": "false",
        "RUN_BEAT": "false",
        "DATABASE_URL": database,
    }
    envs = [
        runner_env | {"PORT": str(free_port()), "RUNNER_DATA_DIR": str(tmp_path / name)}
        for name in ("one", "two")
    ]
    # The test holds the lock first, so that both instances are certain to meet it.
    client = redis_plain.client()
    client.set(REDIS_LOCK_KEY, "held-by-the-test", px=120_000)
    runners = [start_runner(env, tmp_path) for env in envs]
    try:
        for runner in runners:
            runner.wait_for_output(WAITING, START_TIMEOUT)
        client.delete(REDIS_LOCK_KEY)
        for runner, env in zip(runners, envs, strict=True):
            wait_http_ok(f"http://127.0.0.1:{env['PORT']}/healthz", START_TIMEOUT, runner)
        outputs = [runner.output() for runner in runners]
        for runner in runners:
            runner.send_signal(signal.SIGTERM)
        for runner in runners:
            assert runner.wait(timeout=STOP_TIMEOUT) == 0, runner.output()[-3000:]
    finally:
        for runner in runners:
            runner.kill_tree()

    assert sorted(len(APPLIED.findall(output)) for output in outputs) == [0, 1], outputs
    assert sorted(bool(NOTHING_TO_DO.search(output)) for output in outputs) == [False, True]
    assert all("migrate |" not in output for output in outputs)  # one summary line each
    ((total, distinct),) = query(
        runner_env["DATABASE_URL"],
        "SELECT COUNT(*), COUNT(DISTINCT app || '.' || name) FROM django_migrations",
    )
    assert total == distinct > 0
    assert client.exists(REDIS_LOCK_KEY) == 0
