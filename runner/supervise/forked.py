"""In a program's process, forked by the preloaded supervisord: become what ``python -m
MODULE ARGS`` would have been, without starting Python again (the fork model,
``runner.supervise.preload``).

supervisord forks a child for each program, points its standard streams at its pipes, closes
its own descriptors, and then calls ``execve``. In the fork model the runner's supervisord
calls :func:`become` there instead, for the programs it knows (Gunicorn and
``runner.worker.entry``): the child already holds Django, the project and the libraries the
program needs, imported once in supervisord's process, so the program starts in tens of
milliseconds of CPU instead of a second (ten on Render's 0.1 CPU), and its memory pages stay
shared with supervisord's until written.

What a new interpreter would have had and a forked one must be given: the program's own
environment (``os.environ``), its command line (``sys.argv``), default signal handlers
(supervisord's own are installed in every forked child), standard streams on the new
descriptors 0-2 written through line by line (what ``PYTHONUNBUFFERED`` gives), and an exit
that runs what an interpreter's exit runs (non-daemon threads joined, ``atexit``) but never
unwinds into supervisord's code, whose frames are below on the stack.
"""

from __future__ import annotations

import atexit
import importlib
import inspect
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NoReturn

from runner.config.plan import CELERY_BEAT_NAME
from runner.prctl import set_process_name

# supervisord's handlers (supervisor.options.ServerOptions.setsignals), set again to what a new
# interpreter starts with.
SUPERVISORD_SIGNALS = (
    signal.SIGTERM,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGCHLD,
    signal.SIGUSR2,
)
EXIT_UNCAUGHT = 1  # what Python exits with after an uncaught exception


def _gunicorn() -> None:
    from gunicorn.app.wsgiapp import run

    # gunicorn >= 22 takes the program's name for its usage line; 21.2 reads sys.argv[0].
    if "prog" in inspect.signature(run).parameters:
        run(prog="gunicorn")
    else:
        run()


def _module_main(module: str) -> Callable[[], None]:
    """``module``'s ``main()``, imported when run (what ``python -m module`` executes)."""

    def run() -> None:
        importlib.import_module(module).main()

    return run


@dataclass(frozen=True)
class Entry:
    """A program run in process: its kernel name (``ps -o comm``; its command line stays the
    runner's, ``python -m runner``) and what running it means."""

    name: str
    run: Callable[[], None]


WORKER_MODULE = "runner.worker.entry"
# ``python -m`` modules run in process.
ENTRIES: dict[str, Entry] = {
    "gunicorn": Entry("gunicorn", _gunicorn),
    WORKER_MODULE: Entry("celery", _module_main(WORKER_MODULE)),
}
# A separate beat (``runner.worker.entry ... beat``) is named as the embedded one is.
BEAT_ENTRY = Entry(CELERY_BEAT_NAME, ENTRIES[WORKER_MODULE].run)


def entry_for(argv: list[str] | tuple[str, ...]) -> Entry | None:
    """What runs ``argv`` in process: ``python -m MODULE ...`` by this interpreter, for a
    module of :data:`ENTRIES`; otherwise None (the program is executed as usual)."""
    if len(argv) >= 3 and argv[0] == sys.executable and argv[1] == "-m":
        entry = ENTRIES.get(argv[2])
        if entry is ENTRIES[WORKER_MODULE] and "beat" in argv and "worker" not in argv:
            return BEAT_ENTRY
        return entry
    return None


def _exit_code(error: SystemExit) -> int:
    """What the interpreter exits with for ``sys.exit(code)``."""
    code = error.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")
    return 1


def _fresh_streams() -> None:
    """Text streams on descriptors 0-2 as this process has them now, written through."""
    sys.stdin = sys.__stdin__ = open(0, closefd=False, errors="replace")
    for fd, name in ((1, "stdout"), (2, "stderr")):
        stream = open(
            fd, "w", buffering=1, closefd=False, errors="backslashreplace", encoding="utf-8"
        )
        stream.reconfigure(write_through=True)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def become(argv: list[str], env: Mapping[str, str], entry: Entry) -> NoReturn:
    """Run ``entry`` as the program ``argv`` in this forked child; never return."""
    set_process_name(entry.name)
    for number in SUPERVISORD_SIGNALS:
        signal.signal(number, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [argv[2], *argv[3:]]
    _fresh_streams()
    code = 0
    try:
        entry.run()
    except SystemExit as error:
        code = _exit_code(error)
    except BaseException:  # as an interpreter would: the traceback, then exit status 1
        traceback.print_exc()
        code = EXIT_UNCAUGHT
    try:
        # What an interpreter's exit does, in its order: wait for non-daemon threads
        # (a threads-pool worker's), then the exit functions (billiard's pool clean-up).
        shutdown = getattr(threading, "_shutdown", None)
        if shutdown is not None:
            shutdown()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)
