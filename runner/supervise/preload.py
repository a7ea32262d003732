"""Import once, fork everything: what the runner's process loads before it becomes supervisord,
and whether its programs can be forked from it (the fork model; ``RUNNER_FORK``).

Without it every program is a new interpreter that imports Python's standard library, Django,
the project and its own server again: about a second of CPU each here, ten on Render's 0.1
CPU, paid at every wake and every restart. In the fork model the runner's process, which has
already read the project (``runner.supervise.discover``) and migrated it
(``runner.supervise.migrations``), imports what the programs need and runs supervisord itself;
supervisord forks each program from it (``runner.supervise.forked``), and again from it at a
restart.

Imported in two steps, so that the web never waits for the worker's libraries:
- before supervisord starts (:func:`preload_web`): Django set up, the project's WSGI
  application behind the health check (``runner.web.wsgi``) and Gunicorn's master and worker;
- just before the worker or a separate beat is forked for the first time
  (:func:`preload_celery`), after the web has been: Celery's worker, beat, transports and
  command line. The web is already starting, at a higher priority (the worker's niceness).

Forking is only safe from a process with one thread and no open connection: a thread does not
exist in the child (a lock it held stays held), and a socket in both processes is one
connection read by two. After closing what the runner itself opened (database connections;
its own Redis clients are closed where they are used), :func:`fork_hazard` looks for threads
and for sockets, pipes and event descriptors the project's import left open (error reporters'
and tracing exporters' threads, a client connected at import time); with one, the runner
starts every program as its own interpreter, as before, and says why in one line. Regular files
the project opened (a log file) stay open in the programs, as a fork would have them
(:func:`inherited_files`).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import stat
import threading
import time
from pathlib import Path

from runner.celery_cli import without_amqp_shell

FORK_VARIABLE = "RUNNER_FORK"

# What the web's programs import, besides the project (which runner.web.wsgi sets up).
WEB_MODULES = (
    "runner.web.wsgi",
    "runner.web.gunicorn_config",
    "runner.web.read_ahead",
    "gunicorn.app.wsgiapp",
    "gunicorn.arbiter",
    "gunicorn.glogging",
)
# What the worker and beat import as they start (measured: the modules a worker had loaded
# at its first task and the runner's process had not); a missing one is the program's to
# report, not this step's.
CELERY_MODULES = (
    "runner.worker.entry",
    "runner.worker.beat_leader",
    "runner.worker.local_store",
    "celery.__main__",
    "celery.bin.celery",
    "celery.apps.worker",
    "celery.apps.beat",
    "celery.beat",
    "celery.worker.components",
    "celery.worker.consumer",
    "celery.worker.control",
    "celery.worker.request",
    "celery.worker.strategy",
    "celery.worker.loops",
    "celery.worker.pidbox",
    "celery.worker.autoscale",
    "celery.concurrency.thread",
    "celery.concurrency.prefork",
    "celery.events.dispatcher",
    "celery.contrib.django",
    "kombu.asynchronous.hub",
    "kombu.transport.redis",
    "kombu.transport.filesystem",
    "celery.backends.redis",
    "celery.backends.filesystem",
)


def _import_all(names: tuple[str, ...]) -> None:
    for name in names:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def preload_web() -> None:
    """Django set up and the web's modules imported, in this process (the project's import
    errors were reported by ``discover`` already; others are the web's to report)."""
    import django

    from runner.supervise.discover import capturing_output

    with capturing_output():  # the project's prints, shown once by the runner
        django.setup()
        _import_all(WEB_MODULES)
        _load_what_the_first_request_would()
    # Logging was configured while output was captured (the migrations', the import's): its
    # console handlers would write there in every program. Configured again, on the real
    # streams, as each program's own django.setup() would have done.
    from django.conf import settings
    from django.utils.log import configure_logging

    configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)
    close_connections()


