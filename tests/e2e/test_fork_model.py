"""The fork model end to end: programs forked from the runner's preloaded process, forked
again at a restart, and the exec model when the project's import makes forking unsafe.

Real runner, supervisord, Gunicorn and Celery, on the demo project; the projects that start a
thread or open a log file at import are the demo's settings with two lines more, written into
the test's directory (a settings module of the user's, not a runner fixture), and two with
what real projects add at import: Sentry's SDK (reporting to a collector the test runs) and
OpenTelemetry's tracing SDK.
"""

from __future__ import annotations

import gzip
import http.server
import signal
import textwrap
import threading
from pathlib import Path

import psutil
import pytest
import requests

from runner.supervise.preload import FORK_VARIABLE
from tests.support.ports import free_port
from tests.support.processes import ProcessHandle, program_main, wait_for
from tests.support.runner import (
    run_client,
    send_add,
    start_runner,
    stop_and_check,
    wait_http_ok,
)
from tests.support.timeouts import START_TIMEOUT, TASK_TIMEOUT

pytestmark = pytest.mark.e2e

EXEC_LINE = "runner | each program starts its own interpreter: "


def user_settings(env: dict[str, str], tmp_path: Path, extra: str) -> None:
    """Run the demo with a settings module of the user's: the demo's, plus ``extra``."""
    folder = tmp_path / "user_settings"
    folder.mkdir()
    (folder / "user_settings.py").write_text(
        "from app.settings import *  # noqa: F403\n" + textwrap.dedent(extra)
    )
    env["PYTHONPATH"] = str(folder)
    env["DJANGO_SETTINGS_MODULE"] = "user_settings"
    env["CELERY_APP"] = "app"


def command_line(process: psutil.Process) -> list[str]:
    return process.cmdline()


def assert_executed(mains: dict[str, psutil.Process]) -> None:
    """The web and the worker are programs executed anew: their own command lines."""
    assert "-m gunicorn" in " ".join(command_line(mains["web"]))
    assert "runner.worker.entry" in " ".join(command_line(mains["worker"]))


def started(runner: ProcessHandle, env: dict[str, str]) -> dict[str, psutil.Process]:
    """The web's and the worker's main processes, once the web answers and a task ran."""
    wait_http_ok(f"http://127.0.0.1:{env['PORT']}/healthz", START_TIMEOUT, runner)
    assert send_add(env) == "5"
    return {
        name: wait_for(lambda name=name: program_main(runner.pid, name), START_TIMEOUT)
        for name in ("web", "worker")
    }


def crash_worker(runner: ProcessHandle, worker: psutil.Process) -> psutil.Process:
    """SIGKILL the worker's main process; the one supervisord starts in its place."""
    worker.send_signal(signal.SIGKILL)
    return wait_for(
        lambda: (w := program_main(runner.pid, "worker")) and w.pid != worker.pid and w,
        START_TIMEOUT,
        message="the worker was not started again",
    )


@pytest.mark.parametrize("broker", ["local", "redis"])
def test_programs_are_forked_from_the_runner_and_forked_again_at_a_restart(
    runner_env, tmp_path: Path, broker: str, request: pytest.FixtureRequest
):
    """By default no program is a new interpreter: each keeps the runner's command line
    (nothing was executed) under its own kernel name; a worker that crashed is forked again
    from the same preloaded process and runs tasks; SIGTERM stops everything. With Redis
    too: the runner's own checks and migration lock leave no connection behind to share."""
    if broker == "redis":
        runner_env["REDIS_URL"] = request.getfixturevalue("redis_plain").url()
    runner = start_runner(runner_env, tmp_path)
    with runner:
        mains = started(runner, runner_env)
        runner_command = command_line(psutil.Process(runner.pid))
        assert runner_command[-2:] == ["-m", "runner"]
        for name, process in mains.items():
            assert command_line(process) == runner_command, name
        assert mains["web"].name() == "gunicorn" and mains["worker"].name() == "celery"
        # A crash: supervisord forks the worker again, from the same preloaded process.
        again = crash_worker(runner, mains["worker"])
        assert command_line(again) == runner_command and again.name() == "celery"
        assert send_add(runner_env) == "5"
        stop_and_check(runner)
    output = runner.output()
    assert EXEC_LINE not in output


def test_a_project_whose_import_starts_a_thread_runs_each_program_in_its_own_interpreter(
    runner_env, tmp_path: Path
):
    """An error reporter's thread started by the settings: forking would copy it half-alive,
    so the runner says why in one line and executes each program, which works as before."""
    user_settings(
        runner_env,
        tmp_path,
        """
        import threading
        threading.Thread(target=threading.Event().wait, name="error-reporter", daemon=True).start()
        """,
    )
    runner = start_runner(runner_env, tmp_path)
    with runner:
        assert_executed(started(runner, runner_env))
        stop_and_check(runner)
    lines = [line for line in runner.output().splitlines() if line.startswith(EXEC_LINE)]
    assert lines == [
        EXEC_LINE + "the project's import started 1 thread(s) (error-reporter), and a fork "
        f"would copy it half-alive; {FORK_VARIABLE}=false starts them so without this check"
    ]


def test_runner_fork_false_executes_every_program(runner_env, tmp_path: Path):
    """RUNNER_FORK=false: the exec model, chosen; no line about a hazard."""
    runner_env[FORK_VARIABLE] = "false"
    runner = start_runner(runner_env, tmp_path)
    with runner:
        assert_executed(started(runner, runner_env))
        stop_and_check(runner)
    assert EXEC_LINE not in runner.output()


