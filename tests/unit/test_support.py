"""Tests of the end-to-end test support itself, with real processes: Redis, process trees, HTTP."""

import os
import re
import signal
import socket
import ssl
import sys
import time
from pathlib import Path

import psutil
import pytest
import redis

from tests.support.certs import TlsMaterial
from tests.support.ports import LOOPBACK, free_port
from tests.support.processes import ProcessHandle, assert_no_survivors, start_process, wait_for
from tests.support.redis_server import RedisServer
from tests.support.runner import HOST_VARIABLES_REMOVED, build_runner_env, wait_http_ok

START_TIMEOUT = 20.0
"""Seconds to wait for a helper process to become ready (generous: 2 noisy cores)."""

EXIT_TIMEOUT = 10.0
"""Seconds to wait for processes to disappear."""

LONG_TIMEOUT = 600.0
"""A timeout a test must not need: it checks that a failure comes long before it."""

ALL_SERVERS = ["redis_plain", "redis_plain_session", "redis_tls", "redis_tls_session"]

ORPHAN_SCRIPT = """
import subprocess, sys, time
# The middle process starts "sleep" in its own process group and exits at once, so the
# sleep is reparented away from us and out of our group: only the session id finds it.
middle = (
    "import os, subprocess; p = subprocess.Popen(['sleep', '300'], preexec_fn=os.setpgrp); "
    "print('orphan', p.pid, flush=True)"
)
subprocess.run([sys.executable, "-c", middle], check=True)
print("ready", flush=True)
time.sleep(300)
"""


@pytest.fixture(params=ALL_SERVERS)
def any_server(request: pytest.FixtureRequest) -> RedisServer:
    """Each Redis fixture in turn."""
    return request.getfixturevalue(request.param)


def test_free_port_can_be_bound(tmp_path: Path) -> None:
    """free_port() returns a loopback port that a new socket can bind."""
    port = free_port()
    with socket.socket() as sock:
        sock.bind((LOOPBACK, port))
    assert 1024 <= port <= 65535


def test_free_ports_are_outside_the_ephemeral_range_and_never_given_twice() -> None:
    """No outgoing connection can take a port between the check and the server's bind: the
    ports are below the kernel's ephemeral range, and each is handed out once."""
    lowest_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(20)]
    assert len(set(ports)) == len(ports)
    assert all(port < lowest_ephemeral for port in ports), ports


def test_wait_for_returns_the_first_truthy_value() -> None:
    """wait_for() polls through falsy values and exceptions and returns the first truthy value."""
    answers = iter([None, ZeroDivisionError(), 0, "done"])

    def predicate() -> object:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert wait_for(predicate, timeout=EXIT_TIMEOUT, interval=0.001) == "done"


def test_wait_for_lets_a_failed_check_through_at_once() -> None:
    """An AssertionError in the predicate is a failed check: raised as itself, at the first
    call, not retried until the deadline and reported as a timeout."""
    calls = []

    def predicate() -> None:
        calls.append(1)
        raise AssertionError("the check itself failed")

    with pytest.raises(AssertionError, match=r"^the check itself failed$"):
        wait_for(predicate, timeout=LONG_TIMEOUT, interval=0.001)
    assert calls == [1]


def test_wait_for_reports_the_message_and_last_exception() -> None:
    """When time runs out, wait_for() raises AssertionError with the message and last exception."""

    def predicate() -> None:
        raise KeyError("the-missing-key")

    with pytest.raises(
        AssertionError,
        match=r"the thing never happened .*KeyError\('the-missing-key'\)",
    ):
        wait_for(predicate, timeout=0.2, message="the thing never happened")


def test_server_answers_ping_with_the_password(any_server: RedisServer) -> None:
    """Every Redis fixture answers PING from a client that sends its password."""
    client = any_server.client()
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_server_refuses_clients_without_the_password(any_server: RedisServer) -> None:
    """Every Redis fixture refuses a client with no password or a wrong one."""
    for password in (None, "wrong-password"):
        client = any_server.client(password=password)
        try:
            with pytest.raises(redis.AuthenticationError):
                client.ping()
        finally:
            client.close()


