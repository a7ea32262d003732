"""The Redis connection budget: how many connections each process may open, and their sum.

Managed Redis plans cap connections (Redis Cloud: 30 per database), and every process of
the service opens its own: a Gunicorn worker, a Celery pool child, the worker's main process
and beat each hold their own pools. ``REDIS_MAX_CONNECTIONS`` is a budget for the whole
process tree; this module counts what each process opens at peak, gives each program its
pool limits (passed to its processes as ``RUNNER_REDIS_*`` variables that
``runner.web.django_settings`` turns into Celery and Django settings), and refuses a plan whose peak
does not fit. Pure: ``runner.config.plan`` calls it, ``python -m runner plan`` prints the lines.

What each process opens, read in the installed kombu 5.7 / Celery 5.7 / redis-py 8 sources
and measured with ``CLIENT LIST`` (tests/e2e/test_redis_tls.py):

- Sending tasks goes through Celery's producer pool, at most ``broker_pool_limit`` kombu
  connections. Each opens **two** Redis connections: its channel pings Redis on its
  asynchronous pool when it is created (``Channel.__init__``), then publishes on its
  synchronous pool (``Channel._put``). Two pools, one connection each.
- A process that sends a task also subscribes to the task's result (Celery's Redis
  backend, ``on_task_call``): a pub/sub connection held from the first send, plus one for
  reading results (``AsyncResult.get``/``.state``), both from the result backend's pool of
  ``redis_max_connections``. Celery's pool children and the beat embedded in the worker
  never subscribe (Celery marks them ``task_join_will_block``); they only store results.
- The worker's main process consumes through one kombu connection with two channels, two
  Redis connections each: tasks (``BRPOP`` and acknowledgements) and remote control
  (``celery inspect``/``control``: pub/sub and replies). Heartbeat or task events add the
  event dispatcher's channel (two more), gossip its own consumer channel (two more); the
  runner turns heartbeats and gossip off (``--without-heartbeat``, ``--without-gossip``).
  The main process also records results of tasks whose child died or was killed at the
  time limit: one result connection.
- The Django cache opens a connection per concurrent cache call: one per thread.
- Beat in Redis mode holds one more, its leader lock's (``runner.worker.beat_leader``), whether
  it leads or waits.

Pool limits are exactly these needs (a Gunicorn sync worker or a pool child runs one thing
at a time, so a larger pool would never be used). A limit that is reached makes the
producer pool and the cache wait for a free connection; the result backend's pool, which
cannot wait, is sized so that a single thread never reaches it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from runner.config.redis import REDIS_SCHEMES, RedisSettings
from runner.config.settings import BEAT_LEADER_SCHEDULER
from runner.errors import ConfigError, Problem

# Variables through which each program's processes receive their pool limits.
BROKER_POOL_LIMIT_VARIABLE = "RUNNER_REDIS_BROKER_POOL_LIMIT"
RESULT_MAX_CONNECTIONS_VARIABLE = "RUNNER_REDIS_RESULT_MAX_CONNECTIONS"
CACHE_MAX_CONNECTIONS_VARIABLE = "RUNNER_REDIS_CACHE_MAX_CONNECTIONS"

# Redis connections behind one kombu connection of the producer pool (see the docstring).
REDIS_PER_BROKER_CONNECTION = 2
# The worker's consumer: tasks channel (2) + remote control channel (2).
WORKER_CONSUMER_CONNECTIONS = 4
# The event dispatcher's channel, opened when heartbeats, gossip or task events are on.
WORKER_EVENTS_CONNECTIONS = 2
# The gossip consumer's channel (pub/sub on the events exchange, plus its command pool).
WORKER_GOSSIP_CONNECTIONS = 2
# Result connections of a thread that sends tasks: the pub/sub for their results + one.
RESULTS_PER_SENDING_THREAD = 2
# Result connections of a thread that runs tasks: storing results, one at a time.
RESULTS_PER_TASK_THREAD = 1
# The worker's main process records failures of children that died or hit the time limit.
RESULTS_FOR_WORKER_MAIN = 1
# The beat leader lock's client (runner.worker.beat_leader), leader or standby.
LEADER_LOCK_CONNECTIONS = 1

# Celery's pools whose tasks run in the worker's main process, in threads or inline.
THREAD_POOLS = ("threads", "eventlet", "gevent")
INLINE_POOLS = ("solo",)

P = TypeVar("P")


class ProgramLike(Protocol):
    """What this module reads from a ``runner.config.plan.Program``."""

    name: str
    command: tuple[str, ...]
    environment: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class PoolSizes:
    """Pool limits for every process of one program."""

    broker_pool_limit: int  # Celery broker_pool_limit: kombu connections for sending
    result_max_connections: int  # Celery redis_max_connections: the result backend pool
    cache_max_connections: int  # the Django cache pool (CACHES OPTIONS max_connections)

    def environment(self) -> tuple[tuple[str, str], ...]:
        """The ``RUNNER_REDIS_*`` variables that carry these limits to the processes."""
        return (
            (BROKER_POOL_LIMIT_VARIABLE, str(self.broker_pool_limit)),
            (RESULT_MAX_CONNECTIONS_VARIABLE, str(self.result_max_connections)),
            (CACHE_MAX_CONNECTIONS_VARIABLE, str(self.cache_max_connections)),
        )


@dataclass(frozen=True)
class ProcessGroup:
    """Processes of one program that open the same connections: one line of the sum."""

    program: str
    label: str  # "2 workers", "main", "2 children", "beat embedded"
    count: int
    parts: tuple[tuple[str, int], ...]  # ("results 2", 2), ("broker 1x2", 2), ...

    @property
    def each(self) -> int:
        return sum(n for _, n in self.parts)

    @property
    def total(self) -> int:
        return self.count * self.each

    def line(self) -> str:
        """``web: 2 workers x (broker 1x2 + results 2 + cache 1) = 10``."""
        terms = " + ".join(text for text, _ in self.parts) or "0"
        if self.count == 1:
            return f"{self.program}: {self.label} ({terms}) = {self.total}"
        return f"{self.program}: {self.label} x ({terms}) = {self.total}"


@dataclass(frozen=True)
class RedisConnections:
    """The budget: per-program pool limits and the peak they add up to."""

    budget: int  # REDIS_MAX_CONNECTIONS
    groups: tuple[ProcessGroup, ...]
    pools: tuple[tuple[str, PoolSizes], ...]  # (program name, its limits)

    @property
    def total(self) -> int:
        return sum(group.total for group in self.groups)

    @property
    def spare(self) -> int:
        return self.budget - self.total

    def pools_for(self, program: str) -> PoolSizes | None:
        return dict(self.pools).get(program)

    def lines(self) -> tuple[str, ...]:
        """The arithmetic, a line per group that opens any and the total, as ``runner plan``
        prints it."""
        return (
            *(group.line() for group in self.groups if group.total),
            f"total at peak {self.total} <= REDIS_MAX_CONNECTIONS {self.budget} "
            f"({self.spare} spare)",
        )

    def with_environment(self, program: P) -> P:
        """``program`` with its pool limits added to its environment."""
        pools = self.pools_for(program.name)  # type: ignore[attr-defined]
        if pools is None:
            return program
        environment = program.environment + pools.environment()  # type: ignore[attr-defined]
        return dataclasses.replace(program, environment=environment)  # type: ignore[type-var]


# --- reading the commands the plan chose ------------------------------------------------


def _option(command: Sequence[str], *names: str) -> str | None:
    """The value of ``--name value`` or ``--name=value`` (last one wins), else None."""
    value = None
    for index, argument in enumerate(command):
        for name in names:
            if argument == name and index + 1 < len(command):
                value = command[index + 1]
            elif argument.startswith(name + "="):
                value = argument[len(name) + 1 :]
    return value


def _int_option(command: Sequence[str], default: int, *names: str) -> int:
    value = _option(command, *names)
    return int(value) if value is not None else default


def _has(command: Sequence[str], *flags: str) -> bool:
    return any(flag in command for flag in flags)


# --- what each program opens -------------------------------------------------------------


@dataclass(frozen=True)
class _Uses:
    """Which of Redis's three jobs use Redis at all (the others may be elsewhere)."""

    broker: bool
    results: bool
    cache: bool


