"""Tests of what people read: supervisord's messages in our words, and prefixed log lines."""

from __future__ import annotations

import pytest

from runner.supervise.logrelay import LineRelay, prefix
from runner.supervise.words import explain


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("spawned: 'web' with pid 42", "web starting (pid 42)"),
        (
            "success: worker entered RUNNING state, process has stayed up for > than 10 seconds "
            "(startsecs)",
            None,
        ),
        (
            "exited: worker (terminated by SIGKILL; not expected)",
            "worker was killed (SIGKILL) — if nobody killed it on purpose, it probably ran out "
            "of memory: see MEMORY_BUDGET_MB and the memory plan (python -m runner plan); "
            "restarting it",
        ),
        (
            "exited: web (exit status 3; not expected)",
            "web exited with status 3 (its last lines are above); restarting it",
        ),
        (
            "exited: beat (terminated by SIGSEGV; not expected)",
            "beat was stopped by SIGSEGV; restarting it",
        ),
        (
            "gave up: worker entered FATAL state, too many start retries too quickly",
            "worker could not start: it exited again and again right after starting (its lines "
            "above say why); stopping the service",
        ),
        ("received SIGTERM indicating exit request", "received SIGTERM: stopping everything"),
        (
            "killing 'worker' (123) with SIGKILL",
            "worker did not stop within SHUTDOWN_GRACE_SECONDS; killing it",
        ),
        ("stopped: web (exit status 0)", "web stopped (exit status 0)"),
        ("Supervisor is running as root.  Privileges were not dropped", None),
        ("something new from supervisord", "something new from supervisord"),
    ],
)
def test_supervisord_messages_in_our_words(message, expected):
    """Each known supervisord message becomes the runner's sentence, or is left out."""
    assert explain(message) == expected


def test_lines_are_reassembled_across_chunks():
    """A line split over two chunks comes out once, whole, with its component's prefix."""
    relay = LineRelay()
    assert relay.feed("web", "stdout", "GET / 200\nGET /sta") == [prefix("web") + "GET / 200\n"]
    assert relay.feed("worker", "stdout", "ready.\n") == [prefix("worker") + "ready.\n"]
    assert relay.feed("web", "stdout", "tic 200\n") == [prefix("web") + "GET /static 200\n"]


def test_streams_do_not_mix():
    """stdout and stderr of one program keep separate unfinished lines."""
    relay = LineRelay()
    assert relay.feed("web", "stdout", "out-") == []
    assert relay.feed("web", "stderr", "err\n") == [prefix("web") + "err\n"]
    assert relay.flush("web") == [prefix("web") + "out-\n"]
    assert relay.flush("web") == []


def test_embedded_beat_speaks_as_beat():
    """Lines of the beat embedded in the worker are prefixed beat, not worker."""
    relay = LineRelay()
    line = "[2026-01-01 00:00:00,000: INFO/Beat] Scheduler: Sending due task heartbeat\n"
    assert relay.feed("worker", "stderr", line) == [prefix("beat") + line]


def test_prefixes_line_up():
    """Component prefixes have one width so the columns of the log line up."""
    assert len({len(prefix(name)) for name in ("web", "worker", "beat", "runner")}) == 1
