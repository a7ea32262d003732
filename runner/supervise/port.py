"""Is ``PORT`` free? Checked before anything starts, so that a port another program holds is
one line naming ``PORT`` (exit 2), not half a minute of Gunicorn retrying and giving up.

The probe binds the address Gunicorn will bind (``0.0.0.0:PORT``) with ``SO_REUSEADDR``, as
Gunicorn does: a port left in TIME_WAIT by an earlier run is free to both, a port another
socket listens on is not. The holder is named when the system tells (psutil; root sees every
process), and a web left over from an earlier runner is called that.
"""

from __future__ import annotations

import errno
import socket

import psutil

from runner.errors import ConfigError, Problem

BIND_HOST = "0.0.0.0"
# How a left-over web of ours shows in its command line (runner.config.plan's WSGI entry).
OUR_WEB = "runner.web.wsgi"


def _holder(port: int) -> str:
    """`` (pid 123: python -m http.server 8000)`` for the process listening on ``port``."""
    try:
        for connection in psutil.net_connections(kind="tcp"):
            if (
                connection.status == psutil.CONN_LISTEN
                and connection.laddr
                and connection.laddr.port == port
                and connection.pid
            ):
                command = " ".join(psutil.Process(connection.pid).cmdline())
                if OUR_WEB in command:
                    return (
                        f" (pid {connection.pid}: a web left over from an earlier runner that "
                        "did not stop; stop it with kill " + str(connection.pid) + ")"
                    )
                return f" (pid {connection.pid}: {command[:80]})"
    except (psutil.Error, OSError):
        pass  # naming the holder is a courtesy: the line stands without it
    return ""


def check_port(port: int) -> None:
    """Raise ConfigError naming PORT when another socket already listens on it."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((BIND_HOST, port))
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise ConfigError(
                [Problem("PORT", str(port), f"cannot be bound ({error.strerror}); choose another")]
            ) from error
        raise ConfigError(
            [
                Problem(
                    "PORT",
                    str(port),
                    f"another program already listens on {BIND_HOST}:{port}{_holder(port)}; "
                    "stop it, or set PORT to a free port",
                )
            ]
        ) from error
    finally:
        probe.close()