def _client_parts(
    pools: PoolSizes, uses: _Uses, threads: int, results_per_thread: int
) -> tuple[tuple[str, int], ...]:
    """Connections of one process running ``threads`` threads of the project's code."""
    parts: list[tuple[str, int]] = []
    if uses.broker:
        parts.append(
            (
                f"broker {pools.broker_pool_limit}x{REDIS_PER_BROKER_CONNECTION}",
                pools.broker_pool_limit * REDIS_PER_BROKER_CONNECTION,
            )
        )
    if uses.results and results_per_thread:
        # Celery keeps one result backend (and so one pool) per thread.
        count = f"{threads}x{results_per_thread}" if threads > 1 else str(results_per_thread)
        parts.append((f"results {count}", threads * results_per_thread))
    if uses.cache:
        parts.append((f"cache {pools.cache_max_connections}", pools.cache_max_connections))
    return tuple(parts)


def _web(program: ProgramLike, uses: _Uses) -> tuple[PoolSizes, list[ProcessGroup]]:
    workers = _int_option(program.command, 1, "--workers", "-w")
    threads = _int_option(program.command, 1, "--threads")
    pools = PoolSizes(
        broker_pool_limit=threads,
        result_max_connections=RESULTS_PER_SENDING_THREAD,
        cache_max_connections=threads,
    )
    label = f"{workers} workers" if workers > 1 else "1 worker"
    if threads > 1:
        label += f" of {threads} threads"
    parts = _client_parts(pools, uses, threads, RESULTS_PER_SENDING_THREAD)
    # The master (--preload) imports the project but serves nothing: no connection.
    return pools, [ProcessGroup(program.name, label, workers, parts)]


