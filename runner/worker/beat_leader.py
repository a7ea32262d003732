"""One beat for the whole service: periodic tasks leave from one instance only.

Scaled out (several instances of the same service against one Redis and one database),
every instance runs beat, and each beat would send every periodic task: twice with two
instances. ``LeaderScheduler`` is the scheduler the runner gives beat (``--scheduler``) in
Redis mode. It wraps the scheduler the project configured (``beat_scheduler``:
django_celery_beat's ``DatabaseScheduler`` in the demo, Celery's ``PersistentScheduler``
by default) and lets it tick only while this process holds a lock in Redis, redis-py's
``Lock``: a key set with ``NX`` and an expiry, renewed by its holder.

- **Leader**: renews the lock every third of its expiry (``BEAT_LEADER_LOCK_SECONDS``);
  beat's sleeps are capped so that it does. A renewal that finds the lock gone or taken, or
  that cannot reach Redis before the last third of the lock's life, stops the sending.
- **Standby**: sends nothing; between two tries to take the lock (one ``SET NX``, then the
  lock's ``PTTL`` when another holds it) it waits in a ``BLPOP`` on the lock's *released*
  list, for a third of the expiry at most, or until the lock expires if that is sooner: a
  standby costs Redis three commands a try, the leader none more.
- **Taking over**: a new leader builds a new inner scheduler, which reads its entries from
  their store: for the ``DatabaseScheduler``, the ``last_run_at`` the previous leader saved
  (a scheduler that keeps running caches them and would not see it).
- **Exactly once across a hand-over**: the inner scheduler saves its state after every task
  it sends (``sync_every_tasks = 1``; Celery's default is every 3 minutes), so the next
  leader knows the last run even if this one is killed. Only a kill between a send and its
  save (milliseconds) can make a task run once more.
- **Hand-over bound**: ``close()`` (beat stopping) saves the schedule, frees the lock, then
  pushes onto the released list: the standby's ``BLPOP`` returns at once and it takes over
  in the same second (measured: tests/e2e/test_beat_leader.py). A leader that crashed keeps
  the lock until it expires; the standby's wait ends at that expiry, so it takes over then.

Why not celery-redbeat, which does leader election well: it is a whole scheduler that keeps
the schedule in Redis, so it would replace the ``DatabaseScheduler``, whose schedules live
in the database, are edited in the admin and seeded by a migration. Here the project's own
scheduler stays, and only the lock (redis-py's) is added.

Limits: a schedule kept in a local file (``PersistentScheduler``) is per instance, so a new
leader only knows the runs it sent itself and a task may run once more at a hand-over.
A leader frozen (stopped process, paused machine) longer than the expiry while it sends
could overlap with its successor: it checks the lock only between ticks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Mapping

import redis
from redis.backoff import NoBackoff
from redis.exceptions import LockError
from redis.retry import Retry

from runner.config.environment import EnvironmentReader
from runner.config.plan import BEAT_SCHEDULER_VARIABLE
from runner.config.redis import broker_redis_url, client_args, mask_url, read_redis_settings
from runner.config.settings import read_beat_leader_lock_seconds
from runner.errors import ConfigError, Problem

# Under the same "runner:" namespace as the migration lock; the Celery app's name follows,
# so two projects sharing one Redis each get their own leader.
LOCK_KEY_PREFIX = "runner:beat-leader:"
# The leader renews, and a standby tries to take the lock, every this fraction of its
# expiry: a renewal can fail twice before the lock is at risk.
TRY_EVERY_FRACTION = 1 / 3
# After a renewal failed because Redis did not answer, the leader tries again this soon.
RETRY_RENEWAL_SECONDS = 1.0
# How long one Redis command of the lock may take (less when the lock is shorter: a
# renewal must not outlast the margin it keeps).
REDIS_TIMEOUT_SECONDS = 5.0
# Shown in Redis's CLIENT LIST, so that the connections are recognisable: the lock's, and
# the standby's blocking wait (a connection of its own: its reply may take a minute).
CLIENT_NAME = "runner-beat-leader"
WAIT_CLIENT_NAME = "runner-beat-standby"
# A leader that lets go pushes onto "<lock key>:released"; a standby stopping pushes onto
# its own "<lock key>:wake:<pid>", to end its wait at once. Both expire with the lock.
RELEASED_SUFFIX = ":released"
WAKE_SUFFIX = ":wake:"
# A standby whose lock holder expires in this little wakes this much later, not earlier.
EXPIRY_MARGIN_SECONDS = 0.05
# What beat falls back to when the project configured this class itself as its scheduler.
FALLBACK_SCHEDULER = "celery.beat:PersistentScheduler"

logger = logging.getLogger(__name__)


def lock_seconds(environ: Mapping[str, str]) -> int:
    """``BEAT_LEADER_LOCK_SECONDS``, checked as the runner checked it at start."""
    env = EnvironmentReader(environ)
    seconds = read_beat_leader_lock_seconds(env)
    if env.problems:
        raise ConfigError(env.problems)
    return seconds


def lock_key(app) -> str:
    """The lock's key: the runner's namespace and the app's name, inside the broker's own
    key prefix (kombu's ``global_keyprefix``) when it has one."""
    options = app.conf.broker_transport_options or {}
    return f"{options.get('global_keyprefix') or ''}{LOCK_KEY_PREFIX}{app.main or 'celery'}"


def _as_bytes(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def lock_client(
    environ: Mapping[str, str], timeout: float, name: str = CLIENT_NAME
) -> tuple[redis.Redis, str]:
    """A client for the broker's Redis with the broker's TLS options, and its masked URL."""
    env = EnvironmentReader(environ)
    settings = read_redis_settings(env)
    if env.problems:
        raise ConfigError(env.problems)
    url = broker_redis_url(settings)
    if url is None:
        raise ConfigError(
            [
                Problem(
                    "REDIS_URL",
                    None,
                    "not set, and the beat leader lock lives in Redis; set REDIS_URL, or "
                    "give beat another scheduler",
                )
            ]
        )
    client_url, tls_kwargs = client_args(settings, url)
    client = redis.Redis.from_url(
        client_url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        # One immediate retry: a connection Redis closed (a restart, an idle timeout) is
        # replaced at once; no backoff, since a tick that waits is worse than one that fails.
        retry=Retry(NoBackoff(), 1),
        client_name=name,
        **tls_kwargs,
    )
    return client, mask_url(url) or url


def _configured_scheduler(app):
    """The scheduler the plan chose (``RUNNER_BEAT_SCHEDULER``: CELERY_BEAT_ARGS' --scheduler,
    or django_celery_beat's), else the one the project configured; never this one."""
    from celery.utils.imports import load_extension_class_names, symbol_by_name

    aliases = dict(load_extension_class_names("celery.beat_schedulers"))
    name = os.environ.get(BEAT_SCHEDULER_VARIABLE) or app.conf.beat_scheduler
    scheduler = symbol_by_name(name, aliases=aliases)
    if isinstance(scheduler, type) and issubclass(scheduler, LeaderScheduler):
        return symbol_by_name(FALLBACK_SCHEDULER)
    return scheduler


def _name(scheduler: object) -> str:
    if isinstance(scheduler, str):
        return scheduler
    return f"{getattr(scheduler, '__module__', '?')}.{getattr(scheduler, '__qualname__', '?')}"


def _seconds(value: float) -> str:
    return f"{round(value, 1):g} s"


class LeaderScheduler:
    """A beat scheduler that lets the project's scheduler tick only while it holds the lock.

    Celery builds it like any scheduler (``app``, ``schedule_filename``, ``max_interval``,
    ``lazy``); beat's ``Service`` then calls ``tick()`` in a loop, ``should_sync()`` and
    ``_do_sync()`` between ticks and ``close()`` when it stops.
    """

    def __init__(
        self,
        app,
        schedule_filename: str | None = None,
        max_interval: float | None = None,
        lazy: bool = False,
        **kwargs,
    ) -> None:
        self.app = app
        self.lock_seconds = lock_seconds(os.environ)
        self.try_every = self.lock_seconds * TRY_EVERY_FRACTION
        # Beat never sleeps longer than this: the renewals and tries must happen on time.
        self.max_interval = min(max_interval or self.try_every, self.try_every)
        self.key = lock_key(app)
        self._inner_options = dict(
            kwargs, schedule_filename=schedule_filename, max_interval=max_interval
        )
        self.inner = None  # the project's scheduler, only while this instance leads
        self._client: redis.Redis | None = None
        self._waiter: redis.Redis | None = None  # the standby's BLPOP, made when first needed
        self._wait_seconds = self.try_every  # until the next try: the lock's expiry if sooner
        self._lock = None
        self._where = ""
        self._valid_until = 0.0  # monotonic time the lock surely lasts until
        self._renew_at = 0.0
        self._next_try = 0.0
        self._said = ""  # the last standby line, so that it is said once, not per try
        if not lazy:  # a lazy instance only shows beat's banner: no connection
            timeout = min(REDIS_TIMEOUT_SECONDS, self.try_every)
            self._client, self._where = lock_client(os.environ, timeout)
            self._lock = self._client.lock(
                self.key,
                timeout=self.lock_seconds,
                # close() may run in a signal handler, not the thread that took the lock.
                thread_local=False,
            )

    # --- what beat's Service calls ------------------------------------------------------

    @property
    def leading(self) -> bool:
        return self.inner is not None

    @property
    def info(self) -> str:
        """Beat's banner lines under ``. scheduler -> ...``."""
        return (
            f"    . leader lock -> {self.key} (expires {_seconds(self.lock_seconds)} after "
            f"its holder's last renewal)\n"
            f"    . schedules -> {_name(self.app.conf.beat_scheduler)}"
        )

    @property
    def schedule(self) -> dict:
        return self.inner.schedule if self.inner is not None else {}

    def tick(self, *args, **kwargs) -> float:
        """One pass: renew or try the lock, then the inner scheduler's tick when leading.

        Returns beat's sleep until the next pass, never past the next renewal or try.
        """
        now = time.monotonic()
        if self.inner is not None and now >= self._renew_at:
            self._renew(now)
        if self.inner is None:
            if now < self._next_try:
                return self._next_try - now
            self._try_to_lead(now)
            if self.inner is None:
                return self._wait_for_release()
        sleep = self.inner.tick(*args, **kwargs)
        return max(0.0, min(sleep, self._renew_at - time.monotonic()))

    def should_sync(self) -> bool:
        return self.inner is not None and self.inner.should_sync()

    def _do_sync(self) -> None:
        if self.inner is not None:
            self.inner._do_sync()

    def sync(self) -> None:
        if self.inner is not None:
            self.inner.sync()

    def wake(self) -> None:
        """End this standby's wait now (beat is stopping): from another thread."""
        if self._client is None:
            return
        with contextlib.suppress(redis.RedisError):
            key = self._wake_key()
            self._client.pipeline(transaction=False).rpush(key, 1).pexpire(
                key, int(self.lock_seconds * 1000)
            ).execute()

    def close(self) -> None:
        """Save the schedule, then free the lock and say so: a standby takes over at once.

        Idempotent: ``celery beat`` calls it from its SIGTERM handler and again on exit.
        """
        inner, self.inner = self.inner, None
        try:
            if inner is not None:
                inner.close()  # the inner scheduler saves its entries, for the next leader
        finally:
            self._release()
            if inner is not None:
                logger.info(
                    "leader: this instance no longer sends the periodic tasks: it is "
                    "stopping; lock released, a standby instance takes over at once"
                )
            self._said = ""
            if self._client is not None:
                self._client.close()  # redis-py reconnects if beat ever ticks again
            if self._waiter is not None:
                self._waiter.close()

    # --- the lock ------------------------------------------------------------------------

    def _wait_for_release(self) -> float:
        """Wait, as a standby, until the leader lets go, the lock expires or a third of the
        expiry has passed; then tick again at once (0). Where the wait cannot be made, beat
        sleeps until the next try instead."""
        seconds = max(EXPIRY_MARGIN_SECONDS, self._wait_seconds)
        try:
            if self._waiter is None:
                timeout = self.try_every + REDIS_TIMEOUT_SECONDS
                self._waiter, _ = lock_client(os.environ, timeout, WAIT_CLIENT_NAME)
            # BLPOP's timeout is in seconds, fractions since Redis 6.0.
            self._waiter.blpop([self._released_key(), self._wake_key()], timeout=seconds)
        except redis.RedisError:
            return seconds
        self._next_try = time.monotonic()
        return 0.0

    def _released_key(self) -> str:
        return f"{self.key}{RELEASED_SUFFIX}"

    def _wake_key(self) -> str:
        return f"{self.key}{WAKE_SUFFIX}{os.getpid()}"

    def _try_to_lead(self, now: float) -> None:
        self._next_try = now + self.try_every
        self._wait_seconds = self.try_every
        try:
            taken = self._lock.acquire(blocking=False)
        except redis.RedisError as error:
            self._standby(
                f"standby: cannot reach Redis at {self._where} for the leader lock "
                f"({error.__class__.__name__}: {error}); trying again every "
                f"{_seconds(self.try_every)}"
            )
            return
        if not taken:
            self._wait_until_expiry()
            self._standby(
                "standby: another instance sends the periodic tasks; this one takes over "
                f"at once if it stops, within {_seconds(self.lock_seconds)} if it dies "
                f"(lock {self.key})"
            )
            return
        self._valid_until = now + self.lock_seconds
        self._renew_at = now + self.try_every
        try:
            self.inner = self._new_inner()
        except BaseException:
            self._release()
            raise
        self._said = ""
        logger.info(
            "leader: this instance sends the periodic tasks (lock %s in Redis, renewed every "
            "%s; if this instance stops, a standby takes over at once, within %s if it dies)",
            self.key,
            _seconds(self.try_every),
            _seconds(self.lock_seconds),
        )

    def _wait_until_expiry(self) -> None:
        """Wait no longer than the holder's lock lasts: after a crash it is not released."""
        with contextlib.suppress(redis.RedisError):
            remaining_ms = self._client.pttl(self.key)
            if remaining_ms is not None and remaining_ms >= 0:
                self._wait_seconds = min(
                    self.try_every, remaining_ms / 1000 + EXPIRY_MARGIN_SECONDS
                )

    def _new_inner(self):
        """The project's scheduler, new: it reads its entries from their store now."""
        inner = _configured_scheduler(self.app)(app=self.app, **self._inner_options)
        # Save after every send, so that the next leader never sends the same run again.
        inner.sync_every_tasks = 1
        return inner

    def _extend(self) -> None:
        """Push the lock's expiry back to a full term; LockError if it is not ours any more.

        One command (``GETEX``, Redis 6.2+) where redis-py's ``reacquire`` runs a script of
        three: renewals are most of an idle service's Redis traffic. ``GETEX`` sets the
        expiry whoever holds the key; when the holder is another instance that only delays
        its own renewal's effect, and this one steps down at once.
        """
        token = self._lock.local.token
        try:
            value = self._client.getex(self.key, px=int(self.lock_seconds * 1000))
        except redis.ResponseError:  # no GETEX before Redis 6.2: redis-py's script
            self._lock.reacquire()
            return
        if value is None or _as_bytes(value) != _as_bytes(token):
            raise LockError("the lock is not held by this instance")

    def _renew(self, now: float) -> None:
        try:
            self._extend()
        except LockError:  # expired, or taken by another instance meanwhile
            self._step_down("the lock expired or another instance holds it now")
            self._next_try = now  # maybe nobody does: try again at once
            return
        except redis.RedisError as error:
            # Stop before the lock's last third: another instance may take it at expiry.
            give_up_at = self._valid_until - self.try_every
            if now >= give_up_at:
                self._step_down(
                    f"Redis did not answer to renew the lock ({error.__class__.__name__}: "
                    f"{error}), so another instance may take it over"
                )
                self._next_try = now + self.try_every
            else:
                self._renew_at = min(now + RETRY_RENEWAL_SECONDS, give_up_at)
            return
        self._valid_until = now + self.lock_seconds
        self._renew_at = now + self.try_every

    def _step_down(self, reason: str) -> None:
        inner, self.inner = self.inner, None
        logger.warning("leader: this instance no longer sends the periodic tasks: %s", reason)
        if inner is not None:
            try:
                inner.close()
            except Exception:  # the schedule could not be saved; beat carries on as standby
                logger.exception("leader: closing the schedule failed")

    def _standby(self, line: str) -> None:
        if line != self._said:
            logger.info("%s", line)
            self._said = line

    def _release(self) -> None:
        if self._lock is None:
            return
        # Not held (never taken, lost, released already): nothing to free. Redis away: the
        # lock expires by itself.
        with contextlib.suppress(LockError, redis.RedisError):
            self._lock.release()
            # Released: a standby waiting in its BLPOP takes over now, not at its next try.
            key = self._released_key()
            self._client.pipeline(transaction=False).rpush(key, 1).pexpire(
                key, int(self.lock_seconds * 1000)
            ).execute()
