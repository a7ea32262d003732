"""Start real processes for tests, wait on them by polling, and stop their whole tree by PID.

Every process is started in its own session (``start_new_session=True``), so the
session id equals the root's PID. ``ProcessHandle.tree()`` finds descendants both by
parent links and by that session id, which also catches orphans that were reparented
to init and processes that moved to another process group (supervisord does that for
its programs). Output goes to a log file, never a pipe, so a chatty child cannot block.
"""

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import psutil

T = TypeVar("T")

POLL_INTERVAL = 0.05
"""Seconds between two evaluations of a polled condition."""

KILL_TIMEOUT = 15.0
"""Seconds kill_tree() waits for SIGKILLed processes to disappear (generous: 2 noisy cores)."""

OUTPUT_TAIL_LINES = 40
"""Lines of a process's output quoted in failure messages."""

_unfinished: set["ProcessHandle"] = set()
"""Handles whose tree has not been killed yet; see kill_unfinished_processes()."""


class StopWaiting(AssertionError):
    """Raised by a polled predicate when waiting longer cannot help; wait_for() lets it
    through, as it does every AssertionError (a failed check, not a "not yet")."""


class ProcessExitedError(StopWaiting):
    """The process a test was waiting on has exited."""


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = POLL_INTERVAL,
    message: str | Callable[[], str] = "",
) -> T:
    """Poll ``predicate`` until it returns a truthy value and return that value.

    Exceptions raised by the predicate count as "not yet", except AssertionError (a check
    inside the predicate failed, or a nested wait gave up; StopWaiting is one), which
    propagates at once: a failed check is reported as itself, not as a timeout.

    After ``timeout`` seconds (the predicate is always evaluated once more at the deadline)
    raise AssertionError with ``message`` (a string or a callable producing one, evaluated
    only on failure), the last value and the last exception seen.
    """
    deadline = time.monotonic() + timeout
    last_value: object = None
    last_error: Exception | None = None
    while True:
        try:
            last_value = predicate()
        except AssertionError:
            raise
        except Exception as error:  # any failure means "not yet"; the last one is reported
            last_error = error
        else:
            if last_value:
                return last_value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(interval, remaining))
    text = message() if callable(message) else message
    detail = f"last exception: {last_error!r}" if last_error else f"last value: {last_value!r}"
    raise AssertionError(
        f"{text or 'condition not met'} (gave up after {timeout:g}s; {detail})"
    ) from last_error


def tail(text: str, lines: int = OUTPUT_TAIL_LINES) -> str:
    """Return the last ``lines`` lines of ``text``, for failure messages."""
    return "\n".join(text.splitlines()[-lines:])


def describe(process: psutil.Process) -> str:
    """Return ``pid N (command line)`` for a process, tolerating one that has gone."""
    try:
        command = " ".join(process.cmdline()) or process.name()
    except psutil.Error:
        command = "?"
    return f"pid {process.pid} ({command})"


def program_of(process: psutil.Process) -> str | None:
    """Which of the runner's programs ``process`` belongs to: "web" (Gunicorn's master or a
    worker), "worker" (Celery's worker main or a pool child), "beat" (a separate or embedded
    beat), or None. The same answer in both models: an executed program says it in its
    command line; a forked one keeps the runner's command line and says it in its kernel
    name (``runner.supervise.forked``; Celery's hooks name the pool children and beat)."""
    try:
        name, argv = process.name(), process.cmdline()
    except psutil.Error:
        return None
    command = " ".join(argv)
    if name == "gunicorn" or "-m gunicorn" in command:
        return "web"
    if name == "celery-beat" or (
        "runner.worker.entry" in command and "beat" in argv[3:] and "worker" not in argv
    ):
        return "beat"
    if name.startswith("celery") or ("runner.worker.entry" in command and "worker" in argv):
        return "worker"
    return None


def program_processes(root: int | psutil.Process, program: str) -> list[psutil.Process]:
    """Every live process of ``program`` under ``root`` (a runner's PID), parents first."""
    try:
        top = root if isinstance(root, psutil.Process) else psutil.Process(root)
        descendants = top.children(recursive=True)
    except psutil.Error:
        return []
    return [p for p in descendants if program_of(p) == program]


def program_main(root: int | psutil.Process, program: str) -> psutil.Process | None:
    """``program``'s main process (supervisord's child): Gunicorn's master, Celery's worker
    main or the separate beat; None while there is none."""
    for process in program_processes(root, program):
        try:
            if process.ppid() == (root if isinstance(root, int) else root.pid):
                return process
        except psutil.Error:
            continue
    return None