def test_a_log_file_the_settings_open_is_written_by_the_forked_web(runner_env, tmp_path: Path):
    """A file the project opens at import (a logging FileHandler) stays open in every forked
    program, as a fork keeps it: the web's 404 warning lands in it, nothing in a descriptor
    that meanwhile means something else."""
    log = tmp_path / "project.log"
    user_settings(
        runner_env,
        tmp_path,
        f"""
        LOGGING = {{
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {{"file": {{"class": "logging.FileHandler", "filename": {str(log)!r}}}}},
            "loggers": {{"django.request": {{"handlers": ["file"], "level": "WARNING"}}}},
        }}
        """,
    )
    runner = start_runner(runner_env, tmp_path)
    with runner:
        mains = started(runner, runner_env)
        assert command_line(mains["web"])[-2:] == ["-m", "runner"]  # forked
        response = requests.get(f"http://127.0.0.1:{runner_env['PORT']}/nowhere", timeout=10)
        assert response.status_code == 404
        wait_for(
            lambda: "Not Found: /nowhere" in log.read_text(),
            TASK_TIMEOUT,
            message=lambda: f"the 404 is not in the project's log: {log.read_text()!r}",
        )
        stop_and_check(runner)
    assert EXEC_LINE not in runner.output()


class SentryCollector:
    """A Sentry ingest endpoint on a free local port: keeps every envelope POSTed to it
    (decompressed), so a test can see what the project's real Sentry SDK sent."""

    def __init__(self) -> None:
        self.envelopes: list[str] = []
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                collector.envelopes.append(body.decode("utf-8", "replace"))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:  # quiet
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def dsn(self) -> str:
        return f"http://public@127.0.0.1:{self.server.server_address[1]}/1"

    def events_with(self, text: str) -> list[str]:
        return [envelope for envelope in self.envelopes if text in envelope]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def sentry():
    collector = SentryCollector()
    yield collector
    collector.close()


def fail_a_task(env: dict[str, str], marker: str) -> None:
    """``add(2, marker)`` fails in the worker with a TypeError naming ``marker``; sent from a
    client with the demo's own settings (no Sentry of its own, so every event is the
    worker's)."""
    code = (
        "from app.celery import app\n"
        f"result = app.send_task('app.tasks.add', (2, {marker!r}))\n"
        f"try:\n    result.get(timeout={TASK_TIMEOUT})\n"
        "except TypeError:\n    print('failed')\n"
    )
    client_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    assert run_client(client_env | {"DJANGO_SETTINGS_MODULE": "app.settings"}, code, 60) == "failed"


def test_a_project_with_sentry_keeps_the_fork_model_and_reports_from_every_worker(
    runner_env, tmp_path: Path, sentry: SentryCollector
):
    """Sentry's SDK (a real one, its documented ``sentry_sdk.init(dsn=...)`` in the
    settings, its Django and Celery integrations found by itself) starts no thread at
    import, so the programs are still forked; its transport's thread starts in each
    program when it first sends. A task's error reaches Sentry from the forked worker, and
    again from the worker forked anew after a crash (supervisord's process never started a
    Sentry thread that would make a fork wait or fall back)."""
    user_settings(
        runner_env,
        tmp_path,
        f"""
        import sentry_sdk
        sentry_sdk.init(dsn={sentry.dsn!r})
        """,
    )
    runner = start_runner(runner_env, tmp_path)
    with runner:
        mains = started(runner, runner_env)
        runner_command = command_line(psutil.Process(runner.pid))
        assert command_line(mains["worker"]) == runner_command  # forked, not executed
        fail_a_task(runner_env, "first-worker")
        wait_for(
            lambda: sentry.events_with("first-worker"),
            TASK_TIMEOUT,
            message=lambda: f"no Sentry event from the worker; got {len(sentry.envelopes)}",
        )
        (event,) = sentry.events_with("first-worker")
        assert "TypeError" in event and "app.tasks.add" in event
        again = crash_worker(runner, mains["worker"])
        assert command_line(again) == runner_command
        fail_a_task(runner_env, "second-worker")
        wait_for(
            lambda: sentry.events_with("second-worker"),
            TASK_TIMEOUT,
            message="no Sentry event from the worker forked after the crash",
        )
        stop_and_check(runner)
    output = runner.output()
    assert EXEC_LINE not in output and "starts its own interpreter" not in output


def test_a_project_with_an_opentelemetry_batch_processor_runs_each_program_in_its_own_interpreter(
    runner_env, tmp_path: Path
):
    """OpenTelemetry's SDK as its documentation sets it up: a BatchSpanProcessor starts
    its export thread when it is made, at import; the runner names that thread, falls back
    to the exec model, and every program works."""
    user_settings(
        runner_env,
        tmp_path,
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        trace.set_tracer_provider(provider)
        """,
    )
    runner = start_runner(runner_env, tmp_path)
    with runner:
        assert_executed(started(runner, runner_env))
        stop_and_check(runner)
    lines = [line for line in runner.output().splitlines() if line.startswith(EXEC_LINE)]
    assert len(lines) == 1
    assert lines[0].startswith(EXEC_LINE + "the project's import started 1 thread(s) (Otel")
