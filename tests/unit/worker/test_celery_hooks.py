"""The parts of runner.worker.hooks that need no worker: when retiring cannot be offered,
how the hook finds where a signal landed, and the pool-restart switch."""

from __future__ import annotations

import signal
import sys
from types import SimpleNamespace

import pytest

from runner.worker.hooks import RETIRE_SIGNAL, _enable_pool_restarts, _inside, retire_on_signal


def receive():
    """Stands in for billiard's receive: returns the frame it runs in."""
    return sys._getframe()


def test_retire_signal_is_ignored_by_default():
    """A process without the hook (beat, the main process) ignores the retire signal."""
    assert signal.getsignal(RETIRE_SIGNAL) == signal.SIG_DFL
    assert RETIRE_SIGNAL == signal.SIGURG  # default action: ignore (signal(7))


@pytest.mark.parametrize(
    "worker",
    [
        SimpleNamespace(_shutdown=None, wait_for_job=receive, synq=None),  # restarts off
        SimpleNamespace(_shutdown=object(), synq=None),  # not a billiard worker
        SimpleNamespace(_shutdown=object(), wait_for_job=receive, synq=object()),  # synack
    ],
)
def test_retiring_is_not_offered_without_a_safe_exit(worker):
    """Without a sentinel, a receive loop, or with synack, no handler is installed."""
    assert retire_on_signal(worker) is False
    assert signal.getsignal(RETIRE_SIGNAL) == signal.SIG_DFL


def test_inside_finds_a_frame_anywhere_up_the_stack():
    """A signal landing in code called from receive counts as inside receive."""

    def deeper():
        return sys._getframe()

    frame = receive()
    assert _inside(frame, receive.__code__)
    assert not _inside(deeper(), receive.__code__)
    assert not _inside(None, receive.__code__)


def test_celeryd_init_turns_pool_restarts_on():
    """The hook on celeryd_init sets worker_pool_restarts, which gives children a sentinel."""
    conf = SimpleNamespace(worker_pool_restarts=False)
    _enable_pool_restarts(sender="celery@host", conf=conf)
    assert conf.worker_pool_restarts is True
