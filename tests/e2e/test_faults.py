"""Bad days made boring: shutdown in the middle of a task, and an unwritable data directory.

Each test states what the runner promises and breaks something real to check it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import assert_no_survivors
from tests.support.runner import REPO_ROOT, run_client, start_runner, wait_http_ok
from tests.support.timeouts import START_TIMEOUT

pytestmark = pytest.mark.e2e

TASK_SECONDS = 8
# A grace shorter than the task: the warm shutdown cannot wait for it to finish.
GRACE_SECONDS = 6


# What the worker says when it puts the running task back (runner.worker.entry), before
# prefork's cold shutdown cancels the task or the threads-pool worker exits.
REQUEUED_LINES = {
    "prefork": "shutdown grace over: 1 unfinished task(s) put back in the queue; cancelling",
    "threads": "shutdown grace over: 1 unfinished task(s) put back in the queue (a thread",
}


@pytest.mark.parametrize(
    ("pool", "redis"),
    [("prefork", False), ("prefork", True), ("threads", False), ("threads", True)],
    ids=["prefork-local", "prefork-redis", "threads-local", "threads-redis"],
)
def test_sigterm_during_a_long_task_loses_nothing(
    runner_env, tmp_path: Path, pool: str, redis: bool, request: pytest.FixtureRequest
):
    """A task still running when the grace ends goes back to the queue and completes after the
    next start: the runner exits 0 within the grace and the task's result arrives -- with
    Redis at once, not after the visibility timeout."""
    runner_env |= {
        "SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
        "RUN_BEAT": "false",
        "CELERY_POOL": pool,
    }
    if redis:
        runner_env["REDIS_URL"] = request.getfixturevalue("redis_plain").url()
    first = start_runner(runner_env, tmp_path)
    with first:
        wait_http_ok(f"http://127.0.0.1:{runner_env['PORT']}/healthz", START_TIMEOUT, first)
        task_id = run_client(
            runner_env,
            "from app.celery import app; "
            f"print(app.send_task('app.tasks.slow', ({TASK_SECONDS},)).id)",
            30,
        )
        first.wait_for_output(f"Task app.tasks.slow[{task_id}] received", START_TIMEOUT)
        tree = first.tree()
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=GRACE_SECONDS + 5) == 0
        assert_no_survivors(tree, timeout=10)
    assert REQUEUED_LINES[pool] in first.output()
    assert f"Task app.tasks.slow[{task_id}] succeeded" not in first.output()

    second = start_runner(runner_env, tmp_path)
    with second:
        result = run_client(
            runner_env,
            "from app.celery import app; "
            f"print(app.AsyncResult('{task_id}').get(timeout={START_TIMEOUT}))",
            START_TIMEOUT + 30,
        )
        assert float(result) == TASK_SECONDS
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0


def test_unwritable_data_directory_is_a_clear_error(runner_env, tmp_path: Path):
    """A data directory that is a file stops the start with one line, exit status 2, not a
    hang; ``plan`` says the same."""
    not_a_directory = tmp_path / "occupied"
    not_a_directory.write_text("a file where the data directory should be")
    runner_env["RUNNER_DATA_DIR"] = str(not_a_directory)
    expected = [
        f"runner | error: RUNNER_DATA_DIR: {not_a_directory} is a file, not a directory; "
        "remove it or set RUNNER_DATA_DIR to a directory"
    ]
    runner = start_runner(runner_env, tmp_path)
    with runner:
        assert runner.wait(timeout=START_TIMEOUT) == 2
    assert [line for line in runner.output().splitlines() if "error:" in line] == expected
    plan = subprocess.run(
        [sys.executable, "-m", "runner", "plan"],
        env=runner_env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (plan.returncode, plan.stdout, plan.stderr.splitlines()) == (2, "", expected)


def test_run_migrations_false_on_a_database_never_migrated_is_one_line(runner_env, tmp_path):
    """RUN_MIGRATIONS=false against a fresh database: one line naming the variable, the
    database and the fix, exit status 2, no traceback, and no database file created; ``plan``
    says the same."""
    runner_env["RUN_MIGRATIONS"] = "false"
    database = Path(runner_env["DATABASE_URL"].removeprefix("sqlite:///"))
    runner = start_runner(runner_env, tmp_path)
    with runner:
        assert runner.wait(timeout=START_TIMEOUT) == 2
    output = runner.output()
    assert [line for line in output.splitlines() if "error:" in line] == [
        f"runner | error: RUN_MIGRATIONS='false': SQLite file {database} has never been "
        "migrated (no django_migrations table), and the worker and beat need its tables; "
        "unset RUN_MIGRATIONS to migrate at start, or run `python manage.py migrate` first"
    ]
    assert "Traceback" not in output and "Warning" not in output
    assert not database.exists()
    plan = subprocess.run(
        [sys.executable, "-m", "runner", "plan"],
        env=runner_env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert plan.returncode == 2 and plan.stderr.splitlines() == [
        line for line in output.splitlines() if "error:" in line
    ]
    assert not database.exists()


def test_tasks_sent_while_the_worker_is_down_run_when_it_returns(runner_env, tmp_path: Path):
    """Tasks queued while only the web runs are kept, and run once a worker starts."""
    runner_env |= {"RUN_WORKER": "false", "RUN_BEAT": "false"}
    web_only = start_runner(runner_env, tmp_path)
    with web_only:
        wait_http_ok(f"http://127.0.0.1:{runner_env['PORT']}/healthz", START_TIMEOUT, web_only)
        ids = run_client(
            runner_env,
            "from app.celery import app; "
            "print(' '.join(app.send_task('app.tasks.add', (i, i)).id "
            "for i in range(5)))",
            30,
        ).split()
        web_only.send_signal(signal.SIGTERM)
        assert web_only.wait(timeout=30) == 0
    runner_env |= {"RUN_WORKER": "true", "RUN_WEB": "false"}
    worker_only = start_runner(runner_env, tmp_path)
    with worker_only:
        code = (
            "from app.celery import app; "
            f"print(sum(app.AsyncResult(i).get(timeout={START_TIMEOUT}) for i in {ids!r}))"
        )
        assert run_client(runner_env, code, START_TIMEOUT + 30) == str(sum(2 * i for i in range(5)))
        worker_only.send_signal(signal.SIGTERM)
        assert worker_only.wait(timeout=30) == 0