def _load_what_the_first_request_would() -> None:
    """The project's URLconf (its views and what they import) and template engines: Django
    loads them at the first request, in the web's process, where nothing else shares them.
    Loaded here, they are in the pages every program is forked with. A URLconf that fails
    to import is the web's to report, at its first request, as it would be without this."""
    with contextlib.suppress(Exception):
        from django.template import engines
        from django.urls import get_resolver

        resolver = get_resolver()
        resolver.url_patterns  # noqa: B018 -- the import is the point
        resolver.reverse_dict  # noqa: B018 -- built once, shared (it is per resolver)
        engines.all()


_celery_done = False


def preload_celery() -> None:
    """The worker's and beat's libraries imported, once, just before the first is forked."""
    global _celery_done
    if _celery_done:
        return
    _celery_done = True
    without_amqp_shell()
    _import_all(CELERY_MODULES)
    gc.freeze()  # what these imports made is shared by every program forked after


# How long a program's fork waits for another thread of supervisord's process to end: the
# keep-awake request (runner.supervise.keepawake) is the only one, bounded by its timeout.
THREADS_END_SECONDS = 30.0


def without_threads(timeout: float = THREADS_END_SECONDS) -> bool:
    """Wait up to ``timeout`` for every thread but this one to end; whether none is left."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
    return threading.active_count() == 1


def close_connections() -> None:
    """Close the database connections the runner's own work opened (migrations, checks)."""
    with contextlib.suppress(Exception):
        from django.db import connections

        connections.close_all()


def open_descriptors() -> frozenset[int]:
    """This process's open descriptors: taken before the project is imported, they are what
    the runner was started with (the platform's, a shell's), none of the project's doing."""
    return frozenset(_descriptors())


def _descriptors() -> dict[int, str]:
    """This process's open descriptors and what each is (``socket:[…]``, a path)."""
    found: dict[int, str] = {}
    fd_dir = Path("/proc/self/fd")
    for entry in os.listdir(fd_dir):
        fd = int(entry)
        with contextlib.suppress(OSError):
            found[fd] = os.readlink(fd_dir / entry)
    return found


def _is_shareable(fd: int) -> bool:
    """A regular file, a directory or a device: safe for several processes to hold."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return True  # closed meanwhile (the listing's own descriptor)
    return stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode)


def _peer(fd: int) -> str:
    """`` to 127.0.0.1:6379`` for a connected inet socket, `` listening on …`` for a server's,
    else empty."""
    with contextlib.suppress(Exception):
        import socket

        with socket.socket(fileno=os.dup(fd)) as sock:
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                return ""
            try:
                host, port = sock.getpeername()[:2]
                return f" to {host}:{port}"
            except OSError:
                host, port = sock.getsockname()[:2]
                return f" listening on {host}:{port}"
    return ""


def fork_hazard(before: frozenset[int]) -> str | None:
    """Why programs cannot be forked from this process, in a few words; None when they can.
    ``before``: the descriptors open before the project's import (:func:`open_descriptors`)."""
    threads = [t for t in threading.enumerate() if t is not threading.main_thread()]
    if threads:
        names = ", ".join(sorted({t.name for t in threads}))
        return f"the project's import started {len(threads)} thread(s) ({names})"
    tasks = len(os.listdir("/proc/self/task"))
    if tasks > 1:
        return f"the project's import started {tasks - 1} thread(s) outside Python"
    for fd, target in sorted(_descriptors().items()):
        if fd <= 2 or fd in before or _is_shareable(fd):
            continue
        kind = target.split(":", 1)[0] if ":" in target else "descriptor"
        peer = _peer(fd) if kind == "socket" else ""
        return f"the project's import left a {kind}{peer} open (descriptor {fd})"
    return None


def inherited_files(before: frozenset[int], own: set[int]) -> frozenset[int]:
    """Descriptors every program keeps, as a fork would: the files the project's import
    opened (a log file); not those open ``before`` it, the standard streams, the runner's
    ``own`` (supervisord closes those in its children, as in the exec model)."""
    return frozenset(
        fd
        for fd in _descriptors()
        if fd > 2 and fd not in before and fd not in own and _is_shareable(fd)
    )
