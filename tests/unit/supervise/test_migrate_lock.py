"""The migration lock: one holder at a time, the others wait and say so; Redis when
configured (a real redis-server), a file lock otherwise, no lock when Redis is away."""

from __future__ import annotations

import threading
from pathlib import Path

from runner.config.environment import EnvironmentReader
from runner.config.redis import RedisSettings, read_redis_settings
from runner.supervise.migrate_lock import LOCK_FILE_NAME, REDIS_LOCK_KEY, file_lock, migration_lock
from tests.support.ports import free_port
from tests.support.processes import wait_for

WAIT_TIMEOUT = 20


def redis_settings(url: str | None) -> RedisSettings:
    env = EnvironmentReader({"REDIS_URL": url} if url else {})
    return read_redis_settings(env)


def run_waiter(settings: RedisSettings, data_dir: Path) -> tuple[threading.Thread, list, list]:
    """Take the migration lock in a thread; return it, what it said and when it got the lock."""
    said: list[str] = []
    got: list[bool] = []

    def waiter() -> None:
        with migration_lock(settings, data_dir, said.append):
            got.append(True)

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    return thread, said, got


def test_file_lock_makes_the_second_instance_wait_and_say_so(tmp_path):
    """Without Redis, a second migrate waits on the data directory's lock file, then runs."""
    with file_lock(tmp_path / LOCK_FILE_NAME, lambda text: None):
        thread, said, got = run_waiter(redis_settings(None), tmp_path)
        wait_for(lambda: said, WAIT_TIMEOUT, message="the second instance did not say it waits")
        assert said == [
            "waiting for another instance to finish migrations "
            f"(lock file {tmp_path / LOCK_FILE_NAME})"
        ]
        assert got == []
    thread.join(WAIT_TIMEOUT)
    assert got == [True]


def test_redis_lock_makes_the_second_instance_wait_until_released(tmp_path, redis_plain):
    """With REDIS_URL, an instance waits while another holds the key, then takes it."""
    client = redis_plain.client()
    client.set(REDIS_LOCK_KEY, "another-instance", px=60_000)
    thread, said, got = run_waiter(redis_settings(redis_plain.url()), tmp_path)
    wait_for(lambda: said, WAIT_TIMEOUT, message="the waiting instance said nothing")
    assert said[0].startswith(
        f"waiting for another instance to finish migrations (lock {REDIS_LOCK_KEY} in Redis redis://default:***@"
    )
    assert got == []
    client.delete(REDIS_LOCK_KEY)
    thread.join(WAIT_TIMEOUT)
    assert got == [True]
    assert client.exists(REDIS_LOCK_KEY) == 0  # released after use
    assert redis_plain.password not in " ".join(said)


def test_unreachable_redis_means_migrating_without_the_lock(tmp_path):
    """If Redis does not answer at boot, the instance says so and migrates anyway."""
    said: list[str] = []
    url = f"redis://127.0.0.1:{free_port()}/0"
    with migration_lock(redis_settings(url), tmp_path, said.append):
        ran = True
    assert ran
    assert len(said) == 1
    assert said[0].startswith("cannot reach Redis for the migration lock (ConnectionError")
    assert said[0].endswith("migrating without it")
