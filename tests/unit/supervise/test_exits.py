"""The judgement of a program's exit: what is intended never counts as a failed start."""

from __future__ import annotations

import pytest

from runner.errors import EXIT_BROKER_UNAVAILABLE, EXIT_MEMORY_RESTART, EXIT_PLANNED_RESTART
from runner.supervise.exits import (
    BROKER,
    MAX_PAUSE_SECONDS,
    MEMORY,
    WINDOW_SECONDS,
    PastExit,
    Verdict,
    judge,
    pause_for,
)
from runner.supervise.words import explain


@pytest.mark.parametrize("status", [None, 0, 1, 3, 70, 137])
def test_other_exits_are_left_to_supervisord(status):
    """A crash, a signal, or a plain exit is supervisord's to judge: nothing changes."""
    assert judge("worker", status, (), 100.0) == Verdict(False, 0.0, None, ())


def test_a_planned_restart_starts_again_at_once_however_often():
    """CELERY_MAX_TASKS_PER_CHILD in a burst: every restart at once, none counted."""
    history: tuple[PastExit, ...] = ()
    for second in range(20):
        verdict = judge("worker", EXIT_PLANNED_RESTART, history, float(second))
        assert verdict.intended and verdict.pause_seconds == 0
        history = verdict.history
    assert "restarted itself as planned" in verdict.line


@pytest.mark.parametrize(
    ("kind", "pauses"),
    [
        (MEMORY, [0, 0, 5, 10, 20, 40, 60, 60]),
        (BROKER, [2, 4, 8, 16, 32, 60, 60, 60]),
    ],
)
def test_pauses_double_up_to_a_minute(kind, pauses):
    """Memory restarts: twice free, then 5 s doubling; Redis faults: 2 s doubling; 60 s at most."""
    assert [pause_for(kind, earlier) for earlier in range(len(pauses))] == pauses
    assert max(pauses) == MAX_PAUSE_SECONDS


def test_the_pause_counts_exits_of_the_same_program_and_kind_in_the_window():
    """Old exits, other programs' and other kinds' do not lengthen the pause."""
    history = (
        PastExit("worker", BROKER, 0.0),  # outside the window by then
        PastExit("beat", BROKER, 500.0),
        PastExit("worker", MEMORY, 500.0),
        PastExit("worker", BROKER, 600.0),
    )
    verdict = judge("worker", EXIT_BROKER_UNAVAILABLE, history, WINDOW_SECONDS + 1)
    assert verdict.pause_seconds == 4.0
    assert verdict.history[:3] == history[1:]
    assert "Redis cannot be used" in verdict.line and "in 4 s" in verdict.line


def test_a_memory_restart_line_says_how_many_and_the_pause():
    """The runner's line names the kind, the count in the window and the pause."""
    history = tuple(PastExit("worker", MEMORY, float(t)) for t in range(3))
    verdict = judge("worker", EXIT_MEMORY_RESTART, history, 10.0)
    assert verdict.pause_seconds == 10.0
    assert "4 in 10 min" in verdict.line and "in 10 s" in verdict.line


@pytest.mark.parametrize(
    "status", [EXIT_PLANNED_RESTART, EXIT_MEMORY_RESTART, EXIT_BROKER_UNAVAILABLE]
)
@pytest.mark.parametrize("expected", ["expected", "not expected"])
def test_supervisords_line_for_an_intended_exit_is_left_out(status, expected):
    """The runner says its own line (why, the pause) instead of "exited with status 90"."""
    assert explain(f"exited: worker (exit status {status}; {expected})") is None
    assert explain(f"exited: worker (exit status 1; {expected})") is not None
