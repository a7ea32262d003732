"""HTTP traffic against a running service, counting what failed: the one probe of the tests
and benchmarks that must show a fault or a recycle fails no request.

``Traffic(port)``: a Django page and the health path, on a kept-alive session, as a
browser behind Render's proxy sends them (the memory-budget test, ``bench/leak.py``).
``health_probe(port)``: ``/healthz`` alone, on a new connection each time, as Render's
health check sends it (the fault tests).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import requests

REQUEST_INTERVAL = 0.1  # seconds between two rounds of requests (pacing, not waiting)
REQUEST_TIMEOUT = 10
PATHS = ("/", "/healthz")  # a Django page (database, template) and the health path
PROBE_TIMEOUT = 2.0  # one health check that takes longer counts as failed
PROBE_INTERVAL = 0.05


def without_access_log(output: str, tail: int = 4000) -> str:
    """The runner's output without access-log lines, which would hide the rest."""
    return "\n".join(line for line in output.splitlines() if '"GET /' not in line)[-tail:]


class Traffic(threading.Thread):
    """Requests ``paths`` every ``interval`` until stopped; ``sent`` and ``answered`` count
    requests, ``failures`` holds (monotonic time, what went wrong) for each that was not a 200.
    Start and stop it with ``with``, or ``start()`` and ``stop()``."""

    def __init__(
        self,
        port: str | int,
        paths: Sequence[str] = PATHS,
        interval: float = REQUEST_INTERVAL,
        timeout: float = REQUEST_TIMEOUT,
        keep_alive: bool = True,
    ) -> None:
        super().__init__(daemon=True, name="traffic")
        self.base = f"http://127.0.0.1:{port}"
        self.paths, self.interval, self.timeout = tuple(paths), interval, timeout
        self.keep_alive = keep_alive
        self.sent = 0
        self.answered = 0
        self.failures: list[tuple[float, str]] = []
        self.done = threading.Event()

    def run(self) -> None:
        session = requests.Session() if self.keep_alive else requests
        try:
            while not self.done.wait(self.interval):
                for path in self.paths:
                    self._request(session, path)
        finally:
            if isinstance(session, requests.Session):
                session.close()

    def _request(self, session, path: str) -> None:
        self.sent += 1
        try:
            response = session.get(self.base + path, timeout=self.timeout)
        except requests.RequestException as error:
            self.failures.append((time.monotonic(), f"{path}: {error!r}"))
            return
        if response.status_code == 200:
            self.answered += 1
        else:
            self.failures.append((time.monotonic(), f"{path}: status {response.status_code}"))

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=self.timeout * len(self.paths) + 5)

    def __enter__(self) -> Traffic:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def health_probe(port: str | int) -> Traffic:
    """``/healthz`` over and over, each on a new connection, as Render's health check asks."""
    return Traffic(
        port, paths=("/healthz",), interval=PROBE_INTERVAL, timeout=PROBE_TIMEOUT, keep_alive=False
    )