class ProcessHandle:
    """A process started in its own session, with output captured to a log file.

    Use it as a context manager (or call kill_tree() in teardown): on exit every
    process of its tree is SIGKILLed and reaped, whatever happened in the test.
    """

    def __init__(
        self,
        popen: subprocess.Popen,
        argv: Sequence[str],
        log_path: Path,
        log_offset: int,
    ) -> None:
        """Wrap ``popen``, whose output is appended to ``log_path`` from ``log_offset`` on."""
        self._popen = popen
        self.argv = tuple(argv)
        self.log_path = log_path
        self._log_offset = log_offset
        # Taken while the child cannot have been reaped yet, so it identifies this
        # process even after its PID is reused (pid_max can be as low as 32768).
        self._root = psutil.Process(popen.pid)
        self._create_time = self._root.create_time()
        _unfinished.add(self)

    def __repr__(self) -> str:
        """Show the PID and the command."""
        return f"<ProcessHandle pid={self.pid} argv={' '.join(self.argv)!r}>"

    def __enter__(self) -> "ProcessHandle":
        """Return the handle itself."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Kill the whole tree, whether the block succeeded or not."""
        self.kill_tree()

    @property
    def pid(self) -> int:
        """The root process's PID, which is also its session and process-group id."""
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once the root is reaped (negative: killed by that signal), else None."""
        return self._popen.returncode

    def poll(self) -> int | None:
        """Reap the root if it has exited and return its exit status, else None."""
        return self._popen.poll()

    def output(self) -> str:
        """Return all the process (and its descendants) wrote so far, stdout and stderr merged."""
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            return log.read().decode("utf-8", errors="replace")

    def wait_for_output(self, pattern: str | re.Pattern[str], timeout: float) -> re.Match[str]:
        """Poll the output until ``pattern`` appears and return the match.

        A str is searched for literally, a compiled pattern with ``search``. Fails at
        once (with the output's tail) if the root process exits without printing it.
        """
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))

        def found() -> re.Match[str] | None:
            exited = self.poll()
            match = regex.search(self.output())
            if match is None and exited is not None:
                raise ProcessExitedError(
                    f"{self!r} exited with {exited} before printing {regex.pattern!r}; output:\n"
                    f"{tail(self.output())}"
                )
            return match

        return wait_for(
            found,
            timeout,
            message=lambda: (
                f"{self!r} did not print {regex.pattern!r}; output:\n{tail(self.output())}"
            ),
        )

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the root process only (not its group)."""
        self._popen.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait for the root to exit, reap it and return its exit status.

        Raises AssertionError with the output's tail if it is still running after
        ``timeout`` seconds. Descendants are not waited for: see assert_no_survivors().
        """
        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self!r} still running after {timeout:g}s; output:\n{tail(self.output())}"
            ) from None

    def tree(self) -> list[psutil.Process]:
        """Return the root (unless reaped) and all its descendants still there, zombies included.

        Descendants are found through parent links and through the session id, so
        orphans reparented to init and processes in another process group are found
        too. A process that called setsid() itself and lost its parent escapes both.
        """
        found: dict[int, psutil.Process] = {}

        def add_with_descendants(process: psutil.Process) -> None:
            found.setdefault(process.pid, process)
            try:
                for child in process.children(recursive=True):
                    found.setdefault(child.pid, child)
            except psutil.NoSuchProcess:
                pass

        if self._popen.returncode is None and self._root.is_running():
            add_with_descendants(self._root)
        if self._session_is_ours():
            for pid in psutil.pids():
                if pid in found:
                    continue
                try:
                    if os.getsid(pid) == self.pid:
                        add_with_descendants(psutil.Process(pid))
                except (OSError, psutil.NoSuchProcess):
                    continue
        return list(found.values())

    def _session_is_ours(self) -> bool:
        """Tell whether session id ``self.pid`` still belongs to our root.

        Linux keeps a PID allocated while any process uses it as a session id, so the
        id can only have been reused if the session emptied and a new process with
        this PID became a session leader; that process would not be our root.
        """
        try:
            holder = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return True
        try:
            return holder.create_time() == self._create_time
        except psutil.NoSuchProcess:
            return True

    def kill_tree(self, timeout: float = KILL_TIMEOUT) -> None:
        """SIGSTOP then SIGKILL every process of the tree, reap the root, and wait until
        none is alive.

        Repeats until only zombies are left, since a process may fork while being
        killed. Zombies are dead already: orphans among them are init's to reap (which
        may take a while, or forever in a container without an init), and
        assert_no_survivors() reports them. Raises AssertionError naming the processes
        still alive after ``timeout``.
        """

        def all_dead() -> bool:
            # Frozen first, all of them, then killed: as a machine that dies, no process
            # outlives another long enough to see it die (a parent-death signal, a closed
            # pipe) and clean up after it, which a crash test would then not be testing.
            for process in self.tree():
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.send_signal(signal.SIGSTOP)
            if self._popen.returncode is None:
                # While the root is unreaped its PID cannot be reused, so the group is ours.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
            for process in self.tree():
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.send_signal(signal.SIGKILL)
            self._popen.poll()
            return self._popen.returncode is not None and not self._alive()

        wait_for(
            all_dead,
            timeout,
            message=lambda: (
                f"processes of {self!r} survived SIGKILL: "
                + ", ".join(describe(p) for p in self._alive())
            ),
        )
        _unfinished.discard(self)

    def _alive(self) -> list[psutil.Process]:
        """Return the processes of the tree that are alive (not zombies)."""
        return [process for process in self.tree() if _is_alive(process)]


def stop_all(handles: Iterable[ProcessHandle], timeout: float) -> None:
    """SIGTERM to every tree at once, ``timeout`` seconds for a graceful exit, then SIGKILL
    for whatever is left: how benchmarks and fixtures end what they started, whatever state
    it is in (a test that checks the stop itself uses ``runner.stop_and_check``)."""
    handles = list(handles)
    for handle in handles:
        if handle.poll() is None:
            handle.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for handle in handles:
        try:
            handle.wait(max(0.0, deadline - time.monotonic()))
        except AssertionError:
            pass  # still running: kill_tree() below ends it
        finally:
            handle.kill_tree()


def start_process(
    argv: Sequence[str | os.PathLike[str]],
    env: Mapping[str, str] | None,
    cwd: str | os.PathLike[str] | None,
    log_path: Path,
) -> ProcessHandle:
    """Start ``argv`` in a new session; stdin is /dev/null, stdout+stderr go to ``log_path``.

    ``env`` None inherits this process's environment; pass a dict to control it.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    args = [os.fspath(arg) for arg in argv]
    with log_path.open("ab") as log:
        offset = log.tell()
        popen = subprocess.Popen(
            args,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ProcessHandle(popen, args, log_path, offset)


def assert_no_survivors(processes: Iterable[int | psutil.Process], timeout: float) -> None:
    """Poll until none of ``processes`` exists any more, else raise AssertionError.

    Pass the psutil.Process objects from ProcessHandle.tree() where possible: they
    are immune to PID reuse, whereas a bare PID is looked up when this is called.
    Zombies (exited but not reaped by their parent) are leftovers too, reported
    apart from processes still running.
    """
    watched: list[psutil.Process] = []
    for item in processes:
        if isinstance(item, psutil.Process):
            watched.append(item)
        else:
            try:
                watched.append(psutil.Process(item))
            except psutil.NoSuchProcess:
                continue

    def leftovers() -> tuple[list[psutil.Process], list[psutil.Process]]:
        running, zombies = [], []
        for process in watched:
            try:
                if not process.is_running():
                    continue
                if (
                    _subreaper
                    and process.status() == psutil.STATUS_ZOMBIE
                    and process.ppid() == os.getpid()
                ):
                    # An orphan handed to us (become_subreaper()): it has exited; reap it.
                    os.waitpid(process.pid, os.WNOHANG)
                    continue
                (zombies if process.status() == psutil.STATUS_ZOMBIE else running).append(process)
            except (psutil.NoSuchProcess, ChildProcessError):
                continue
        return running, zombies

    def explain() -> str:
        running, zombies = leftovers()
        parts = []
        if running:
            parts.append("still running: " + ", ".join(describe(p) for p in running))
        if zombies:
            parts.append(
                "zombies (exited, not reaped): " + ", ".join(_describe_zombie(p) for p in zombies)
            )
        return "; ".join(parts) or "leftover processes (gone by the time of this report)"

    wait_for(lambda: not any(leftovers()), timeout, message=explain)


def _describe_zombie(process: psutil.Process) -> str:
    """Name a zombie and the parent that should reap it."""
    try:
        parent = process.ppid()
    except psutil.NoSuchProcess:
        return f"pid {process.pid}"
    if parent == os.getpid():
        return f"pid {process.pid} (child of this test process: call ProcessHandle.wait() first)"
    return f"pid {process.pid} (parent pid {parent} has not reaped it yet)"


def kill_unfinished_processes() -> list[str]:
    """Kill the trees of handles nobody killed; describe those that still had live processes.

    A safety net for the end of the test session: it stops leaks, and the caller
    reports them so the test that forgot its teardown gets fixed.
    """
    leaked = []
    for handle in list(_unfinished):
        alive = handle._alive()
        if alive:
            leaked.append(f"{handle!r}: " + ", ".join(describe(p) for p in alive))
        handle.kill_tree()
    return leaked


def _is_alive(process: psutil.Process) -> bool:
    """Tell whether ``process`` exists and is not a zombie."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


PR_SET_CHILD_SUBREAPER = 36  # prctl(2)
_subreaper = False  # become_subreaper() was called: zombies handed to us are reaped


def become_subreaper() -> None:
    """Make this process the one orphaned descendants are reparented to (as a container's
    init is), so that their exit can be observed and reaped here instead of by a PID 1 that
    may never reap them."""
    import ctypes

    global _subreaper
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
    _subreaper = True


def stop_being_subreaper() -> None:
    """Undo become_subreaper(): orphans go to init again, and zombies are reported, not reaped."""
    import ctypes

    global _subreaper
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
    _subreaper = False
