"""One ``migrate`` at a time when several instances start together.

Render's free plan has no pre-deploy step, so every instance migrates at boot; scaled out
(``render.scale.yaml``: web, worker and beat services, maybe several instances each) they
all boot at once against one database. Two concurrent ``migrate`` runs can both try to
create the same table, and one of them fails the start. So the first instance takes a lock
and migrates; the others wait, saying so, then run ``migrate`` themselves, which finds
nothing left to do.

Which lock covers which mode, simply:
- **Redis configured** (the only way several instances can share a broker): a redis-py
  ``Lock`` on ``REDIS_LOCK_KEY``, with an expiry so that an instance that dies while
  holding it frees it within ``LOCK_TTL_SECONDS``; the holder renews it while migrating.
- **Local default** (no Redis: one machine by definition): an ``fcntl`` lock on a file in
  the data directory, released by the kernel if the holder dies.
If Redis cannot be reached at boot the instance migrates without the lock (and says so)
rather than refusing to start: at worst a concurrent ``migrate`` fails and that instance
is restarted, when it finds the work done.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from runner.config.redis import RedisSettings, client_args, mask_url
from runner.errors import StartError

REDIS_LOCK_KEY = "runner:migrate-lock"
LOCK_FILE_NAME = "migrate.lock"
# A holder that died frees the Redis lock this long after its last renewal.
LOCK_TTL_SECONDS = 120
# The holder renews the Redis lock this often while its migrations run.
RENEW_EVERY_SECONDS = 30
# A waiting instance says it is still waiting this often.
WAIT_REPORT_SECONDS = 15
# Longer than any sane migration: then the start fails instead of hanging forever.
MAX_WAIT_SECONDS = 15 * 60
# How long one Redis command of the lock may take before Redis counts as unreachable.
REDIS_TIMEOUT_SECONDS = 5
# How often a waiting instance retries the file lock (flock has no timeout of its own).
FILE_POLL_SECONDS = 0.2

Say = Callable[[str], None]


def _gave_up(where: str) -> StartError:
    return StartError(
        f"gave up after {MAX_WAIT_SECONDS} s waiting for another instance's migrations "
        f"({where}); if no instance is migrating, remove the lock and deploy again"
    )


@contextlib.contextmanager
def file_lock(path: Path, say: Say) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path``, waiting (and saying so) while another has it."""
    with path.open("a") as handle:
        started = time.monotonic()
        reported = None
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - started
                if reported is None:
                    say(f"waiting for another instance to finish migrations (lock file {path})")
                    reported = waited
                elif waited - reported >= WAIT_REPORT_SECONDS:
                    say(f"still waiting for the migration lock ({waited:.0f} s)")
                    reported = waited
                if waited > MAX_WAIT_SECONDS:
                    raise _gave_up(f"lock file {path}") from None
                time.sleep(FILE_POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _renew_until(stop: threading.Event, lock: redis.lock.Lock) -> None:
    while not stop.wait(RENEW_EVERY_SECONDS):
        # A failed renewal is retried next round; the TTL leaves room for several.
        with contextlib.suppress(redis.RedisError):
            lock.reacquire()


@contextlib.contextmanager
def redis_lock(client: redis.Redis, where: str, say: Say) -> Iterator[None]:
    """Hold ``REDIS_LOCK_KEY`` in Redis, renewing it; raises redis errors when unreachable."""
    lock = client.lock(
        REDIS_LOCK_KEY,
        timeout=LOCK_TTL_SECONDS,
        blocking_timeout=WAIT_REPORT_SECONDS,
        thread_local=False,  # the renewing thread uses the same token
    )
    started = time.monotonic()
    if not lock.acquire(blocking=False):
        say(f"waiting for another instance to finish migrations (lock {REDIS_LOCK_KEY} in {where})")
        while not lock.acquire():
            waited = time.monotonic() - started
            if waited > MAX_WAIT_SECONDS:
                raise _gave_up(f"lock {REDIS_LOCK_KEY} in {where}")
            say(f"still waiting for the migration lock ({waited:.0f} s)")
    stop = threading.Event()
    renewer = threading.Thread(target=_renew_until, args=(stop, lock), daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        # Expired meanwhile (a very long migration with Redis away): nothing left to free.
        with contextlib.suppress(redis.RedisError):
            lock.release()


def _redis_url(settings: RedisSettings) -> str | None:
    for url in (settings.url, settings.broker_url):
        if url and url.startswith(("redis://", "rediss://")):
            return url
    return None


@contextlib.contextmanager
def migration_lock(redis_settings: RedisSettings, data_dir: Path, say: Say) -> Iterator[None]:
    """The lock that covers this mode: Redis when configured, else a file in ``data_dir``."""
    url = _redis_url(redis_settings)
    if url is None:
        with file_lock(data_dir / LOCK_FILE_NAME, say):
            yield
        return
    client_url, tls_kwargs = client_args(redis_settings, url)
    client = redis.Redis.from_url(
        client_url,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 0),
        **tls_kwargs,
    )
    try:
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(redis_lock(client, f"Redis {mask_url(url)}", say))
            except redis.RedisError as error:
                say(
                    f"cannot reach Redis for the migration lock ({error.__class__.__name__}: "
                    f"{error}); migrating without it"
                )
            yield
    finally:
        client.close()
