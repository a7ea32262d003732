"""The fork model's two halves, each in a process of its own: what makes a process unsafe to
fork from (``runner.supervise.preload.fork_hazard``), and a forked child becoming a program
(``runner.supervise.forked.become``) as a new interpreter would have."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runner.supervise.forked import entry_for

ROOT = Path(__file__).resolve().parents[3]


def run_python(code: str, **kwargs) -> subprocess.CompletedProcess:
    """``code`` in a new interpreter with the runner importable; its output and status."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        **kwargs,
    )


HAZARD = """
    import os, socket, threading, sys
    from runner.supervise.preload import fork_hazard, inherited_files, open_descriptors
    before = open_descriptors()
    {setup}
    print(fork_hazard(before))
"""


@pytest.mark.parametrize(
    ("setup", "said"),
    [
        ("pass", "None"),
        (
            "threading.Thread(target=threading.Event().wait, name='sentry-flush', daemon=True)"
            ".start()",
            "the project's import started 1 thread(s) (sentry-flush)",
        ),
        ("r, w = os.pipe()", "the project's import left a pipe open (descriptor"),
        (
            "server = socket.create_server(('127.0.0.1', 0)); "
            "client = socket.create_connection(server.getsockname())",
            "the project's import left a socket listening on 127.0.0.1:",
        ),
        (
            "server = socket.create_server(('127.0.0.1', 0)); "
            "client = socket.create_connection(server.getsockname()); "
            "peer, _ = server.accept(); server.close()",
            "the project's import left a socket to 127.0.0.1:",
        ),
        ("log = open(os.devnull, 'a'); data = open(sys.executable, 'rb')", "None"),
    ],
    ids=["nothing", "a thread", "a pipe", "a server", "a connection", "files"],
)
def test_what_makes_forking_unsafe_is_named(setup: str, said: str):
    """Threads and sockets, pipes or event descriptors opened by the import are named; open
    files are not a hazard (every program keeps them, as a fork would)."""
    result = run_python(HAZARD.format(setup=setup))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(said), result.stdout


def test_descriptors_open_before_the_import_are_not_the_projects():
    """A pipe the runner was started with (a shell's, the platform's) is no hazard, and no
    program keeps it; a file the import opened is kept, the runner's own lock is not."""
    read_end, write_end = os.pipe()
    try:
        result = run_python(
            """
            import json, os
            from runner.supervise.preload import fork_hazard, inherited_files, open_descriptors
            before = open_descriptors()
            log = open(os.devnull, "a")
            lock = os.open(os.devnull, os.O_RDONLY)
            print(json.dumps([fork_hazard(before), sorted(inherited_files(before, {lock})),
                              log.fileno(), lock]))
            """,
            pass_fds=(write_end,),
        )
    finally:
        os.close(read_end)
        os.close(write_end)
    assert result.returncode == 0, result.stderr
    hazard, kept, log_fd, lock_fd = json.loads(result.stdout)
    assert hazard is None
    assert kept == [log_fd]
    assert lock_fd not in kept and write_end not in kept


BECOME = """
    import os, signal, sys
    from runner.supervise.forked import Entry, become

    def entry():
        print("argv", sys.argv, flush=False)
        print("env", os.environ.get("PROGRAM_ONLY"), os.environ.get("PARENT_ONLY"))
        print("sigterm default", signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
        print("name", open("/proc/self/comm").read().strip())
        {body}

    signal.signal(signal.SIGTERM, lambda *a: None)  # as supervisord's are
    os.environ["PARENT_ONLY"] = "1"
    pid = os.fork()
    if pid == 0:
        program = Entry("gunicorn", entry)
        become([sys.executable, "-m", "gunicorn", "a", "b"], {{"PROGRAM_ONLY": "yes"}}, program)
    _, status = os.waitpid(pid, 0)
    print("status", os.waitstatus_to_exitcode(status))
"""