def test_server_url_reaches_the_server(any_server: RedisServer, tls_material: TlsMaterial) -> None:
    """url() gives a redis:// or rediss:// URL with the password that redis-py can use as is."""
    expected_scheme = "rediss" if any_server.tls else "redis"
    url = any_server.url()
    assert url == f"{expected_scheme}://default:{any_server.password}@127.0.0.1:{any_server.port}/0"
    tls_kwargs = {"ssl_ca_certs": str(tls_material.ca_pem)} if any_server.tls else {}
    client = redis.Redis.from_url(url, **tls_kwargs)
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_tls_client_trusting_another_ca_fails_verification(
    redis_tls_session: RedisServer,
) -> None:
    """A TLS client that trusts only other_ca_pem fails certificate verification."""
    assert redis_tls_session.tls is not None
    client = redis_tls_session.client(ssl_ca_certs=str(redis_tls_session.tls.other_ca_pem))
    try:
        with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            client.ping()
    finally:
        client.close()


def test_tls_server_does_not_speak_plaintext(redis_tls_session: RedisServer) -> None:
    """A TLS-only server does not answer a plaintext client on its port."""
    client = redis_tls_session.client(ssl=False, socket_timeout=2.0)
    try:
        with pytest.raises(redis.ConnectionError):
            client.ping()
    finally:
        client.close()


def test_tls_material_server_certificate_is_signed_by_the_ca(
    tls_material: TlsMaterial,
) -> None:
    """The server certificate verifies for 127.0.0.1 against ca_pem, and ca_pem_text is that CA."""
    assert tls_material.ca_pem.read_text() == tls_material.ca_pem_text
    context = ssl.create_default_context(cadata=tls_material.ca_pem_text)
    assert context.cert_store_stats()["x509_ca"] == 1


def test_restart_keeps_the_port_and_loses_the_data(redis_plain: RedisServer) -> None:
    """restart() starts a new redis-server on the same port, with nothing kept from the old one."""
    port, old_pid = redis_plain.port, redis_plain.pid
    client = redis_plain.client()
    try:
        client.set("key", "value")
        redis_plain.restart()
        assert (redis_plain.port, redis_plain.pid != old_pid) == (port, True)
        assert client.get("key") is None
    finally:
        client.close()
    assert_no_survivors([old_pid], EXIT_TIMEOUT)


def test_kill_makes_the_server_unreachable_until_restart(
    redis_tls: RedisServer,
) -> None:
    """kill() SIGKILLs the server so clients fail, and restart() brings it back on the same port."""
    assert redis_tls.handle is not None
    tree = redis_tls.handle.tree()
    redis_tls.kill()
    assert_no_survivors(tree, EXIT_TIMEOUT)
    client = redis_tls.client()
    try:
        with pytest.raises(redis.ConnectionError):
            client.ping()
        redis_tls.restart()
        assert client.ping() is True
    finally:
        client.close()


def test_stop_ends_the_server_and_leaves_no_files_outside_its_dir(tmp_path: Path) -> None:
    """stop() ends redis-server by PID and the server wrote only its log, in its own directory."""
    server = RedisServer(tmp_path / "redis", password="pw").start()
    try:
        assert server.handle is not None
        tree = server.handle.tree()
        assert [p.pid for p in tree] == [server.pid]
    finally:
        server.stop()
    assert server.pid is None
    assert_no_survivors(tree, EXIT_TIMEOUT)
    assert [p.name for p in (tmp_path / "redis").iterdir()] == [f"redis-{server.port}.log"]


def test_kill_tree_kills_a_child_and_its_grandchild(tmp_path: Path) -> None:
    """kill_tree() SIGKILLs a process that spawned a grandchild, and neither survives."""
    with start_process(
        ["bash", "-c", 'sleep 300 & echo "grandchild $!"; wait'],
        env=None,
        cwd=tmp_path,
        log_path=tmp_path / "out.log",
    ) as handle:
        grandchild = int(
            handle.wait_for_output(re.compile(r"grandchild (\d+)"), START_TIMEOUT).group(1)
        )
        tree = handle.tree()
        assert sorted(p.pid for p in tree) == sorted([handle.pid, grandchild])
        handle.kill_tree()
        assert handle.returncode == -signal.SIGKILL
    assert_no_survivors(tree, EXIT_TIMEOUT)


def test_tree_finds_an_orphan_in_another_process_group(tmp_path: Path) -> None:
    """tree() finds an orphan in its own process group by session id, and kill_tree() kills it."""
    with start_process(
        [sys.executable, "-c", ORPHAN_SCRIPT], None, tmp_path, tmp_path / "out.log"
    ) as handle:
        handle.wait_for_output("ready", START_TIMEOUT)
        orphan = psutil.Process(int(re.search(r"orphan (\d+)", handle.output()).group(1)))
        assert orphan.ppid() != handle.pid
        assert orphan.pid not in [
            p.pid for p in psutil.Process(handle.pid).children(recursive=True)
        ]
        assert orphan.pid in [p.pid for p in handle.tree()]
    assert_no_survivors([orphan], EXIT_TIMEOUT)