def _worker_main_parts(command: Sequence[str], uses: _Uses) -> list[tuple[str, int]]:
    parts: list[tuple[str, int]] = []
    if uses.broker:
        parts.append((f"consumer {WORKER_CONSUMER_CONNECTIONS}", WORKER_CONSUMER_CONNECTIONS))
        gossip = not _has(command, "--without-gossip")
        events = (
            gossip
            or not _has(command, "--without-heartbeat")
            or _has(command, "-E", "--task-events")
        )
        if events:
            parts.append((f"events {WORKER_EVENTS_CONNECTIONS}", WORKER_EVENTS_CONNECTIONS))
        if gossip:
            parts.append((f"gossip {WORKER_GOSSIP_CONNECTIONS}", WORKER_GOSSIP_CONNECTIONS))
    if uses.results:
        parts.append((f"results {RESULTS_FOR_WORKER_MAIN}", RESULTS_FOR_WORKER_MAIN))
    return parts


def _embedded_beat(program: str, uses: _Uses) -> ProcessGroup:
    # Forked from the worker's main process: one thread that sends tasks (one producer
    # connection at a time) and never subscribes to their results.
    parts = _client_parts(PoolSizes(1, 0, 0), _Uses(uses.broker, False, False), 1, 0)
    return ProcessGroup(program, "beat embedded", 1, parts)


def _worker(program: ProgramLike, uses: _Uses) -> tuple[PoolSizes, list[ProcessGroup]]:
    command = program.command
    concurrency = _int_option(command, 1, "--concurrency", "-c")
    pool = _option(command, "--pool", "-P") or "prefork"
    main = _worker_main_parts(command, uses)
    if pool in THREAD_POOLS or pool in INLINE_POOLS:
        threads = concurrency if pool in THREAD_POOLS else 1
        pools = PoolSizes(threads, RESULTS_PER_TASK_THREAD, threads)
        main += _client_parts(pools, uses, threads, RESULTS_PER_TASK_THREAD)
        groups = [ProcessGroup(program.name, f"main with {pool} pool", 1, tuple(main))]
    else:
        pools = PoolSizes(1, RESULTS_PER_TASK_THREAD, 1)
        children = _client_parts(pools, uses, 1, RESULTS_PER_TASK_THREAD)
        label = f"{concurrency} children" if concurrency > 1 else "1 child"
        groups = [
            ProcessGroup(program.name, "main", 1, tuple(main)),
            ProcessGroup(program.name, label, concurrency, children),
        ]
    if _has(command, "--beat", "-B"):
        groups.append(_with_leader_lock(_embedded_beat(program.name, uses), command))
    return pools, groups


