"""Slow HTTP clients on real sockets, and a Gunicorn serving the echo application.

Shared by ``tests/e2e/test_slow_clients.py`` and ``bench/slow_clients.py``: the clients a
slow-client attack is made of (one byte and wait, header lines trickled, a large body sent
two bytes at a time), and ``start_gunicorn`` for a given worker class.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import requests

from tests.support.ports import LOOPBACK, free_port
from tests.support.processes import ProcessHandle, start_process, tail, wait_for
from tests.support.runner import REPO_ROOT

START_TIMEOUT = 30
READ_AHEAD_WORKER = "runner.web.read_ahead.ReadAheadThreadWorker"
STOCK_WORKER = "gthread"


def start_gunicorn(log_dir: Path, worker_class: str, threads: int = 2) -> tuple[ProcessHandle, str]:
    """Gunicorn with one worker of ``threads`` threads (the runner's default web shape),
    serving ``tests.support.echo_wsgi``; returns its handle and base URL once it answers."""
    port = free_port()
    server = start_process(
        [
            sys.executable, "-m", "gunicorn", "tests.support.echo_wsgi:app",
            "--bind", f"{LOOPBACK}:{port}",
            "--worker-class", worker_class,
            "--workers", "1",
            "--threads", str(threads),
            "--log-level", "info",
            "--config", "python:runner.web.gunicorn_config",
        ],
        env=None,
        cwd=REPO_ROOT,
        log_path=log_dir / f"gunicorn-{worker_class.rsplit('.', 1)[-1]}.log",
    )  # fmt: skip
    base = f"http://{LOOPBACK}:{port}"
    try:
        wait_for(
            lambda: requests.get(base + "/ready", timeout=2).ok,
            START_TIMEOUT,
            message=lambda: "gunicorn did not answer:\n" + tail(server.output),
        )
    except BaseException:
        server.kill_tree()
        raise
    return server, base


def open_connection(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def one_byte(base: str) -> socket.socket:
    """A client that sends the first byte of a request and waits."""
    sock = open_connection(base)
    sock.sendall(b"G")
    return sock


def big_body_head(base: str, length: int = 2_000_000) -> socket.socket:
    """A client that announces a large body and sends none of it yet."""
    sock = open_connection(base)
    sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % length)
    return sock


class Trickle(threading.Thread):
    """Sends ``pieces`` on ``sock``, one every ``every`` seconds, until stopped."""

    def __init__(self, sock: socket.socket, pieces: Iterable[bytes], every: float) -> None:
        super().__init__(daemon=True)
        self.sock, self.pieces, self.every = sock, pieces, every
        self.stopped = threading.Event()

    def run(self) -> None:
        for piece in self.pieces:
            if self.stopped.wait(self.every):
                return
            try:
                self.sock.sendall(piece)
            except OSError:
                return

    def stop(self) -> None:
        self.stopped.set()
        self.join(5)


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock`` (reads end of stream or a reset)."""
    sock.settimeout(0.2)
    try:
        return sock.recv(4096) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


@contextlib.contextmanager
def slow_client_attack(base: str) -> Iterator[dict[str, list[socket.socket]]]:
    """Two one-byte clients, three trickling a header line a second and two sending a
    2 MB body two bytes every half second, for the duration of the block."""
    connections = {
        "one byte": [one_byte(base), one_byte(base)],
        "header lines": [open_connection(base) for _ in range(3)],
        "big bodies": [big_body_head(base), big_body_head(base)],
    }
    tricklers = [
        Trickle(sock, [b"GET / HTTP/1.1\r\n"] + [b"X-A: b\r\n"] * 1000, every=1)
        for sock in connections["header lines"]
    ] + [Trickle(sock, [b"ab"] * 4000, every=0.5) for sock in connections["big bodies"]]
    for trickler in tricklers:
        trickler.start()
    try:
        yield connections
    finally:
        for trickler in tricklers:
            trickler.stop()
        for sockets in connections.values():
            for sock in sockets:
                sock.close()
