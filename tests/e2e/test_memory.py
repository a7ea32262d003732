"""runner.supervise.memory on real process trees: complete, fast, and unbothered by processes
exiting."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import pytest

from runner.supervise.memory import MB, ProcessTreeMemory, sample_process, sample_tree
from tests.support.processes import start_process, wait_for
from tests.support.timeouts import START_TIMEOUT

pytestmark = pytest.mark.e2e

TREE_SIZE = 10  # the root and 9 children: about the runner's default tree
SAMPLE_BUDGET_SECONDS = 0.030  # the watchdog samples every few seconds inside supervisord
SAMPLES = 20

# A root that forks 9 children touching 8 MB each, then everybody sleeps.
TREE = f"""
import os, signal, sys
held = b"x" * (8 * 1024 * 1024)
for _ in range({TREE_SIZE - 1}):
    if os.fork() == 0:
        held = b"y" * (8 * 1024 * 1024)  # private to the child
        signal.pause()
print("ready", flush=True)
signal.pause()
"""

# A root whose children come and go as fast as it can fork them.
CHURN = """
import os
print("ready", flush=True)
while True:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
"""


def test_a_tree_is_sampled_whole_and_fast(tmp_path):
    """All 10 processes are read, root first, in well under 30 ms per sample."""
    with start_process([sys.executable, "-c", TREE], None, tmp_path, tmp_path / "t.log") as root:
        root.wait_for_output("ready", START_TIMEOUT)
        wait_for(lambda: len(sample_tree(root.pid).processes) == TREE_SIZE, START_TIMEOUT)
        timings, tree = [], None
        for _ in range(SAMPLES):
            started = time.perf_counter()
            tree = sample_tree(root.pid)
            timings.append(time.perf_counter() - started)
        assert tree is not None and tree.processes[0].pid == root.pid
        assert {p.ppid for p in tree.processes[1:]} == {root.pid}
        # Each child's 8 MB are its own; the root's 8 MB are shared with nobody after the
        # children replaced theirs, so the tree holds at least 10 x 8 MB.
        assert tree.pss >= TREE_SIZE * 8 * MB
        assert all(p.uss >= 8 * MB for p in tree.processes[1:])
        assert statistics.median(timings) < SAMPLE_BUDGET_SECONDS, timings


def test_processes_exiting_during_a_sample_are_skipped(tmp_path):
    """Children forking and exiting all the time never make a sample fail."""
    with start_process([sys.executable, "-c", CHURN], None, tmp_path, tmp_path / "c.log") as root:
        root.wait_for_output("ready", START_TIMEOUT)
        for _ in range(200):
            tree = sample_tree(root.pid)
            assert tree.processes and tree.processes[0].pid == root.pid


def test_a_vanished_root_gives_an_empty_tree():
    """Sampling a PID that does not exist returns an empty tree, not an error."""
    unused = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # never a PID
    assert sample_tree(unused) == ProcessTreeMemory(unused, ())


def test_one_process_alone(tmp_path):
    """sample_process reads one process (supervisord itself), None once it has gone."""
    unused = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    assert sample_process(unused) is None
    with start_process([sys.executable, "-c", TREE], None, tmp_path, tmp_path / "t.log") as root:
        root.wait_for_output("ready", START_TIMEOUT)
        alone = sample_process(root.pid)
        assert alone is not None and alone.pid == root.pid
        assert alone.pss < sample_tree(root.pid).pss