def test_context_manager_kills_the_tree_when_the_block_fails(tmp_path: Path) -> None:
    """Leaving a ProcessHandle's with-block by an exception still kills its tree."""
    tree: list[psutil.Process] = []

    def fail_inside_the_block() -> None:
        with start_process(["sleep", "300"], None, tmp_path, tmp_path / "out.log") as handle:
            tree.extend(handle.tree())
            raise RuntimeError("the test failed")

    with pytest.raises(RuntimeError, match="the test failed"):
        fail_inside_the_block()
    assert_no_survivors(tree, EXIT_TIMEOUT)


def test_wait_for_output_fails_at_once_when_the_process_exits(tmp_path: Path) -> None:
    """wait_for_output() fails at once, with status and output, if the process exits first."""
    argv = ["sh", "-c", "echo goodbye; exit 3"]
    with start_process(argv, None, tmp_path, tmp_path / "out.log") as handle:
        started = time.monotonic()
        with pytest.raises(AssertionError, match=r"exited with 3 .*\ngoodbye"):
            handle.wait_for_output("never printed", timeout=LONG_TIMEOUT)
        assert time.monotonic() - started < LONG_TIMEOUT / 2


def test_output_and_wait_give_what_the_process_printed_and_its_status(
    tmp_path: Path,
) -> None:
    """output() holds stdout and stderr of this process only, and wait() returns its exit status."""
    log_path = tmp_path / "out.log"
    log_path.write_text("from an earlier process\n")
    with start_process(
        ["sh", "-c", "echo out; echo err >&2; exit 7"], None, tmp_path, log_path
    ) as handle:
        assert handle.wait(EXIT_TIMEOUT) == 7
        assert handle.output() == "out\nerr\n"


def test_assert_no_survivors_reports_zombies_apart(tmp_path: Path) -> None:
    """assert_no_survivors() names an exited but unreaped process as a zombie."""
    with start_process(["true"], None, tmp_path, tmp_path / "out.log") as handle:
        root = psutil.Process(handle.pid)
        wait_for(lambda: root.status() == psutil.STATUS_ZOMBIE, START_TIMEOUT)
        with pytest.raises(AssertionError, match=r"zombies .*call ProcessHandle\.wait"):
            assert_no_survivors([root], timeout=0.2)
        assert handle.wait(EXIT_TIMEOUT) == 0
    assert_no_survivors([root], EXIT_TIMEOUT)


def test_wait_http_ok_returns_the_first_200(tmp_path: Path) -> None:
    """wait_http_ok() polls a server that is still starting and returns its first 200 response."""
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("hello")
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "http.server",
        "--bind",
        LOOPBACK,
        "--directory",
        tmp_path / "www",
        str(port),
    ]
    with start_process(argv, None, tmp_path, tmp_path / "http.log") as server:
        response = wait_http_ok(
            f"http://{LOOPBACK}:{port}/index.html", START_TIMEOUT, process=server
        )
        assert (response.status_code, response.text) == (200, "hello")


def test_build_runner_env_drops_host_runner_variables(tmp_path: Path) -> None:
    """The runner's environment keeps PATH and unrelated variables, none of the runner's own."""
    host = {name: "from-host" for name in HOST_VARIABLES_REMOVED} | {
        "PATH": "/bin",
        "HOME": "/root",
    }
    assert build_runner_env(host, tmp_path, 8123) == {
        "PATH": "/bin",
        "HOME": "/root",
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
        "RUNNER_DATA_DIR": f"{tmp_path}/data",
        "PORT": "8123",
        "TMPDIR": str(tmp_path),
    }


def test_runner_env_fixture_has_a_free_port(runner_env: dict[str, str], tmp_path: Path) -> None:
    """The runner_env fixture puts the database in tmp_path and gives a port that can be bound."""
    assert runner_env["DATABASE_URL"] == f"sqlite:///{tmp_path}/db.sqlite3"
    with socket.socket() as sock:
        sock.bind((LOOPBACK, int(runner_env["PORT"])))


def test_start_process_gives_the_process_its_own_session(tmp_path: Path) -> None:
    """start_process() returns a ProcessHandle for a child leading its own session and group."""
    with start_process(["sleep", "300"], None, tmp_path, tmp_path / "out.log") as handle:
        assert isinstance(handle, ProcessHandle)
        parent, session, group = (
            psutil.Process(handle.pid).ppid(),
            os.getsid(handle.pid),
            os.getpgid(handle.pid),
        )
        assert (parent, session, group) == (os.getpid(), handle.pid, handle.pid)
