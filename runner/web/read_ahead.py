"""Gunicorn's gthread worker, with each request read in its event loop before a thread takes it.

The stock gthread worker hands a connection to one of its threads as soon as the connection
has a byte to read, and the thread then reads the rest of the request with a blocking socket
and no time limit. With the runner's default web (1 worker x 2 threads), two connections
that each send one byte and wait take both threads: every page, /healthz included, waits
for as long as they stay open, and the platform's health check restarts a healthy service.
Gunicorn's documentation answers this with a buffering proxy in front (nginx); one service
has none.

``ReadAheadThreadWorker`` keeps the stock worker and changes one step, ``enqueue_req``
(present, with the same meaning, from gunicorn 21.2 to 27): a connection is first read
without blocking in the worker's own event loop, until its request head is complete and, for
a body of at most ``BODY_LIMIT`` bytes of known length, the body too, within ``HEAD_SECONDS``
of its first byte. Only then does a thread take it, with the bytes given back to Gunicorn's
parser: a thread never waits for a client. A connection that does not complete its request
in time is closed, counted in one log line a minute at most.

A larger body (an upload), a chunked one, or one behind ``Expect: 100-continue`` is read by
a thread as today, but at most ``streaming_slots(threads)`` of them at once (one thread is
always left for everything else), and with a kernel receive timeout (``SO_RCVTIMEO``,
``STREAM_READ_SECONDS``) that a blocking read cannot outlive: a stalled upload gives its
thread back. Connections beyond that wait, unread, for a slot.

TLS served by Gunicorn itself (``--certfile``) and HTTP/2 go to the stock path unchanged;
the runner serves neither (the platform terminates TLS in front).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from functools import partial

from gunicorn.workers.gthread import ThreadWorker

HEAD_SECONDS = 10.0  # a request's head and small body, from its first byte
HEAD_LIMIT = 32 * 1024  # nginx's default large_client_header_buffers: 4 x 8k
BODY_LIMIT = 64 * 1024  # bodies up to this are read ahead; larger ones stream
STREAM_READ_SECONDS = 10  # the longest a streaming body's read may wait for data
STOP_LINGER_SECONDS = 2.0  # a stopping worker's patience with a request being sent
REPORT_EVERY_SECONDS = 60.0
RECV_SIZE = 64 * 1024

READY = "runner_read_ahead_ready"  # attribute set on a connection whose request is read
STREAMING = "runner_read_ahead_streaming"  # ... whose body a thread will stream

TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"Connection: close\r\nContent-Length: 0\r\n\r\n"
)


def streaming_slots(threads: int) -> int:
    """How many threads may stream a body at once: all but one, and at least one."""
    return max(1, threads - 1)


@dataclass(frozen=True)
class Framing:
    """What a complete head says about the body that follows it."""

    head_length: int  # bytes up to and including the blank line
    body_length: int | None  # Content-Length, or None when the body streams

    @property
    def streams(self) -> bool:
        return self.body_length is None


def framing(data: bytes) -> Framing | None:
    """The framing of the request at the start of ``data``, or None while its head is
    incomplete. A head Gunicorn will refuse (two lengths, a length that is not a number)
    is framed as streaming: Gunicorn's parser answers it, from the buffer, with its 400."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    head_length = end + 4
    length: int | None = None
    for line in data[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == b"transfer-encoding" or (name == b"expect" and value == b"100-continue"):
            return Framing(head_length, None)
        if name == b"content-length":
            if not value.isdigit() or length is not None:
                return Framing(head_length, None)
            length = int(value)
    if length is None:
        return Framing(head_length, 0)
    if length > BODY_LIMIT:
        return Framing(head_length, None)
    return Framing(head_length, length)


def complete(data: bytes) -> Framing | None:
    """The framing once ``data`` holds everything to read ahead, else None."""
    found = framing(data)
    if found is None:
        return None
    if found.streams or len(data) >= found.head_length + found.body_length:
        return found
    return None


def _keeps_alive(result) -> bool:
    # gunicorn < 24's handle() returns (keepalive, conn); 24+ returns a bool (or a sentinel).
    return bool(result[0]) if isinstance(result, tuple) else result is True


def _next_request_is_buffered(conn) -> bool:
    found = complete(conn.parser.unreader.buf.getvalue()) if conn.parser else None
    return found is not None and not found.streams


@dataclass
class Pending:
    """A connection being read ahead."""

    deadline: float
    data: bytearray = field(default_factory=bytearray)


class ReadAheadThreadWorker(ThreadWorker):
    """gthread, with a request read in the event loop before a thread is committed to it."""

    def init_process(self):
        self._pending: dict[object, Pending] = {}  # TConn -> what has arrived
        self._waiting_streams: list[object] = []  # TConn with a head, waiting for a slot
        self._streaming = 0
        self._streaming_lock = threading.Lock()
        self._closed_slow = 0
        self._reported_at: float | None = None
        super().init_process()

    # -- the one step changed ---------------------------------------------------------

    def enqueue_req(self, conn):
        if getattr(conn, READY, False) or not self._reads_ahead():
            setattr(conn, READY, False)
            return super().enqueue_req(conn)
        self._start_reading(conn)

    def handle(self, conn):
        try:
            result = super().handle(conn)
            # A pipelined request already in the parser's buffer does not make the socket
            # readable again; gunicorn < 24 would wait on it until the keep-alive timeout.
            while _keeps_alive(result) and _next_request_is_buffered(conn):
                result = super().handle(conn)
            return result
        finally:
            if getattr(conn, STREAMING, False):
                setattr(conn, STREAMING, False)
                with self._streaming_lock:
                    self._streaming -= 1

    def murder_keepalived(self, *args, **kwargs):
        super().murder_keepalived(*args, **kwargs)
        self._close_expired()
        self._start_waiting_streams()
        self._report_closed()

    # -- reading ahead ----------------------------------------------------------------

    def _reads_ahead(self) -> bool:
        return not self.cfg.is_ssl and getattr(self.cfg, "http2_cleartext", "off") == "off"

    def _poller_lock(self):
        # gunicorn < 24 registers with the poller from its threads too, under self._lock.
        return getattr(self, "_lock", None) or contextlib.nullcontext()

    def _start_reading(self, conn):
        pending = Pending(deadline=time.monotonic() + HEAD_SECONDS)
        if conn.parser is not None:
            # A keep-alive connection's next request may already be in Gunicorn's buffer.
            pending.data += conn.parser.unreader.buf.getvalue()
            conn.parser.unreader.buf = type(conn.parser.unreader.buf)()
        self._pending[conn] = pending
        if not self.alive:
            pending.deadline = min(pending.deadline, time.monotonic() + STOP_LINGER_SECONDS)
        if self._advance(conn, pending):
            return
        conn.sock.setblocking(False)
        with self._poller_lock():
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._readable, conn))

    def _readable(self, conn, client):
        pending = self._pending.get(conn)
        if pending is None:
            return
        try:
            chunk = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn, registered=True)
            return
        if not chunk:
            self._drop(conn, registered=True)
            return
        pending.data += chunk
        if self._advance(conn, pending, registered=True):
            return
        if len(pending.data) > HEAD_LIMIT and framing(bytes(pending.data)) is None:
            with contextlib.suppress(OSError):
                conn.sock.send(TOO_LARGE)
            self._drop(conn, registered=True)

    def _advance(self, conn, pending: Pending, registered: bool = False) -> bool:
        """Hand the connection on if its request is read; True when it was."""
        found = complete(bytes(pending.data))
        if found is None:
            return False
        del self._pending[conn]
        if registered:
            with self._poller_lock():
                self.poller.unregister(conn.sock)
        conn.runner_read_ahead_data = bytes(pending.data)
        if found.streams:
            self._waiting_streams.append(conn)
            self._start_waiting_streams()
        else:
            self._dispatch(conn)
        return True

    def _dispatch(self, conn):
        data = conn.__dict__.pop("runner_read_ahead_data", b"")
        conn.sock.setblocking(True)
        if conn.parser is None:
            conn.init()
        conn.parser.unreader.unread(data)
        conn.data_ready = True  # gunicorn 24+: do not wait for the socket, the data is here
        setattr(conn, READY, True)
        self.enqueue_req(conn)

    def _start_waiting_streams(self):
        while self._waiting_streams:
            with self._streaming_lock:
                if self._streaming >= streaming_slots(self.cfg.threads):
                    return
                self._streaming += 1
            conn = self._waiting_streams.pop(0)
            setattr(conn, STREAMING, True)
            # Python's timeouts do not reach a read Gunicorn makes on a blocking socket;
            # the kernel's receive timeout does (the read then fails with EAGAIN).
            with contextlib.suppress(OSError):
                conn.sock.setsockopt(
                    socket.SOL_SOCKET,
                    socket.SO_RCVTIMEO,
                    struct.pack("ll", STREAM_READ_SECONDS, 0),
                )
            self._dispatch(conn)

    def _close_expired(self):
        now = time.monotonic()
        linger = now + STOP_LINGER_SECONDS
        for conn, pending in list(self._pending.items()):
            if not self.alive:
                pending.deadline = min(pending.deadline, linger)
            if pending.deadline <= now:
                self._closed_slow += 1
                self._drop(conn, registered=True)

    def _drop(self, conn, registered: bool):
        self._pending.pop(conn, None)
        if registered:
            with self._poller_lock(), contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        with contextlib.suppress(OSError):
            conn.sock.close()

    def _report_closed(self):
        # The first closing is said at once, later ones once a minute at most, counted:
        # under a flood of slow connections the log stays readable.
        now = time.monotonic()
        if not self._closed_slow:
            return
        if self._reported_at is not None and now - self._reported_at < REPORT_EVERY_SECONDS:
            return
        self.log.warning(
            "closed %d connection(s) that sent no complete request within %d s (slow or "
            "stalled clients: a thread takes a request only once it has arrived)",
            self._closed_slow,
            HEAD_SECONDS,
        )
        self._closed_slow = 0
        self._reported_at = now
