"""Free TCP ports on the loopback interface for servers started by tests."""

import socket

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    The kernel picks the port; the socket is closed before returning, so another
    process could take it in between. Servers started with it should retry with a
    new port when the bind fails (RedisServer does).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]
