"""Table-driven tests of the Redis connection budget: what each process opens, the pool limits
each program gets, the arithmetic ``runner plan`` prints, and the refusal when it cannot fit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from runner.config.connections import (
    BROKER_POOL_LIMIT_VARIABLE,
    CACHE_MAX_CONNECTIONS_VARIABLE,
    RESULT_MAX_CONNECTIONS_VARIABLE,
    PoolSizes,
    ProcessGroup,
    RedisConnections,
    redis_connections,
)
from runner.config.plan import Plan, make_plan
from runner.config.project import Project
from runner.config.settings import BEAT_LEADER_SCHEDULER, load_settings
from runner.errors import ConfigError

CWD = Path("/srv/project")
PROJECT = Project("app.settings", "manage.py", "app", "top package of app.settings")
REDIS = {"REDIS_URL": "rediss://default:s3cret@redis.example:6380"}
# The pool the plan picks from 1024 MB of budget, asked for explicitly here.
PREFORK = {"CELERY_POOL": "prefork"}

# The default web is one Gunicorn gthread worker of 2 threads (runner.config.memory_plan).
WEB_POOLS = PoolSizes(broker_pool_limit=2, result_max_connections=2, cache_max_connections=2)
WORKER_POOLS = PoolSizes(broker_pool_limit=1, result_max_connections=1, cache_max_connections=1)
# The default worker on 512 MB: one process whose 2 threads run tasks.
THREADS_WORKER_POOLS = PoolSizes(
    broker_pool_limit=2, result_max_connections=1, cache_max_connections=2
)


@dataclass(frozen=True)
class FakeProgram:
    """The three fields of runner.config.plan.Program that the budget reads."""

    name: str
    command: tuple[str, ...]
    environment: tuple[tuple[str, str], ...] = ()


def plan_for(environ: dict[str, str]) -> Plan:
    return make_plan(load_settings(environ, CWD), PROJECT)


def test_default_plan_fits_redis_clouds_thirty_connections():
    """The default layout (threads pool on 512 MB) opens 26 connections at peak, within the
    default budget of 30."""
    connections = plan_for(REDIS).redis_connections
    assert connections.pools == (("web", WEB_POOLS), ("worker", THREADS_WORKER_POOLS))
    assert connections.lines() == (
        "web: 1 worker of 2 threads (broker 2x2 + results 2x2 + cache 2) = 10",
        "worker: main with threads pool (consumer 4 + results 1 + broker 2x2 + results 2x1 "
        "+ cache 2) = 13",
        "worker: beat embedded (broker 1x2 + leader lock 1) = 3",
        "total at peak 26 <= REDIS_MAX_CONNECTIONS 30 (4 spare)",
    )


def test_prefork_plan_fits_redis_clouds_thirty_connections():
    """With prefork, also 26 at peak: each child counts its own pools."""
    connections = plan_for(REDIS | PREFORK).redis_connections
    assert connections == RedisConnections(
        budget=30,
        groups=(
            ProcessGroup(
                "web",
                "1 worker of 2 threads",
                1,
                (("broker 2x2", 4), ("results 2x2", 4), ("cache 2", 2)),
            ),
            ProcessGroup("worker", "main", 1, (("consumer 4", 4), ("results 1", 1))),
            ProcessGroup(
                "worker", "2 children", 2, (("broker 1x2", 2), ("results 1", 1), ("cache 1", 1))
            ),
            ProcessGroup("worker", "beat embedded", 1, (("broker 1x2", 2), ("leader lock 1", 1))),
        ),
        pools=(("web", WEB_POOLS), ("worker", WORKER_POOLS)),
    )
    assert connections.lines() == (
        "web: 1 worker of 2 threads (broker 2x2 + results 2x2 + cache 2) = 10",
        "worker: main (consumer 4 + results 1) = 5",
        "worker: 2 children x (broker 1x2 + results 1 + cache 1) = 8",
        "worker: beat embedded (broker 1x2 + leader lock 1) = 3",
        "total at peak 26 <= REDIS_MAX_CONNECTIONS 30 (4 spare)",
    )


def test_each_program_gets_its_pool_limits_in_its_environment():
    """The limits reach each program's processes as RUNNER_REDIS_* variables."""
    plan = plan_for(REDIS | PREFORK | {"BEAT_MODE": "separate"})
    expected = {
        "web": {
            BROKER_POOL_LIMIT_VARIABLE: "2",
            RESULT_MAX_CONNECTIONS_VARIABLE: "2",
            CACHE_MAX_CONNECTIONS_VARIABLE: "2",
        },
        "worker": {
            BROKER_POOL_LIMIT_VARIABLE: "1",
            RESULT_MAX_CONNECTIONS_VARIABLE: "1",
            CACHE_MAX_CONNECTIONS_VARIABLE: "1",
        },
        "beat": {
            BROKER_POOL_LIMIT_VARIABLE: "1",
            RESULT_MAX_CONNECTIONS_VARIABLE: "1",
            CACHE_MAX_CONNECTIONS_VARIABLE: "1",
        },
    }
    for name, variables in expected.items():
        environment = dict(plan.program(name).environment)
        assert {key: environment[key] for key in variables} == variables
    # The worker keeps its own variables next to ours.
    assert "RUNNER_WARM_SHUTDOWN_SECONDS" in dict(plan.program("worker").environment)


