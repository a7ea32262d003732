"""supervisord's loop as the runner runs it: the programs are spawned before the loop's
first poll, not a second after it (supervisor's own order: poll, then transition)."""

from __future__ import annotations

import pytest
from supervisor.states import SupervisorStates

from runner.supervise.supervisord import RunnerSupervisor


class FirstPoll(Exception):
    """Raised by the stub poller: the loop reached its first wait."""


class Poller:
    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    def register_readable(self, fd: int) -> None: ...

    def register_writable(self, fd: int) -> None: ...

    def poll(self, timeout: float) -> tuple[list[int], list[int]]:
        self.seen.append(f"poll {timeout}")
        raise FirstPoll


class Options:
    mood = SupervisorStates.RUNNING

    def __init__(self, seen: list[str]) -> None:
        self.poller = Poller(seen)

    def get_socket_map(self) -> dict:
        return {}


class Group:
    def __init__(self, name: str, priority: int, seen: list[str]) -> None:
        self.name, self.priority, self.seen = name, priority, seen

    def __lt__(self, other: Group) -> bool:  # supervisor sorts groups by priority
        return self.priority < other.priority

    def get_dispatchers(self) -> dict:
        return {}

    def transition(self) -> None:
        self.seen.append(f"transition {self.name}")


def test_programs_are_spawned_before_the_first_poll():
    """Without start_programs the first thing the loop does is wait a second in poll()."""
    seen: list[str] = []
    supervisor = RunnerSupervisor(Options(seen))
    supervisor.process_groups = {
        "late": Group("late", 999, seen),
        "runner": Group("runner", 1, seen),
    }
    with pytest.raises(FirstPoll):
        supervisor.runforever()
    assert seen[:3] == ["transition runner", "transition late", "poll 1"]
