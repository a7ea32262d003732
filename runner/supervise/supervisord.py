"""``python -m runner.supervise.supervisord CONF``: supervisord, with the runner's voice and
judgement.

The runner ``exec``s this module, so supervisord runs with the runner's PID and receives the
platform's signals directly. It is supervisord's own ``main`` loop, plus three things that
live inside the same process (no extra Python process, and no event buffer to overflow):
- every output chunk of every program is relayed to stdout as whole lines prefixed with
  the component's name (``runner.supervise.logrelay``);
- supervisord's messages are rewritten in the runner's words (``runner.supervise.words``);
- a component that cannot start at all stops the service with a failure status, instead
  of a crash loop (supervisord itself would keep the others running and exit 0);
- an exit a program makes on purpose (``runner.supervise.exits``: a planned restart, memory
  given back, Redis unavailable) is never counted as a failed start, and waits the pause
  that judgement gives;
- the memory budget is enforced every 5 s (``runner.supervise.memory_guard``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import TextIO

from supervisor import events, loggers
from supervisor.medusa import asyncore_25 as asyncore
from supervisor.options import ServerOptions
from supervisor.states import ProcessStates, SupervisorStates
from supervisor.supervisord import Supervisor

from runner.config.plan import PARENT_DEATH_SIGNAL_VARIABLE
from runner.config.settings import load_settings
from runner.config.supervisord_conf import GROUP, LIMITS_NAME
from runner.errors import EXIT_COMPONENT_FAILED, EXIT_OK
from runner.prctl import die_with_parent
from runner.supervise import exits, preload
from runner.supervise.forked import become, entry_for
from runner.supervise.keepawake import KeepAwake
from runner.supervise.logrelay import LineRelay, prefix
from runner.supervise.memory_guard import MemoryGuard
from runner.supervise.runstate import write_starts
from runner.supervise.watchdog import Limits
from runner.supervise.words import explain


def _write(out: TextIO, text: str) -> None:
    try:
        out.write(text)
        out.flush()
    except (OSError, ValueError):
        pass  # stdout is gone (the platform closed it): nothing useful left to do


class ExplainingHandler(loggers.StreamHandler):
    """Writes supervisord's messages as the runner's sentences, dropping routine ones."""

    def emit(self, record: loggers.LogRecord) -> None:
        text = explain(record.asdict()["message"])
        if text is not None:
            _write(self.stream, prefix("runner") + text + "\n")


class RunnerServerOptions(ServerOptions):
    """supervisord's options with our log handler instead of its stdout format, children
    that die with supervisord and, in the fork model, programs run in the forked child."""

    def __init__(
        self,
        *args,
        inherited: frozenset[int] | None = None,
        spared: frozenset[int] = frozenset(),
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.supervisord_pid = os.getpid()
        # The fork model: the project's files every program keeps (None: the exec model).
        self.inherited = inherited
        # Open before supervisord's loop first ran: not the leftovers a reload closes.
        self.spared = spared
        # Whether the program being spawned now is forked (no other thread at its fork).
        self.fork_this = True
        # The last child reaped, (pid, wait status): supervisord keeps no exit status of a
        # program that exited too soon after its start, which is what the judgement needs.
        self.last_reaped: tuple[int, int] = (0, 0)

    def waitpid(self):
        pid, sts = super().waitpid()
        if pid:
            self.last_reaped = (pid, sts)
        return pid, sts

    @property
    def fork_model(self) -> bool:
        return self.inherited is not None

    def close_fd(self, fd: int) -> None:
        """In the forked child, before the program runs: supervisord closes every descriptor
        but 0-2; the project's own files stay, as a fork would keep them."""
        if self.inherited and fd in self.inherited:
            return
        super().close_fd(fd)

    def cleanup_fds(self) -> None:
        """At a reload (SIGHUP) supervisord closes descriptors it may have leaked; not those
        it was started with (the data directory's lock, the project's files)."""
        for fd in range(5, self.minfds):
            if fd not in self.spared:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def execve(self, filename, argv, env):
        """In the forked child, just before the program replaces it: the kernel is to send
        the program's RUNNER_PARENT_DEATH_SIGNAL when supervisord dies, so that a SIGKILLed
        supervisord leaves no component running (a web still answering, a beat still holding
        the leader lock, a PORT taken for the next runner)."""
        name = env.get(PARENT_DEATH_SIGNAL_VARIABLE)
        if name:
            die_with_parent(signal.Signals[f"SIG{name}"], self.supervisord_pid)
        entry = entry_for(argv) if self.fork_model and self.fork_this else None
        if entry is not None:
            become(argv, env, entry)  # the program, with what this process preloaded
        return super().execve(filename, argv, env)

    def make_logger(self) -> None:
        self.logger = loggers.getLogger(self.loglevel)
        handler = ExplainingHandler(sys.stdout)
        handler.setLevel(self.logger.level)
        self.logger.addHandler(handler)
        for msg in self.parse_criticals:
            self.logger.critical(msg)
        for msg in self.parse_warnings:
            self.logger.warn(msg)


