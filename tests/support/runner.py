"""Launch the real runner (``python -m runner``) with an environment the host cannot leak into."""

import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import django
import requests

from runner.config.settings import VARIABLES
from tests.support.processes import (
    POLL_INTERVAL,
    ProcessExitedError,
    ProcessHandle,
    start_process,
    tail,
    wait_for,
)
from tests.support.timeouts import CLIENT_TIMEOUT, START_TIMEOUT, STOP_TIMEOUT, TASK_TIMEOUT

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The repository root (the parent of tests/): the runner's working directory."""

HOST_VARIABLES_REMOVED = (*(v.name for v in VARIABLES), "MEMORY_BUDGET_MB")
"""Variables the runner reads, dropped from the host environment: a test sets those it wants."""

MODEL_VARIABLE = "RUNNER_TESTS_FORK"
"""Set (``false``) in the host environment, it is every runner's ``RUNNER_FORK``: how CI runs
the fault and budget tests in the exec model too (``.ci/run``)."""

SHELL_COMMAND = (
    "manage.py",
    "shell",
    # Django 5.2's shell imports every model unless told not to; older ones have no flag.
    *(("--no-imports",) if django.VERSION >= (5, 2) else ()),
)
"""``manage.py shell`` without automatic imports, as the installed Django spells it."""

HTTP_REQUEST_TIMEOUT = 5.0
"""Seconds one polling request of wait_http_ok() may take."""


def build_runner_env(environ: Mapping[str, str], tmp_path: Path, port: int) -> dict[str, str]:
    """Copy ``environ`` minus HOST_VARIABLES_REMOVED, plus a database, data dir and PORT.

    The database and the data dir are in ``tmp_path``.

    PATH and everything else not listed is kept, so tools and Python still resolve.
    """
    env = {name: value for name, value in environ.items() if name not in HOST_VARIABLES_REMOVED}
    env |= {
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "RUNNER_DATA_DIR": str(tmp_path / "data"),
        "PORT": str(port),
        # The runner's private run directory (tempfile.mkdtemp) then lands in the test's
        # tmp dir too, so a runner killed by the test leaves nothing in /tmp.
        "TMPDIR": str(tmp_path),
    }
    if environ.get(MODEL_VARIABLE):
        env["RUNNER_FORK"] = environ[MODEL_VARIABLE]
    return env


def start_runner(
    env: Mapping[str, str],
    tmp_path: Path,
    args: Sequence[str] = (),
    *,
    cwd: Path = REPO_ROOT,
    python: str = sys.executable,
) -> ProcessHandle:
    """Start ``python -m runner *args`` in ``cwd`` with exactly ``env``.

    ``cwd`` is by default the repository root; ``python`` the interpreter to use, e.g. a
    fresh venv's. Each call gets its own log file in ``tmp_path`` (runner.log, runner-2.log,
    ...).
    """
    log_path = tmp_path / "runner.log"
    number = 1
    while log_path.exists():
        number += 1
        log_path = tmp_path / f"runner-{number}.log"
    return start_process(
        [python, "-m", "runner", *args],
        env=env,
        cwd=cwd,
        log_path=log_path,
    )


def start_ready_runner(env: Mapping[str, str], tmp_path: Path) -> ProcessHandle:
    """``start_runner``, returned once its web answers /healthz and its worker is up; the
    tree is killed if it never gets there."""
    runner = start_runner(env, tmp_path)
    try:
        wait_http_ok(f"http://127.0.0.1:{env['PORT']}/healthz", START_TIMEOUT, runner)
        runner.wait_for_output("celery@", START_TIMEOUT)
    except BaseException:
        runner.kill_tree()
        raise
    return runner


def wait_http_ok(
    url: str, timeout: float, process: ProcessHandle | None = None
) -> requests.Response:
    """Poll ``url`` with GET until it answers 200 and return that response.

    With ``process``, fail at once (quoting its output) if that process exits first.
    """
    last: list[str] = []

    def ok() -> requests.Response | None:
        if process is not None and process.poll() is not None:
            raise ProcessExitedError(
                f"{process!r} exited with {process.returncode} before {url} answered 200; output:\n"
                f"{tail(process.output())}"
            )
        response = requests.get(url, timeout=HTTP_REQUEST_TIMEOUT)
        last[:] = [f"{response.status_code} {response.text[:200]!r}"]
        return response if response.status_code == 200 else None

    def explain() -> str:
        text = f"{url} did not answer 200" + (f"; last answer: {last[0]}" if last else "")
        if process is not None:
            text += f"; output of {process!r}:\n{tail(process.output())}"
        return text

    return wait_for(ok, timeout, interval=POLL_INTERVAL, message=explain)


def run_client(env: Mapping[str, str], code: str, timeout: float) -> str:
    """Run ``python -c code`` as a separate client process (cwd: repo root); return its stdout.

    This is how a user's other process talks to the service: the same environment, a new
    interpreter, nothing shared with the runner but the broker and the database.
    """
    import subprocess

    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"client exited with {result.returncode}:\n{tail(result.stderr)}")
    return result.stdout.strip()


SEND_ADD = (
    "from app.celery import app; "
    f"print(app.send_task('app.tasks.add', (2, 3)).get(timeout={TASK_TIMEOUT}))"
)
"""A client's ``add(2, 3)`` through the demo's Celery app: prints 5 once a worker ran it."""


def send_add(env: Mapping[str, str]) -> str:
    """Send the demo's ``add(2, 3)`` from a separate client process; what it printed."""
    return run_client(env, SEND_ADD, CLIENT_TIMEOUT)


def manage(env: Mapping[str, str], *args: str, cwd: Path = REPO_ROOT) -> None:
    """Run ``python manage.py *args`` in ``cwd`` (the demo by default); fail if it fails."""
    import subprocess

    subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=cwd,
        env=dict(env),
        check=True,
        capture_output=True,
        timeout=120,
    )


def speed_up_heartbeat(env: Mapping[str, str], seconds: float = 2) -> None:
    """Migrate the demo's database, then make its seeded heartbeat schedule fire every
    ``seconds`` (the migration seeds 60 s, too slow for a test)."""
    manage(env, "migrate", "--noinput")
    manage(
        env,
        "shell",
        "-c",
        "from django_celery_beat.models import PeriodicTask; "
        "task = PeriodicTask.objects.get(name='heartbeat'); "
        f"task.interval.every = {seconds}; task.interval.save()",
    )


def stop_and_check(runner: ProcessHandle) -> None:
    """SIGTERM: status 0 within the grace, and not one process of the tree left behind."""
    from tests.support.processes import assert_no_survivors

    tree = runner.tree()
    assert len(tree) >= 3, [p.cmdline() for p in tree]
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=STOP_TIMEOUT) == 0, runner.output()[-3000:]
    assert_no_survivors(tree, timeout=10)