def _beat(program: ProgramLike, uses: _Uses) -> tuple[PoolSizes, list[ProcessGroup]]:
    # A beat of its own subscribes to the results of what it sends, like any sender.
    pools = PoolSizes(1, 1, 1)
    parts = _client_parts(pools, _Uses(uses.broker, uses.results, False), 1, 1)
    group = ProcessGroup(program.name, "1 process", 1, parts)
    return pools, [_with_leader_lock(group, program.command)]


def _with_leader_lock(group: ProcessGroup, command: Sequence[str]) -> ProcessGroup:
    """A beat that sends from one instance only holds its lock's connection too."""
    if _option(command, "--scheduler", "-S") != BEAT_LEADER_SCHEDULER:
        return group
    lock = (f"leader lock {LEADER_LOCK_CONNECTIONS}", LEADER_LOCK_CONNECTIONS)
    return dataclasses.replace(group, parts=(*group.parts, lock))


_PROGRAMS = {"web": _web, "worker": _worker, "beat": _beat}


def _describe(groups: Sequence[ProcessGroup]) -> str:
    """``web: 2 workers; worker: main, 2 children, beat embedded``."""
    by_program: dict[str, list[str]] = {}
    for group in groups:
        if group.total:
            by_program.setdefault(group.program, []).append(group.label)
    return "; ".join(f"{name}: {', '.join(labels)}" for name, labels in by_program.items())


def redis_connections(
    budget: int,
    programs: Sequence[ProgramLike],
    *,
    broker: bool = True,
    results: bool = True,
    cache: bool = True,
) -> RedisConnections:
    """Pool limits for ``programs`` and their peak; ConfigError when it exceeds ``budget``.

    ``broker``, ``results`` and ``cache`` say which of them are on Redis (an explicit
    ``amqp://`` broker or ``django-db`` results open no Redis connection).
    """
    uses = _Uses(broker, results, cache)
    groups: list[ProcessGroup] = []
    pools: list[tuple[str, PoolSizes]] = []
    for program in programs:
        shape = _PROGRAMS.get(program.name)
        if shape is None:
            continue
        sizes, program_groups = shape(program, uses)
        pools.append((program.name, sizes))
        groups += program_groups
    connections = RedisConnections(budget, tuple(groups), tuple(pools))
    if connections.total > budget:
        raise ConfigError(
            [
                Problem(
                    "REDIS_MAX_CONNECTIONS",
                    str(budget),
                    f"too small: the processes ({_describe(groups)}) open up to "
                    f"{connections.total} Redis connections at peak (python -m runner plan "
                    f"shows the sum); set it to at least {connections.total}, or lower "
                    "WEB_CONCURRENCY or CELERY_CONCURRENCY",
                )
            ]
        )
    return connections


def _on_redis(url: str | None) -> bool:
    return bool(url) and url.split("://", 1)[0] in REDIS_SCHEMES  # type: ignore[union-attr]


def budget_for(
    redis: RedisSettings, programs: Sequence[ProgramLike], *, project_broker: bool = False
) -> RedisConnections | None:
    """The budget of ``programs`` on the runner's Redis, or None when there is none to keep.

    None for the local default (no Redis), and when the project's settings choose their own
    broker (``project_broker``): they do not read the runner's limits then.
    """
    if project_broker or redis.broker_url is None:
        return None
    broker, results = _on_redis(redis.broker_url), _on_redis(redis.result_backend)
    # runner.web.django_settings gives Django a Redis cache on REDIS_URL
    cache = redis.url is not None
    if not (broker or results or cache):
        return None
    return redis_connections(
        redis.max_connections, programs, broker=broker, results=results, cache=cache
    )
