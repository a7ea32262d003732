"""A real, throwaway redis-server on a free loopback port: plain or TLS-only, maybe with a password.

Never the system Redis on 6379: every server here gets its own port, directory and
log, keeps nothing on disk (``--save "" --appendonly no``) unless made ``persistent``
(an append-only file in its directory, as managed Redis plans keep), and is stopped by PID.
"""

import shutil
import signal
import urllib.parse
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.certs import TlsMaterial
from tests.support.ports import LOOPBACK, free_port
from tests.support.processes import (
    ProcessExitedError,
    ProcessHandle,
    start_process,
    tail,
    wait_for,
)

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

START_TIMEOUT = 20.0
"""Seconds to wait for a new server to answer PING (generous: 2 noisy cores)."""

STOP_TIMEOUT = 10.0
"""Seconds stop() waits after SIGTERM before SIGKILL."""

CLIENT_SOCKET_TIMEOUT = 5.0
"""Seconds a client from client() waits to connect or for a reply."""

BIND_ATTEMPTS = 3
"""Fresh ports tried when another process grabbed the free port before redis-server bound it."""

ADDRESS_IN_USE = "Address already in use"


class RedisServer:
    """One redis-server process; call start() (or use ``with``), and stop() or kill() when done.

    With ``tls`` it listens only on a TLS port (``--port 0 --tls-port N``) and does
    not ask clients for certificates. The port is chosen at the first start() and
    kept by restart(), so a client's URL stays valid across faults.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        password: str | None = None,
        tls: TlsMaterial | None = None,
        executable: str = REDIS_SERVER,
        persistent: bool = False,
    ) -> None:
        """Configure a server that keeps its log in ``work_dir``; nothing starts yet.

        ``persistent``: every write goes to an append-only file in ``work_dir``, synced at
        once (``appendfsync always``), so a restart keeps the data.
        """
        self.work_dir = work_dir
        self.persistent = persistent
        self.password = password
        self.tls = tls
        self.executable = executable
        self.host = LOOPBACK
        self.port: int | None = None
        self._handle: ProcessHandle | None = None

    def __repr__(self) -> str:
        """Show the port, TLS and the PID, never the password."""
        pid = self._handle.pid if self._handle else None
        return f"<RedisServer port={self.port} tls={self.tls is not None} pid={pid}>"

    def __enter__(self) -> "RedisServer":
        """Start the server."""
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server."""
        self.stop()

    @property
    def pid(self) -> int | None:
        """PID of the running server, None when stopped."""
        return self._handle.pid if self._handle else None

    @property
    def handle(self) -> ProcessHandle | None:
        """The running server's ProcessHandle (for its output or tree), None when stopped."""
        return self._handle

    def start(self, timeout: float = START_TIMEOUT) -> "RedisServer":
        """Start redis-server and wait until it answers an authenticated PING; return self.

        The first start picks a free port (retrying with another one if it was taken
        in the meantime); later starts reuse it.
        """
        if self._handle is not None:
            raise RuntimeError(f"{self!r} is already running")
        if self.port is not None:
            self._launch(self.port, timeout)
            return self
        attempts_left = BIND_ATTEMPTS
        while True:
            port = free_port()
            attempts_left -= 1
            try:
                self._launch(port, timeout)
            except ProcessExitedError as error:
                if attempts_left and ADDRESS_IN_USE in str(error):
                    continue
                raise
            self.port = port
            return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Send SIGTERM, wait for the exit, then SIGKILL whatever is left of the tree, and reap."""
        handle, self._handle = self._handle, None
        if handle is None:
            return
        try:
            if handle.poll() is None:
                handle.send_signal(signal.SIGTERM)
                handle.wait(timeout)
        except AssertionError:
            pass  # still running after SIGTERM: kill_tree() below SIGKILLs it
        finally:
            handle.kill_tree()

    def kill(self) -> None:
        """SIGKILL the server at once (a crash, for fault tests) and reap it."""
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.kill_tree()

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """Stop the server (if running) and start it again on the same port; the data is gone
        unless the server is ``persistent``."""
        self.stop()
        self.start(timeout)

    def url(self, scheme: str | None = None, user: str | None = "default", db: int = 0) -> str:
        """Return e.g. ``redis://default:PASSWORD@127.0.0.1:PORT/0`` (``rediss://`` with TLS).

        ``user=None`` leaves the username out (``redis://:PASSWORD@...``); the
        password is percent-encoded.
        """
        if self.port is None:
            raise RuntimeError(f"{self!r} has not been started, so it has no port yet")
        scheme = scheme or ("rediss" if self.tls else "redis")
        username = urllib.parse.quote(user or "", safe="")
        userinfo = f"{username}@" if username else ""
        if self.password is not None:
            userinfo = f"{username}:{urllib.parse.quote(self.password, safe='')}@"
        return f"{scheme}://{userinfo}{self.host}:{self.port}/{db}"

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis``: address, password, TLS, timeouts, no retries."""
        if self.port is None:
            raise RuntimeError(f"{self!r} has not been started, so it has no port yet")
        return self._client_kwargs(self.port)

    def client(self, **overrides: Any) -> redis.Redis:
        """Return a redis-py client for this server; ``overrides`` replace client_kwargs()."""
        return redis.Redis(**(self.client_kwargs() | overrides))

    def _client_kwargs(self, port: int) -> dict[str, Any]:
        """Return client_kwargs() for a server listening on ``port``."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": port,
            "password": self.password,
            "socket_timeout": CLIENT_SOCKET_TIMEOUT,
            "socket_connect_timeout": CLIENT_SOCKET_TIMEOUT,
            # redis-py retries with a growing backoff by default; tests want the failure now.
            "retry": Retry(NoBackoff(), 0),
        }
        if self.tls:
            kwargs |= {
                "ssl": True,
                "ssl_ca_certs": str(self.tls.ca_pem),
                "ssl_cert_reqs": "required",
                "ssl_check_hostname": True,
            }
        return kwargs

    def _argv(self, port: int) -> list[str]:
        """Return the redis-server command line for ``port``."""
        argv = [
            self.executable,
            "--bind", self.host,
            "--save", "",
            "--appendonly", "yes" if self.persistent else "no",
            "--dir", str(self.work_dir),
            "--daemonize", "no",
            "--logfile", "",
        ]  # fmt: skip
        if self.persistent:
            argv += ["--appendfsync", "always"]
        if self.tls:
            argv += [
                "--port", "0",
                "--tls-port", str(port),
                "--tls-cert-file", str(self.tls.server_cert_pem),
                "--tls-key-file", str(self.tls.server_key_pem),
                "--tls-ca-cert-file", str(self.tls.ca_pem),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        else:
            argv += ["--port", str(port)]
        if self.password is not None:
            argv += ["--requirepass", self.password]
        return argv

    def _launch(self, port: int, timeout: float) -> None:
        """Start redis-server on ``port`` and wait for PING; on failure leave nothing running."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        handle = start_process(
            self._argv(port),
            env=None,
            cwd=self.work_dir,
            log_path=self.work_dir / f"redis-{port}.log",
        )
        kwargs = self._client_kwargs(port)

        def answers_ping() -> bool:
            if handle.poll() is not None:
                raise ProcessExitedError(
                    f"redis-server on port {port} exited with {handle.returncode}; output:\n"
                    f"{tail(handle.output())}"
                )
            client = redis.Redis(**kwargs)
            try:
                return bool(client.ping())
            finally:
                client.close()

        try:
            wait_for(
                answers_ping,
                timeout,
                message=lambda: (
                    f"redis-server on port {port} did not answer PING; output:\n"
                    f"{tail(handle.output())}"
                ),
            )
        except BaseException:
            handle.kill_tree()
            raise
        self._handle = handle