@pytest.mark.parametrize(
    ("body", "status", "stderr"),
    [
        ("pass", 0, ""),
        ("sys.exit(3)", 3, ""),
        ("sys.exit('bad config')", 1, "bad config"),
        ("raise RuntimeError('boom')", 1, "RuntimeError: boom"),
    ],
    ids=["returns", "exit 3", "exit message", "uncaught"],
)
def test_a_forked_child_becomes_the_program(body: str, status: int, stderr: str):
    """The child sees the program's environment and command line, default signal handlers,
    output that is not lost in a buffer, and exits with what the program's exit says (never
    returning into the caller's code)."""
    result = run_python(BECOME.format(body=body))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        "argv ['gunicorn', 'a', 'b']",
        "env yes None",
        "sigterm default True",
        "name gunicorn",
    ], result.stdout
    assert lines[-1] == f"status {status}"
    assert stderr in result.stderr


def test_only_this_interpreters_known_modules_run_in_process():
    """``python -m gunicorn`` and ``python -m runner.worker.entry`` by this interpreter run in
    the forked child; anything else (another interpreter, a script, another module) is
    executed as supervisord would."""
    python = sys.executable
    assert entry_for([python, "-m", "gunicorn", "x:app"]) is not None
    worker = entry_for([python, "-m", "runner.worker.entry", "-A", "app", "worker", "--beat"])
    beat = entry_for([python, "-m", "runner.worker.entry", "-A", "app", "beat", "-l", "INFO"])
    assert (worker.name, beat.name) == ("celery", "celery-beat")  # as ps -o comm shows them
    assert entry_for(["/usr/bin/python3", "-m", "gunicorn"]) is None
    assert entry_for([python, "-m", "celery", "worker"]) is None
    assert entry_for([python, "manage.py", "runserver"]) is None
    assert entry_for([python]) is None


def test_the_default_handlers_are_restored_for_every_supervisord_signal():
    """supervisord's six handlers (its setsignals) are what a forked child must undo."""
    from supervisor.options import ServerOptions

    from runner.supervise.forked import SUPERVISORD_SIGNALS

    source = Path(sys.modules[ServerOptions.__module__].__file__).read_text()
    handled = {
        getattr(signal, name)
        for name in ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGCHLD", "SIGUSR2")
        if f"signal.signal(signal.{name}, receive)" in source
    }
    assert handled == {*SUPERVISORD_SIGNALS, signal.SIGINT}


def test_a_fork_waits_for_a_thread_in_flight_and_says_when_one_is_left():
    """supervisord's keep-awake thread ending is waited for; one that does not end in time
    means the program is executed rather than forked."""
    result = run_python(
        """
        import threading
        from runner.supervise.preload import without_threads
        short = threading.Thread(target=threading.Event().wait, args=(0.2,))
        short.start()
        print(without_threads(timeout=10))
        stuck = threading.Event()
        threading.Thread(target=stuck.wait, daemon=True).start()
        print(without_threads(timeout=0.1))
        stuck.set()
        """
    )
    assert result.stdout.split() == ["True", "False"], result.stderr


def test_the_worker_loads_celerys_command_line_without_the_amqp_shell():
    """``celery amqp``'s interactive shell (click_repl, prompt_toolkit: 16 MB) is left out of
    the worker and beat; Celery's command line keeps every command, ``worker`` included."""
    result = run_python(
        """
        import sys
        from runner.celery_cli import without_amqp_shell
        without_amqp_shell()
        from celery.bin.celery import celery
        print(sorted(name for name in ("worker", "beat", "amqp") if name in celery.commands))
        print("prompt_toolkit" in sys.modules)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["['amqp', 'beat', 'worker']", "False"]


def test_the_web_is_forked_with_the_projects_urlconf_loaded(tmp_path: Path):
    """What Django loads at the first request (the URLconf and its views, the template
    engines) is loaded before the web is forked, so every program shares it."""
    result = run_python(
        """
        import sys
        from runner.supervise.preload import preload_web
        preload_web()
        print("app.urls" in sys.modules, "app.views" in sys.modules)
        """,
        env=os.environ
        | {"DJANGO_SETTINGS_MODULE": "app.settings", "RUNNER_DATA_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]