class RunnerSupervisor(Supervisor):
    """supervisord that relays output and stops the service when a component is FATAL."""

    exit_status = EXIT_OK

    def __init__(
        self,
        options: ServerOptions,
        out: TextIO = sys.stdout,
        keep_awake_url: str | None = None,
        limits: Limits | None = None,
    ) -> None:
        super().__init__(options)
        self.out = out
        self.relay = LineRelay()
        self.memory_guard = MemoryGuard(self, GROUP, limits, self.say) if limits else None
        self.keep_awake = KeepAwake(keep_awake_url, self.say) if keep_awake_url else None
        self.starts: dict[str, int] = {}  # spawns per program, for the status page
        self.exits: tuple[exits.PastExit, ...] = ()  # intended exits, for their pauses
        self.paused: dict[str, tuple[object, float]] = {}  # program -> (process, until)
        # (process, exit status, whether supervisord counted it a failed start), to judge.
        self.exits_to_judge: list[tuple[object, int | None, bool]] = []

    def say(self, text: str) -> None:
        """One line of the runner's own, on stdout."""
        _write(self.out, prefix("runner") + text + "\n")

    def runforever(self) -> None:
        # supervisord clears all subscriptions when it (re)starts, just before this loop.
        events.subscribe(events.ProcessLogEvent, self.on_output)
        events.subscribe(events.ProcessStateEvent, self.on_state)
        if self.keep_awake is not None:
            events.subscribe(events.Tick60Event, self.keep_awake.on_tick)
        if self.memory_guard is not None:
            events.subscribe(events.Tick5Event, self.memory_guard.on_tick)
        # supervisord starts the programs in its loop's first transition, which comes after
        # a first poll that waits its whole second: nothing is running yet to wake it. So
        # every start (a wake) lost a second before the web was even forked.
        self.start_programs()
        super().runforever()

    def start_programs(self) -> None:
        """Spawn what is due now (the autostart programs, in priority order), as the loop's
        transition step would, instead of after the loop's first one-second poll."""
        for group in sorted(self.process_groups.values()):
            group.transition()

    def on_output(self, event: events.ProcessLogEvent) -> None:
        data = (
            event.data.decode("utf-8", "replace") if isinstance(event.data, bytes) else event.data
        )
        lines = self.relay.feed(event.process.config.name, event.channel, data)
        if lines:
            _write(self.out, "".join(lines))

    def record_start(self, name: str) -> None:
        # supervisord keeps no count of spawns; `runner status` shows restarts from this.
        self.starts[name] = self.starts.get(name, 0) + 1
        with contextlib.suppress(OSError):
            write_starts(Path(self.options.configfile).parent, self.starts)

    def before_fork(self, name: str) -> None:
        """In the fork model, just before ``name`` is forked: its modules imported, and no
        other thread alive (the keep-awake request's, if one is in flight, is waited for)."""
        if name != "web":
            # After the web's fork: the web does not wait for these imports.
            preload.preload_celery()
        self.options.fork_this = preload.without_threads()
        if not self.options.fork_this:
            self.say(f"{name} starts its own interpreter: a thread of this process is busy")

    def on_state(self, event: events.ProcessStateEvent) -> None:
        group = event.process.group
        if group is None or group.config.name != GROUP:
            return
        name = event.process.config.name
        if isinstance(event, events.ProcessStateStartingEvent):
            self.record_start(name)
            if self.options.fork_model:
                self.before_fork(name)
        if not isinstance(
            event, (events.ProcessStateStartingEvent, events.ProcessStateRunningEvent)
        ):
            leftover = self.relay.flush(name)
            if leftover:
                _write(self.out, "".join(leftover))
        if isinstance(event, (events.ProcessStateBackoffEvent, events.ProcessStateExitedEvent)):
            # Judged once supervisord's finish() is over (tick, right after the reap):
            # supervisor 4.2 sets the new state after the event, 4.3 before it.
            backoff = isinstance(event, events.ProcessStateBackoffEvent)
            status = self.last_exit_status(event.process)
            self.exits_to_judge.append((event.process, status, backoff))
        if isinstance(event, events.ProcessStateFatalEvent):
            # The same as SIGTERM or `supervisorctl shutdown`: stop everything, in order.
            self.exit_status = EXIT_COMPONENT_FAILED
            self.options.mood = SupervisorStates.SHUTDOWN

    def last_exit_status(self, process) -> int | None:
        """The exit status of ``process``'s last run (None: a signal ended it, or unknown)."""
        pid, sts = self.options.last_reaped
        if not pid or pid != process.pid or not os.WIFEXITED(sts):
            return None
        return os.WEXITSTATUS(sts)

    def judge_exits(self) -> None:
        """The exits supervisord recorded since the last loop iteration, judged."""
        while self.exits_to_judge:
            self.judge_exit(*self.exits_to_judge.pop(0))

    def judge_exit(self, process, status: int | None, backoff: bool) -> None:
        """After supervisord recorded an exit (``finish``): an intended exit is taken out of
        supervisord's count of failed starts, and waits its pause."""
        verdict = exits.judge(process.config.name, status, self.exits, time.monotonic())
        self.exits = verdict.history
        if not verdict.intended:
            return
        if backoff:
            process.backoff -= 1  # supervisord counted it as a failed start: it was not one
        if verdict.pause_seconds > 0:
            # Held STOPPED, which supervisord never starts by itself once a program has run
            # (BACKOFF's delay would be taken for a clock gone back and cut to its count of
            # failed starts); resume_paused() starts it when the pause is over.
            process.state = ProcessStates.STOPPED
            process.spawnerr = f"{exits.PAUSED}: starting again in {verdict.pause_seconds:.0f} s"
            self.paused[process.config.name] = (process, time.monotonic() + verdict.pause_seconds)
        elif backoff:
            process.delay = time.time()  # BACKOFF starts it at the next transition
        if verdict.line:
            self.say(verdict.line)

    def resume_paused(self) -> None:
        """Start the programs whose pause is over (unless the service is stopping)."""
        now = time.monotonic()
        for name, (process, until) in list(self.paused.items()):
            if self.options.mood < SupervisorStates.RUNNING:
                self.paused.clear()
                return
            if now < until:
                continue
            del self.paused[name]
            if process.state == ProcessStates.STOPPED:  # nobody stopped or started it meanwhile
                process.spawn()

    def tick(self, now=None) -> None:
        """supervisord's tick, once per loop iteration (right after the reap): the exits
        just recorded are judged, and the programs whose pause is over start."""
        super().tick(now)
        self.judge_exits()
        if self.paused:
            self.resume_paused()


