"""The memory budget enforced inside supervisord: sample, decide, act, say so.

Every ``Tick5Event`` the guard samples the PSS of each supervised program's process tree
(``runner.supervise.memory``), asks ``runner.supervise.watchdog.decide`` what to do, and does it: a
signal that
retires one process after its request or task (its parent replaces it), or a restart of a
whole program through supervisord (its configured stop signal and grace, then a new start).
Each action is one ``runner |`` line; the decision logic, cool-downs and back-off live in
``runner.supervise.watchdog``, which is pure and tested on its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable

from supervisor.states import ProcessStates, SupervisorStates

from runner.supervise.memory import sample_process, sample_tree
from runner.supervise.watchdog import (
    RESTART,
    Limits,
    component_sample,
    decide,
    report_due,
    report_line,
)


class MemoryGuard:
    """Keeps the tree under ``limits`` for one RunnerSupervisor."""

    def __init__(self, supervisor, group: str, limits: Limits, say: Callable[[str], None]):
        self.supervisor = supervisor
        self.group = group
        self.limits = limits
        self.say = say
        self.history: tuple = ()
        self.last_report: float | None = None
        self.restarting: set[str] = set()  # programs stopped by us, to start again

    def _processes(self) -> dict:
        group = self.supervisor.process_groups.get(self.group)
        return dict(group.processes) if group else {}

    def samples(self) -> list:
        own = sample_process(os.getpid())
        found = [component_sample("supervisord", os.getpid(), [own] if own else [])]
        for name, process in self._processes().items():
            if process.pid and process.get_state() == ProcessStates.RUNNING:
                found.append(
                    component_sample(name, process.pid, sample_tree(process.pid).processes)
                )
        return found

    def on_tick(self, _event=None) -> None:
        if self.supervisor.options.mood != SupervisorStates.RUNNING:
            return  # shutting down: supervisord is already stopping everything
        self._finish_restarts()
        now = time.monotonic()
        samples = self.samples()
        decision = decide(self.limits, samples, self.history, now)
        self.history = decision.history
        if decision.line:
            self.say(decision.line)
        if decision.action is not None:
            self._act(decision.action)
        # The first report waits for the programs: supervisord alone says nothing useful.
        if len(samples) > 1 and report_due(self.last_report, now):
            self.last_report = now
            self.say(report_line(self.limits, samples))

    def _act(self, action) -> None:
        if action.kind == RESTART and action.signal is None:
            process = self._processes().get(action.component)
            if process is not None and process.get_state() == ProcessStates.RUNNING:
                self.restarting.add(action.component)
                process.stop()  # its stop signal and grace, as on shutdown
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(action.pid, getattr(signal, action.signal))

    def _finish_restarts(self) -> None:
        for name in list(self.restarting):
            process = self._processes().get(name)
            if process is None:
                self.restarting.discard(name)
            elif process.get_state() in (ProcessStates.STOPPED, ProcessStates.EXITED):
                self.restarting.discard(name)
                process.spawn()
