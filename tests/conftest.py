"""Shared fixtures: throwaway Redis servers (plain, TLS), TLS material, a clean runner environment.

Function-scoped servers are private to one test, which may stop, kill or restart
them. The ``*_session`` variants are shared by every test of the session for speed:
use them only to read and write keys, never to stop or restart them.
"""

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.certs import TlsMaterial, make_tls_material
from tests.support.ports import free_port
from tests.support.processes import kill_unfinished_processes
from tests.support.redis_server import RedisServer
from tests.support.runner import build_runner_env


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``e2e`` marker."""
    config.addinivalue_line(
        "markers",
        "e2e: end-to-end test that starts real processes (runner, supervisord, Redis)",
    )


def make_password() -> str:
    """Return a fresh random Redis password, URL-safe."""
    return f"test-{secrets.token_hex(16)}"


@pytest.fixture(scope="session", autouse=True)
def _no_leaked_processes() -> Iterator[None]:
    """At the end of the session, kill every process that tests forgot, and fail naming them."""
    yield
    leaked = kill_unfinished_processes()
    if leaked:
        pytest.fail(
            "processes left running by tests (now killed):\n" + "\n".join(leaked),
            pytrace=False,
        )


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    """A CA, a server certificate for localhost/127.0.0.1 and an unrelated CA, for the session."""
    return make_tls_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def redis_plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A password-protected plain redis-server private to this test."""
    with RedisServer(tmp_path_factory.mktemp("redis-plain"), password=make_password()) as server:
        yield server


@pytest.fixture(scope="session")
def redis_plain_session(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RedisServer]:
    """A password-protected plain redis-server shared by the session: do not stop or restart it."""
    with RedisServer(
        tmp_path_factory.mktemp("redis-plain-session"), password=make_password()
    ) as server:
        yield server


@pytest.fixture
def redis_tls(
    tmp_path_factory: pytest.TempPathFactory, tls_material: TlsMaterial
) -> Iterator[RedisServer]:
    """A password-protected TLS-only redis-server private to this test."""
    with RedisServer(
        tmp_path_factory.mktemp("redis-tls"), password=make_password(), tls=tls_material
    ) as server:
        yield server


@pytest.fixture(scope="session")
def redis_tls_session(
    tmp_path_factory: pytest.TempPathFactory, tls_material: TlsMaterial
) -> Iterator[RedisServer]:
    """A password-protected TLS-only redis-server for the session: do not stop or restart it."""
    directory = tmp_path_factory.mktemp("redis-tls-session")
    with RedisServer(directory, password=make_password(), tls=tls_material) as server:
        yield server


@pytest.fixture
def runner_env(tmp_path: Path) -> dict[str, str]:
    """The host environment minus the runner's variables, with database, data dir and free PORT."""
    return build_runner_env(os.environ, tmp_path, free_port())
