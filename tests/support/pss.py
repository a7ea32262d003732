"""The memory a process tree really uses (PSS: shared pages split between their holders),
now and once it has settled; one definition for the tests and the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import psutil

from tests.support.processes import ProcessHandle

SAMPLE_SECONDS = 0.5  # sampling period of a measurement, not synchronisation
STEADY_SECONDS = 3.0  # "settled": no move by more than the tolerance for this long
TOLERANCE_MB = 1.0


def total_pss_mb(processes: Iterable[psutil.Process]) -> float:
    """PSS summed over ``processes``, in MB (a process gone meanwhile counts 0)."""
    total = 0
    for process in processes:
        try:
            total += process.memory_full_info().pss
        except psutil.Error:
            continue
    return total / 2**20


def tree_pss_mb(runner: ProcessHandle) -> float:
    """Total PSS of a started process's whole tree, in MB."""
    return total_pss_mb(runner.tree())


def settled_pss_mb(
    sample: Callable[[], float],
    deadline_seconds: float,
    tolerance_mb: float = TOLERANCE_MB,
    steady_seconds: float = STEADY_SECONDS,
) -> float:
    """``sample()`` once it has not moved by more than ``tolerance_mb`` for
    ``steady_seconds`` (the web warms up, a forked child un-shares what it touches); the
    latest sample if it still moves after ``deadline_seconds``: a tree that keeps moving is
    best described by its latest size."""
    last, since = sample(), time.monotonic()
    deadline = since + deadline_seconds
    while time.monotonic() - since < steady_seconds and time.monotonic() < deadline:
        time.sleep(SAMPLE_SECONDS)
        value = sample()
        if abs(value - last) > tolerance_mb:
            last, since = value, time.monotonic()
    return last
