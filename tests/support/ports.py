"""Free TCP ports on the loopback interface for servers started by tests.

A port the kernel picks (bind to port 0) is one of its ephemeral ports, which it also
gives to every outgoing connection: between the check and the server's bind, a client
connection of another test can take it. These ports come from below the ephemeral range
instead, where only servers that ask for a port by number bind, and are handed out once
per test session; the check that one is free still comes first.
"""

from __future__ import annotations

import itertools
import os
import random
import socket

LOOPBACK = "127.0.0.1"
EPHEMERAL_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"
LOWEST = 20000  # above the well-known and most registered services' ports
# Spread by process, so that two test sessions at once rarely walk the same ports.
_candidates = itertools.count(LOWEST + random.Random(os.getpid()).randrange(0, 5000))


def _first_ephemeral() -> int:
    try:
        with open(EPHEMERAL_RANGE) as ranges:
            return int(ranges.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now, outside the kernel's ephemeral range, and
    not given out before in this session; the kernel's own pick when none is left."""
    top = _first_ephemeral()
    for port in _candidates:
        if port >= top:
            break
        if _is_free(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]
