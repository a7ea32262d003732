"""supervisord's process states as the runner's judgement of exits leaves them: an intended
exit is never a failed start, and waits its pause; a crash is supervisord's to count.

Real ``supervisor.process.Subprocess`` objects, with supervisor's own test doubles for the
options and the program's config (``supervisor.tests.base``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from supervisor import events
from supervisor.process import Subprocess
from supervisor.states import ProcessStates, SupervisorStates
from supervisor.tests.base import DummyOptions, DummyPConfig, DummyPGroupConfig

from runner.config.supervisord_conf import GROUP
from runner.errors import EXIT_BROKER_UNAVAILABLE, EXIT_MEMORY_RESTART, EXIT_PLANNED_RESTART
from runner.supervise.exits import PAUSED
from runner.supervise.supervisord import RunnerSupervisor

PID = 4242


class Options(DummyOptions):
    """supervisor's options double, with the last child reaped as the runner's has it."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.last_reaped = (0, 0)
        self.fork_model = False  # the exec model: spawn() runs supervisor's own code
        self.configfile = str(run_dir / "supervisord.conf")


class Group:
    def __init__(self) -> None:
        self.config = DummyPGroupConfig(None, name=GROUP)


@pytest.fixture
def supervised(tmp_path: Path):
    """A RunnerSupervisor listening to state events, and its worker, running (pid PID)."""
    options = Options(tmp_path)
    supervisor = RunnerSupervisor(options, out=open("/dev/null", "w"))
    events.subscribe(events.ProcessStateEvent, supervisor.on_state)
    config = DummyPConfig(options, "worker", "/bin/true", startsecs=10, startretries=2)
    process = Subprocess(config)
    process.group = Group()
    process.state = ProcessStates.RUNNING
    yield supervisor, options, process
    events.clear()
    supervisor.out.close()


def exit_with(supervisor, options, process, status: int, ran_seconds: float) -> None:
    """The worker exits with ``status`` after ``ran_seconds``; supervisord reaps it, and its
    loop goes on to the tick, where the runner judges the exit."""
    process.pid = PID
    process.laststart = time.time() - ran_seconds
    if ran_seconds < process.config.startsecs:
        process.state = ProcessStates.STARTING
    options.last_reaped = (PID, status << 8)
    process.finish(PID, status << 8)
    supervisor.judge_exits()


@pytest.mark.parametrize("ran_seconds", [1, 60])
def test_a_planned_restart_starts_again_at_once_and_is_never_counted(supervised, ran_seconds):
    """Exit 90, soon after the start or long after, again and again: never FATAL."""
    supervisor, options, process = supervised
    for _ in range(10):
        exit_with(supervisor, options, process, EXIT_PLANNED_RESTART, ran_seconds)
        assert process.state in (ProcessStates.BACKOFF, ProcessStates.EXITED)
        assert process.backoff == 0
        process.transition()
        assert process.state != ProcessStates.FATAL
        process.state = ProcessStates.RUNNING  # spawn() failed on the dummy: as if it ran


@pytest.mark.parametrize("ran_seconds", [1, 60])
def test_redis_unavailable_waits_its_pause(supervised, ran_seconds):
    """Exit 75: held 2 s whatever supervisord's transitions do, never counted, then started."""
    supervisor, options, process = supervised
    exit_with(supervisor, options, process, EXIT_BROKER_UNAVAILABLE, ran_seconds)
    assert process.state == ProcessStates.STOPPED
    assert process.backoff == 0
    assert process.spawnerr.startswith(PAUSED)
    for _ in range(3):
        process.transition()
        supervisor.resume_paused()
    assert process.state == ProcessStates.STOPPED  # still pausing
    _process, until = supervisor.paused["worker"]
    assert 1.5 < until - time.monotonic() <= 2.0
    supervisor.paused["worker"] = (process, time.monotonic())  # the pause is over
    supervisor.resume_paused()
    assert process.state != ProcessStates.STOPPED  # spawned (the dummy's spawn then fails)
    assert supervisor.paused == {}


def test_memory_restarts_pause_from_the_third(supervised):
    """Exit 91: the first two start at once, the third waits 5 s."""
    supervisor, options, process = supervised
    for expected in (None, None, 5.0):
        exit_with(supervisor, options, process, EXIT_MEMORY_RESTART, 3)
        if expected is None:
            assert process.state == ProcessStates.BACKOFF and "worker" not in supervisor.paused
        else:
            assert process.state == ProcessStates.STOPPED
            _process, until = supervisor.paused["worker"]
            assert until - time.monotonic() == pytest.approx(expected, abs=0.5)
        process.state = ProcessStates.RUNNING


def test_no_paused_program_is_started_while_the_service_stops(supervised):
    """SIGTERM during a pause: the program stays stopped."""
    supervisor, options, process = supervised
    exit_with(supervisor, options, process, EXIT_BROKER_UNAVAILABLE, 60)
    supervisor.paused["worker"] = (process, time.monotonic())
    options.mood = SupervisorStates.SHUTDOWN
    supervisor.resume_paused()
    assert process.state == ProcessStates.STOPPED


def test_a_crash_soon_after_the_start_is_counted_until_fatal(supervised):
    """Exit 1 within startsecs: supervisord's own count, FATAL after startretries."""
    supervisor, options, process = supervised
    for attempt in range(1, 4):
        exit_with(supervisor, options, process, 1, 1)
        assert process.backoff == attempt
    process.transition()
    assert process.state == ProcessStates.FATAL
    assert supervisor.exit_status != 0