@pytest.mark.parametrize(
    ("environ", "total"),
    [
        (REDIS, 26),
        # A beat of its own subscribes to the results of what it sends: one more.
        (REDIS | {"BEAT_MODE": "separate"}, 27),
        (REDIS | {"RUN_BEAT": "false"}, 23),
        (REDIS | {"RUN_WEB": "false"}, 16),
        (REDIS | {"RUN_WORKER": "false"}, 14),
        (REDIS | {"WEB_CONCURRENCY": "1", "CELERY_CONCURRENCY": "1"}, 17),
        (REDIS | {"CELERY_CONCURRENCY": "4", "RUN_WEB": "false"}, 24),
    ],
)
def test_peak_follows_the_processes(environ, total):
    """Each web thread adds 5, each pool child 4, the worker's main process 5, beat 3 or 4
    (its leader lock's connection included)."""
    assert plan_for(environ).redis_connections.total == total


def test_budget_too_small_is_refused_with_the_minimum():
    """REDIS_MAX_CONNECTIONS below the peak is one ConfigError naming it and what would fit."""
    with pytest.raises(ConfigError) as caught:
        plan_for(REDIS | {"REDIS_MAX_CONNECTIONS": "10"})
    (problem,) = caught.value.problems
    assert problem.variable == "REDIS_MAX_CONNECTIONS" and problem.value == "10"
    assert "at least 26" in problem.fix
    assert "web: 1 worker of 2 threads; worker: main with threads pool, beat embedded" in (
        problem.fix
    )


def test_budget_equal_to_the_peak_fits():
    """A budget exactly at the peak is accepted, with nothing spare."""
    connections = plan_for(REDIS | {"REDIS_MAX_CONNECTIONS": "26"}).redis_connections
    assert (connections.total, connections.spare) == (26, 0)


def test_no_redis_no_budget():
    """Without Redis (the local default) there is no budget and no RUNNER_REDIS_* variable."""
    plan = plan_for({})
    assert plan.redis_connections is None
    assert BROKER_POOL_LIMIT_VARIABLE not in dict(plan.program("web").environment)


def test_only_what_is_on_redis_counts():
    """An amqp:// broker and django-db results leave only the cache, and beat's leader lock,
    on Redis."""
    plan = plan_for(
        REDIS
        | {"CELERY_BROKER_URL": "amqp://guest@rabbit:5672", "CELERY_RESULT_BACKEND": "django-db"}
    )
    assert plan.redis_connections.lines() == (
        "web: 1 worker of 2 threads (cache 2) = 2",
        "worker: main with threads pool (cache 2) = 2",
        "worker: beat embedded (leader lock 1) = 1",
        "total at peak 5 <= REDIS_MAX_CONNECTIONS 30 (25 spare)",
    )


WORKER = ("celery", "-A", "app", "worker", "--without-gossip", "--without-mingle")


@pytest.mark.parametrize(
    ("program", "lines"),
    [
        # Gunicorn gthread: each thread may send, wait on results and use the cache at once.
        (
            FakeProgram("web", ("gunicorn", "x:app", "--workers", "2", "--threads", "4")),
            ["web: 2 workers of 4 threads x (broker 4x2 + results 4x2 + cache 4) = 40"],
        ),
        # Celery's own defaults: heartbeat events and gossip each add a channel.
        (
            FakeProgram("worker", ("celery", "-A", "app", "worker", "--concurrency=1")),
            [
                "worker: main (consumer 4 + events 2 + gossip 2 + results 1) = 9",
                "worker: 1 child (broker 1x2 + results 1 + cache 1) = 4",
            ],
        ),
        (
            FakeProgram("worker", (*WORKER, "--without-heartbeat", "-c", "3", "-E")),
            [
                "worker: main (consumer 4 + events 2 + results 1) = 7",
                "worker: 3 children x (broker 1x2 + results 1 + cache 1) = 12",
            ],
        ),
        # Celery's threads pool: the tasks run in the main process, one backend per thread.
        (
            FakeProgram("worker", (*WORKER, "--without-heartbeat", "--pool=threads", "-c", "4")),
            [
                "worker: main with threads pool "
                "(consumer 4 + results 1 + broker 4x2 + results 4x1 + cache 4) = 21"
            ],
        ),
        (
            FakeProgram("worker", (*WORKER, "--without-heartbeat", "-P", "solo", "-B")),
            [
                "worker: main with solo pool "
                "(consumer 4 + results 1 + broker 1x2 + results 1 + cache 1) = 9",
                "worker: beat embedded (broker 1x2) = 2",
            ],
        ),
        # The runner's beat in Redis mode also holds its leader lock's connection.
        (
            FakeProgram(
                "beat", ("celery", "-A", "app", "beat", "--scheduler", BEAT_LEADER_SCHEDULER)
            ),
            ["beat: 1 process (broker 1x2 + results 1 + leader lock 1) = 4"],
        ),
    ],
)
def test_commands_decide_what_is_counted(program, lines):
    """Threads, pools, events and embedded beat are read from the commands the plan chose."""
    connections = redis_connections(1000, [program])
    assert list(connections.lines()[:-1]) == lines


def test_with_environment_leaves_programs_without_limits_alone():
    """A program the budget does not know (not web, worker or beat) is returned unchanged."""
    connections = redis_connections(1000, [FakeProgram("web", ("gunicorn", "--workers", "1"))])
    other = FakeProgram("flower", ("celery", "flower"))
    assert connections.with_environment(other) is other
    web = connections.with_environment(FakeProgram("web", ("gunicorn",), (("A", "1"),)))
    assert web.environment == (("A", "1"), *PoolSizes(1, 2, 1).environment())
