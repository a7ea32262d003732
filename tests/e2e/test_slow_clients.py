"""Slow and stalled clients against the runner's Gunicorn worker (runner.web.read_ahead).

A real Gunicorn (1 worker x 2 threads, the runner's default web shape) serves a small WSGI
application that echoes what it read. With Gunicorn's stock gthread worker, two connections
that send one byte and wait take both threads (the first test shows it, so the others can
fail); with the runner's worker, every request still answers at once, slow connections are
closed after ``HEAD_SECONDS``, and requests of every framing arrive whole.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from runner.web.read_ahead import BODY_LIMIT, HEAD_SECONDS, STREAM_READ_SECONDS
from tests.support.processes import ProcessHandle, wait_for
from tests.support.slow_clients import (
    READ_AHEAD_WORKER,
    STOCK_WORKER,
    big_body_head,
    closed_by_server,
    one_byte,
    open_connection,
    slow_client_attack,
    start_gunicorn,
)

pytestmark = pytest.mark.e2e

# A page must answer this fast while slow clients hold connections (loopback, idle app).
ANSWER_SECONDS = 2.0


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProcessHandle, str]]:
    server, base = start_gunicorn(tmp_path_factory.mktemp("read-ahead"), READ_AHEAD_WORKER)
    with server:
        yield server, base


def timed_get(base: str) -> float:
    started = time.monotonic()
    response = requests.get(base + "/page", timeout=10)
    assert response.ok
    return time.monotonic() - started


def test_stock_gthread_is_held_by_two_one_byte_clients(tmp_path: Path):
    """The problem the worker solves, shown on Gunicorn's own worker: this test's probe
    tells a held web from a free one."""
    server, base = start_gunicorn(tmp_path, STOCK_WORKER)
    with server:
        held = [one_byte(base), one_byte(base)]
        try:
            with pytest.raises(requests.exceptions.Timeout):
                requests.get(base + "/page", timeout=3)
        finally:
            for sock in held:
                sock.close()


def test_slow_clients_do_not_hold_threads(web):
    """Two one-byte clients, three trickling header lines and two big bodies sent two
    bytes at a time: pages still answer at once; the first two kinds are closed after
    HEAD_SECONDS, and the closing is logged once, counted."""
    server, base = web
    with slow_client_attack(base) as connections:
        started = time.monotonic()
        durations = [timed_get(base) for _ in range(8)]
        assert max(durations) < ANSWER_SECONDS, durations
        for sock in connections["one byte"] + connections["header lines"]:
            wait_for(
                lambda sock=sock: closed_by_server(sock),
                HEAD_SECONDS + 5,
                message="a slow connection stayed open past HEAD_SECONDS",
            )
        assert time.monotonic() - started >= HEAD_SECONDS - 1  # not closed early
        # While both big bodies trickle (one thread streams one, the other waits), a page
        # still has its thread.
        assert timed_get(base) < ANSWER_SECONDS
        server.wait_for_output("that sent no complete request within", timeout=5)


def test_a_stalled_upload_gives_its_thread_back(web):
    """A body announced and then not sent ends after STREAM_READ_SECONDS: the next upload,
    which waited for the streaming thread, arrives whole."""
    _, base = web
    stalled = big_body_head(base)
    try:
        stalled.sendall(b"0123456789")
        payload = b"u" * (BODY_LIMIT + 1)
        started = time.monotonic()
        response = requests.post(base + "/upload", data=payload, timeout=STREAM_READ_SECONDS + 15)
        assert response.json()["sha256"] == hashlib.sha256(payload).hexdigest()
        assert time.monotonic() - started < STREAM_READ_SECONDS + 10
        assert timed_get(base) < ANSWER_SECONDS
    finally:
        stalled.close()


@pytest.mark.parametrize(
    "length", [0, 1, 1000, BODY_LIMIT, BODY_LIMIT + 1, 3_000_000], ids=lambda n: f"{n}B"
)
def test_bodies_of_every_size_arrive_whole(web, length: int):
    _, base = web
    payload = bytes(range(256)) * (length // 256) + b"x" * (length % 256)
    answer = requests.post(base + "/echo", data=payload, timeout=30).json()
    assert answer == {
        "method": "POST",
        "path": "/echo",
        "length": length,
        "sha256": hashlib.sha256(payload).hexdigest(),
    }


def test_chunked_and_expect_continue_bodies_arrive_whole(web):
    _, base = web
    pieces = [b"a" * 10, b"b" * 70_000, b"c"]
    answer = requests.post(base + "/chunked", data=iter(pieces), timeout=30).json()
    assert answer["length"] == sum(map(len, pieces))
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("PUT", "/expect", body=b"e" * 5000, headers={"Expect": "100-continue"})
    assert json.loads(connection.getresponse().read())["length"] == 5000
    connection.close()


def test_keep_alive_and_pipelined_requests(web):
    """Requests after the first on one connection are read ahead too, including a second
    request that arrived in the same packet as the first."""
    _, base = web
    with requests.Session() as session:
        for index in range(5):
            assert (
                session.post(base + "/ka", data=b"k" * index, timeout=5).json()["length"] == index
            )
    sock = open_connection(base)
    try:
        sock.sendall(
            b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
        )
        received = b""
        sock.settimeout(5)
        while chunk := sock.recv(65536):
            received += chunk
        assert received.count(b"HTTP/1.1 200 OK") == 2
        assert b'"path": "/one"' in received and b'"path": "/two"' in received
    finally:
        sock.close()


def test_an_oversized_head_is_refused_with_431(web):
    _, base = web
    sock = open_connection(base)
    try:
        sock.sendall(b"GET / HTTP/1.1\r\n" + b"X-Big: " + b"y" * 40_000)
        sock.settimeout(5)
        assert sock.recv(4096).startswith(b"HTTP/1.1 431")
    finally:
        sock.close()
