"""HTTP traffic against a running service, counting failures, and the tree's total PSS.

Used by the memory-budget test and by bench/leak.py: both must show that recycling a
process for memory fails no request.
"""

from __future__ import annotations

import threading

import psutil
import requests

from tests.support.processes import ProcessHandle, wait_for

REQUEST_INTERVAL = 0.1  # seconds between two rounds of requests (pacing, not waiting)
REQUEST_TIMEOUT = 10
PATHS = ("/", "/healthz")  # a Django page (database, template) and the health path


def tree_pss_mb(runner: ProcessHandle) -> float:
    """Total PSS of the runner's whole process tree, in MB (processes gone meanwhile skipped)."""
    total = 0
    for process in runner.tree():
        try:
            total += process.memory_full_info().pss
        except psutil.Error:
            continue
    return total / 2**20


SETTLED_SAMPLES = 4  # consecutive samples within SETTLED_TOLERANCE_MB of each other
SETTLED_TOLERANCE_MB = 2.0


def settled_tree_pss_mb(runner: ProcessHandle, timeout: float) -> float:
    """The tree's total PSS once it stops moving (the web warms up under traffic, a forked
    child un-shares what it touches): the last of SETTLED_SAMPLES samples, half a second
    apart, that lie within SETTLED_TOLERANCE_MB; after ``timeout``, the latest sample."""
    samples: list[float] = []

    def settled() -> bool:
        samples.append(tree_pss_mb(runner))
        recent = samples[-SETTLED_SAMPLES:]
        return len(recent) == SETTLED_SAMPLES and max(recent) - min(recent) <= SETTLED_TOLERANCE_MB

    try:
        wait_for(settled, timeout, interval=0.5)
    except AssertionError:
        pass  # a tree that keeps moving: its latest size is the best estimate there is
    return samples[-1]


def without_access_log(output: str, tail: int = 4000) -> str:
    """The runner's output without access-log lines, which would hide the rest."""
    return "\n".join(line for line in output.splitlines() if '"GET /' not in line)[-tail:]


class Traffic(threading.Thread):
    """Requests PATHS every REQUEST_INTERVAL until ``done`` is set, counting failures."""

    def __init__(self, port: str | int) -> None:
        super().__init__(daemon=True)
        self.base = f"http://127.0.0.1:{port}"
        self.sent = 0
        self.failures: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        with requests.Session() as session:
            while not self.done.wait(REQUEST_INTERVAL):
                for path in PATHS:
                    self.sent += 1
                    try:
                        response = session.get(self.base + path, timeout=REQUEST_TIMEOUT)
                        if response.status_code != 200:
                            self.failures.append(f"{path}: {response.status_code}")
                    except requests.RequestException as error:
                        self.failures.append(f"{path}: {error}")

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=REQUEST_TIMEOUT * len(PATHS) + 5)