def read_limits(run_dir: Path) -> Limits | None:
    """The memory limits runner.supervise.launch wrote beside the config (None: not enforced)."""
    try:
        return Limits.from_dict(json.loads((run_dir / LIMITS_NAME).read_text()))
    except FileNotFoundError:
        return None


def main(argv: list[str], inherited: frozenset[int] | None = None) -> int:
    """supervisord on the config ``argv[0]``, until it stops; its exit status. ``inherited``:
    the fork model (``runner.supervise.preload``), with the files every program keeps."""
    conf = Path(argv[0])
    # Validated by runner.supervise.launch before the exec; read again from the same environment.
    keep_awake_url = load_settings(os.environ, Path.cwd()).keep_awake_url
    limits = read_limits(conf.parent)
    spared = frozenset(int(fd) for fd in os.listdir("/proc/self/fd"))
    first = True
    status = EXIT_OK
    while True:  # supervisord's own loop: SIGHUP reloads the configuration
        options = RunnerServerOptions(inherited=inherited, spared=spared)
        options.realize(["-c", str(conf)])
        options.first = first
        options.test = False
        supervisor = RunnerSupervisor(options, keep_awake_url=keep_awake_url, limits=limits)
        try:
            supervisor.main()
        except asyncore.ExitNow:
            pass
        options.close_httpservers()
        options.close_logger()
        status = supervisor.exit_status
        first = False
        if options.mood < SupervisorStates.RESTARTING:
            break
    # The private directory holds only this run's config and socket.
    shutil.rmtree(conf.parent, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
